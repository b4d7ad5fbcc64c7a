package nat

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/pion/stun/v3"
)

// Message handling. pion/stun frames and checks messages; the attribute values
// that decide what we conclude (addresses, CHANGE-REQUEST, ERROR-CODE) are
// read here with strict length checks, since pion's address decoders accept
// short values. Everything here is fuzzed (message_test.go).

const (
	headerSize = 20
	// maxMessage bounds what we read and answer: a Binding response with all
	// our attributes is under 100 bytes; 1500 leaves room for others' extras.
	maxMessage = 1500
	// maxReason bounds the reason phrase kept from an error response.
	maxReason = 128
)

// changeFlags is the value of CHANGE-REQUEST (RFC 5780 section 7.2): a 32-bit
// field whose bit 0x4 asks to change the IP and bit 0x2 the port.
type changeFlags uint8

const (
	changePort changeFlags = 0x2
	changeIP   changeFlags = 0x4
)

func (c changeFlags) String() string {
	switch c {
	case 0:
		return "none"
	case changePort:
		return "port"
	case changeIP:
		return "ip"
	case changeIP | changePort:
		return "ip+port"
	}
	return fmt.Sprintf("0x%x", uint8(c))
}

// AddTo adds CHANGE-REQUEST to m (a stun.Setter).
func (c changeFlags) AddTo(m *stun.Message) error {
	var v [4]byte
	binary.BigEndian.PutUint32(v[:], uint32(c&(changeIP|changePort)))
	m.Add(stun.AttrChangeRequest, v[:])
	return nil
}

// parseChange reads a CHANGE-REQUEST value. Bits other than 0x2 and 0x4 are
// reserved and ignored, as RFC 5780 asks.
func parseChange(v []byte) (changeFlags, error) {
	if len(v) != 4 {
		return 0, fmt.Errorf("CHANGE-REQUEST of %d bytes, want 4", len(v))
	}
	return changeFlags(binary.BigEndian.Uint32(v) & uint32(changeIP|changePort)), nil
}

// newRequest builds a Binding request with a fresh transaction ID, the
// optional CHANGE-REQUEST and a FINGERPRINT (which lets servers and our peers
// tell STUN from other traffic on a shared socket, RFC 5389 section 8).
func newRequest(change changeFlags) (*stun.Message, error) {
	setters := []stun.Setter{stun.TransactionID, stun.BindingRequest}
	if change != 0 {
		setters = append(setters, change)
	}
	setters = append(setters, stun.Fingerprint)
	return stun.Build(setters...)
}

// BindingRequest returns a STUN Binding request with transaction ID txid
// (and a FINGERPRINT), as a peer sends it in a dial-back check so that the
// node that gave it txid recognises it (Prober.ExpectRequest).
func BindingRequest(txid [stun.TransactionIDSize]byte) ([]byte, error) {
	m, err := stun.Build(stun.NewTransactionIDSetter(txid), stun.BindingRequest, stun.Fingerprint)
	if err != nil {
		return nil, err
	}
	return m.Raw, nil
}

// decode parses a datagram as a STUN message, or fails. It checks what RFC
// 5389 section 7.3 asks beyond pion's framing: the length is a multiple of 4
// and the datagram holds exactly one message, and a FINGERPRINT, if any, is
// the last attribute and matches.
func decode(b []byte) (*stun.Message, error) {
	if !stun.IsMessage(b) {
		return nil, fmt.Errorf("not a STUN message")
	}
	if len(b) > maxMessage {
		return nil, fmt.Errorf("message of %d bytes, above %d", len(b), maxMessage)
	}
	if b[0]&0xc0 != 0 {
		return nil, fmt.Errorf("first two bits not zero")
	}
	length := int(binary.BigEndian.Uint16(b[2:4]))
	if length%4 != 0 {
		return nil, fmt.Errorf("length %d not a multiple of 4", length)
	}
	if headerSize+length != len(b) {
		return nil, fmt.Errorf("length %d does not match datagram of %d bytes", length, len(b))
	}
	m := &stun.Message{Raw: append([]byte(nil), b...)}
	if err := m.Decode(); err != nil {
		return nil, err
	}
	for i, a := range m.Attributes {
		if a.Type == stun.AttrFingerprint {
			if i != len(m.Attributes)-1 {
				return nil, fmt.Errorf("FINGERPRINT not last")
			}
			if err := stun.Fingerprint.Check(m); err != nil {
				return nil, fmt.Errorf("FINGERPRINT: %w", err)
			}
		}
	}
	return m, nil
}

