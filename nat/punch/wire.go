package punch

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"

	"github.com/macula-io/macula/frame"
	"github.com/macula-io/macula/nat"
)

// Frame types of the punch protocol (append only).
const (
	// typeInfo: a node's NAT type and public address (punchMsg).
	typeInfo uint8 = 1
)

// Frame types of the birthday protocol (append only). The type is the
// message's kind; the payload is its fields (bdayMsg) as JSON.
const (
	typeStart uint8 = 1 // A -> B: A's public ip:port and the nonce
	typeReady uint8 = 2 // B -> A: B's public IP and the nonce
	typeHit   uint8 = 3 // B -> A: the public port a probe came in on
	typeDone  uint8 = 4 // A -> B: the end, and whether A's dial worked
)

const (
	wireVersion = 1
	// punchMsgMax and bdayMsgMax bound a payload; a frame announcing more
	// is refused before anything is allocated.
	punchMsgMax = 1024
	bdayMsgMax  = 512
)

// errMsg: a frame that is not a valid message of the protocol. It closes
// the stream.
var errMsg = errors.New("punch: bad message")

// punchMsg is the one message each side sends on a punch stream.
type punchMsg struct {
	// Type is the sender's NAT type (nat.Type).
	Type string `json:"type"`
	// Addr is the sender's public ip:port from STUN (empty when unknown).
	// From a symmetric node it only carries its public IP.
	Addr string `json:"addr,omitempty"`
	// Opened: the sender has sent packets to the requester's IP (its
	// public ip:port, for a Dial request), or has no filter to open.
	Opened bool `json:"opened,omitempty"`
	// Dial (a request only): the requester retries a direct path and will
	// dial the responder's public address if neither NAT is symmetric; it
	// asks the responder to open its filter for the requester's Addr.
	Dial bool `json:"dial,omitempty"`
}

func writePunchMsg(w io.Writer, m punchMsg) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if len(b) > punchMsgMax {
		return fmt.Errorf("%w: %d bytes", errMsg, len(b))
	}
	return frame.Write(w, typeInfo, wireVersion, b)
}

func readPunchMsg(r io.Reader) (punchMsg, error) {
	h, p, err := frame.NewReader(r, punchMsgMax).Next()
	if err != nil {
		return punchMsg{}, err
	}
	if h.Type != typeInfo || h.Version != wireVersion {
		return punchMsg{}, fmt.Errorf("%w: frame type %d version %d", errMsg, h.Type, h.Version)
	}
	return decodePunchMsg(p)
}

// decodePunchMsg parses a punch payload. What it accepts is not yet
// trusted: punchTarget checks the address before anything is dialed.
func decodePunchMsg(p []byte) (punchMsg, error) {
	var m punchMsg
	if err := json.Unmarshal(p, &m); err != nil {
		return punchMsg{}, fmt.Errorf("%w: %v", errMsg, err)
	}
	if len(m.Type) > 32 || len(m.Addr) > 64 {
		return punchMsg{}, fmt.Errorf("%w: field too long", errMsg)
	}
	return m, nil
}

// bdayMsg is one message of the birthday exchange; Kind is its frame type.
type bdayMsg struct {
	Kind uint8 `json:"-"`
	// Nonce (start, ready): bdayNonceLen bytes that the packets carry.
	Nonce []byte `json:"nonce,omitempty"`
	// Addr: start, A's public ip:port; ready, B's public IP.
	Addr string `json:"addr,omitempty"`
	// Port (hit): B's public port that a probe came in on.
	Port uint16 `json:"port,omitempty"`
	// OK (done): A made the direct connection. Probes: how many A sent.
	OK     bool `json:"ok,omitempty"`
	Probes int  `json:"probes,omitempty"`
}

func kindName(k uint8) string {
	switch k {
	case typeStart:
		return "start"
	case typeReady:
		return "ready"
	case typeHit:
		return "hit"
	case typeDone:
		return "done"
	}
	return fmt.Sprintf("type %d", k)
}

func writeBdayMsg(w io.Writer, m bdayMsg) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if len(b) > bdayMsgMax {
		return fmt.Errorf("%w: %d bytes", errMsg, len(b))
	}
	return frame.Write(w, m.Kind, wireVersion, b)
}