// parseAddr reads an address attribute value (MAPPED-ADDRESS layout, RFC 5389
// section 15.1): a zero byte, the family (1: IPv4, 2: IPv6), the port, the
// address. With xor set it undoes XOR-MAPPED-ADDRESS's XOR with the magic
// cookie and the transaction ID (section 15.2).
func parseAddr(v []byte, xor bool, txid [stun.TransactionIDSize]byte) (netip.AddrPort, error) {
	if len(v) < 4 {
		return netip.AddrPort{}, fmt.Errorf("address attribute of %d bytes", len(v))
	}
	port := binary.BigEndian.Uint16(v[2:4])
	var ip netip.Addr
	switch v[1] {
	case 1:
		if len(v) != 8 {
			return netip.AddrPort{}, fmt.Errorf("IPv4 address attribute of %d bytes, want 8", len(v))
		}
		var a [4]byte
		copy(a[:], v[4:8])
		if xor {
			for i := range a {
				a[i] ^= cookie[i]
			}
		}
		ip = netip.AddrFrom4(a)
	case 2:
		if len(v) != 20 {
			return netip.AddrPort{}, fmt.Errorf("IPv6 address attribute of %d bytes, want 20", len(v))
		}
		var a [16]byte
		copy(a[:], v[4:20])
		if xor {
			for i := range 4 {
				a[i] ^= cookie[i]
			}
			for i := range txid {
				a[4+i] ^= txid[i]
			}
		}
		ip = netip.AddrFrom16(a)
	default:
		return netip.AddrPort{}, fmt.Errorf("address family %d", v[1])
	}
	if xor {
		port ^= uint16(cookie[0])<<8 | uint16(cookie[1])
	}
	return netip.AddrPortFrom(ip, port), nil
}

// cookie is the magic cookie 0x2112A442 (RFC 5389 section 6).
var cookie = [4]byte{0x21, 0x12, 0xa4, 0x42}

// addrAttr encodes addr as an address attribute value (the inverse of
// parseAddr). An IPv4-mapped IPv6 address is written as IPv4.
func addrAttr(addr netip.AddrPort, xor bool, txid [stun.TransactionIDSize]byte) []byte {
	ip := addr.Addr().Unmap()
	port := addr.Port()
	var v []byte
	if ip.Is4() {
		a := ip.As4()
		v = append([]byte{0, 1, 0, 0}, a[:]...)
		if xor {
			for i := range 4 {
				v[4+i] ^= cookie[i]
			}
		}
	} else {
		a := ip.As16()
		v = append([]byte{0, 2, 0, 0}, a[:]...)
		if xor {
			for i := range 4 {
				v[4+i] ^= cookie[i]
			}
			for i := range txid {
				v[8+i] ^= txid[i]
			}
		}
	}
	if xor {
		port ^= uint16(cookie[0])<<8 | uint16(cookie[1])
	}
	binary.BigEndian.PutUint16(v[2:4], port)
	return v
}

// binding is a parsed Binding success response.
type binding struct {
	mapped netip.AddrPort // XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS
	other  netip.AddrPort // OTHER-ADDRESS, else CHANGED-ADDRESS; invalid if none
	origin netip.AddrPort // RESPONSE-ORIGIN; invalid if none
}

// parseResponse reads a response to one of our Binding requests: a success
// with a usable mapped address, or a *ServerError.
func parseResponse(m *stun.Message) (binding, error) {
	if m.Type.Method != stun.MethodBinding {
		return binding{}, fmt.Errorf("%w: method %v, want Binding", ErrBadResponse, m.Type.Method)
	}
	switch m.Type.Class {
	case stun.ClassErrorResponse:
		v, err := m.Get(stun.AttrErrorCode)
		if err != nil || len(v) < 4 {
			return binding{}, fmt.Errorf("%w: error response without a valid ERROR-CODE", ErrBadResponse)
		}
		code := int(v[2]&0x7)*100 + int(v[3])
		reason := v[4:]
		if len(reason) > maxReason {
			reason = reason[:maxReason]
		}
		return binding{}, &ServerError{Code: code, Reason: string(reason)}
	case stun.ClassSuccessResponse:
	default:
		return binding{}, fmt.Errorf("%w: class %v, want a response", ErrBadResponse, m.Type.Class)
	}
	var b binding
	var err error
	if v, gerr := m.Get(stun.AttrXORMappedAddress); gerr == nil {
		b.mapped, err = parseAddr(v, true, m.TransactionID)
	} else if v, gerr := m.Get(stun.AttrMappedAddress); gerr == nil {
		b.mapped, err = parseAddr(v, false, m.TransactionID)
	} else {
		return binding{}, fmt.Errorf("%w: no XOR-MAPPED-ADDRESS", ErrBadResponse)
	}
	if err != nil {
		return binding{}, fmt.Errorf("%w: mapped address: %v", ErrBadResponse, err)
	}
	if !usable(b.mapped) {
		return binding{}, fmt.Errorf("%w: mapped address %v is not usable", ErrBadResponse, b.mapped)
	}
	// OTHER-ADDRESS and RESPONSE-ORIGIN are optional: a bad one is ignored,
	// and the behaviour tests then count the server as not supporting them.
	for _, t := range []stun.AttrType{stun.AttrOtherAddress, stun.AttrChangedAddress} {
		if v, gerr := m.Get(t); gerr == nil {
			if a, perr := parseAddr(v, false, m.TransactionID); perr == nil && usable(a) {
				b.other = a
				break
			}
		}
	}
	if v, gerr := m.Get(stun.AttrResponseOrigin); gerr == nil {
		if a, perr := parseAddr(v, false, m.TransactionID); perr == nil && usable(a) {
			b.origin = a
		}
	}
	return b, nil
}

// usable: an address a peer could send to.
func usable(a netip.AddrPort) bool {
	ip := a.Addr()
	return a.Port() != 0 && ip.IsValid() && !ip.IsUnspecified() && !ip.IsMulticast()
}