func readBdayMsg(r io.Reader) (bdayMsg, error) {
	h, p, err := frame.NewReader(r, bdayMsgMax).Next()
	if err != nil {
		return bdayMsg{}, err
	}
	if h.Version != wireVersion {
		return bdayMsg{}, fmt.Errorf("%w: version %d", errMsg, h.Version)
	}
	return decodeBdayMsg(h.Type, p)
}

// decodeBdayMsg parses and checks the payload of a birthday frame of type
// kind: what it returns satisfies what the handlers rely on without
// checking again (the addresses parse and are public unicast IPv4, the
// nonce has its length, a port is in range).
func decodeBdayMsg(kind uint8, b []byte) (bdayMsg, error) {
	if len(b) > bdayMsgMax {
		return bdayMsg{}, errMsg
	}
	var m bdayMsg
	if err := json.Unmarshal(b, &m); err != nil {
		return bdayMsg{}, fmt.Errorf("%w: %v", errMsg, err)
	}
	m.Kind = kind
	bad := func(why string) (bdayMsg, error) {
		return bdayMsg{}, fmt.Errorf("%w: %s: %s", errMsg, kindName(kind), why)
	}
	// Only the fields of the kind are kept.
	switch kind {
	case typeStart:
		ap, err := netip.ParseAddrPort(m.Addr)
		if err != nil || !publicUnicast(ap.Addr()) || ap.Port() == 0 {
			return bad("address")
		}
		if len(m.Nonce) != bdayNonceLen {
			return bad("nonce")
		}
		return bdayMsg{Kind: kind, Nonce: m.Nonce, Addr: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()}, nil
	case typeReady:
		ip, err := netip.ParseAddr(m.Addr)
		if err != nil || !publicUnicast(ip) {
			return bad("address")
		}
		if len(m.Nonce) != bdayNonceLen {
			return bad("nonce")
		}
		return bdayMsg{Kind: kind, Nonce: m.Nonce, Addr: ip.Unmap().String()}, nil
	case typeHit:
		if m.Port < bdayPortMin {
			return bad("port")
		}
		return bdayMsg{Kind: kind, Port: m.Port}, nil
	case typeDone:
		if m.Probes < 0 || m.Probes > bdayProbesMax {
			return bad("probes")
		}
		return bdayMsg{Kind: kind, OK: m.OK, Probes: m.Probes}, nil
	}
	return bad("unknown type")
}

// publicUnicast: an address that probes may go to (no loopback, multicast,
// unspecified or link-local address; IPv4 only for now, as the sockets).
func publicUnicast(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip.Is4() && ip.IsGlobalUnicast() && !ip.IsLinkLocalUnicast() && !ip.IsMulticast()
}

// bdayMagic starts every probe and opening packet: not QUIC (the first
// byte has the fixed bit clear) and not STUN.
var bdayMagic = []byte("\x00macula-bday")

// bdayPacket is a probe (port: where it was sent) or an opening packet
// (port 0). Probes are datagrams, not frames: they go from socket to socket
// outside any stream.
func bdayPacket(nonce []byte, port uint16) []byte {
	b := make([]byte, 0, len(bdayMagic)+bdayNonceLen+2)
	b = append(b, bdayMagic...)
	b = append(b, nonce...)
	return binary.BigEndian.AppendUint16(b, port)
}

// parseBdayPacket returns the port a probe carries, if b is a probe with
// the nonce.
func parseBdayPacket(b, nonce []byte) (uint16, bool) {
	if len(b) != len(bdayMagic)+bdayNonceLen+2 || len(nonce) != bdayNonceLen ||
		!bytes.HasPrefix(b, bdayMagic) || !bytes.Equal(b[len(bdayMagic):len(bdayMagic)+bdayNonceLen], nonce) {
		return 0, false
	}
	port := binary.BigEndian.Uint16(b[len(b)-2:])
	if port < bdayPortMin {
		return 0, false
	}
	return port, true
}

// punchOpenPayload is what a restricted-cone node sends to open its NAT's
// filter: not QUIC (its first byte has the fixed bit clear) and not STUN.
var punchOpenPayload = []byte("\x00macula-punch")

// peerType is the nat.Type a peer's message claims.
func (m punchMsg) peerType() nat.Type { return nat.Type(m.Type) }
