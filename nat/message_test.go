package nat

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/pion/stun/v3"
)

var txid = [12]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}

func TestAddrAttr(t *testing.T) {
	for _, s := range []string{"1.2.3.4:5", "255.255.255.255:65535", "[2001:db8::1]:3478", "[::ffff:7.0.0.2]:1"} {
		a := netip.MustParseAddrPort(s)
		want := netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
		for _, xor := range []bool{false, true} {
			v := addrAttr(a, xor, txid)
			got, err := parseAddr(v, xor, txid)
			if err != nil || got != want {
				t.Errorf("%s xor=%v: %v, %v", s, xor, got, err)
			}
		}
		// The same bytes as pion's encoder.
		m := &stun.Message{TransactionID: txid}
		m.WriteHeader()
		(&stun.XORMappedAddress{IP: net.IP(want.Addr().AsSlice()), Port: int(want.Port())}).AddTo(m)
		v, _ := m.Get(stun.AttrXORMappedAddress)
		if !bytes.Equal(v, addrAttr(a, true, txid)) {
			t.Errorf("%s: XOR-MAPPED-ADDRESS %x, pion %x", s, addrAttr(a, true, txid), v)
		}
	}
	for _, v := range [][]byte{nil, {0, 1, 0}, {0, 1, 0, 1, 1, 2, 3}, {0, 1, 0, 1, 1, 2, 3, 4, 5}, {0, 2, 0, 1, 1}, {0, 3, 0, 1, 1, 2, 3, 4}} {
		if _, err := parseAddr(v, true, txid); err == nil {
			t.Errorf("parseAddr(%x) accepted", v)
		}
	}
}

func TestChangeFlags(t *testing.T) {
	for _, tc := range []struct {
		v    []byte
		want changeFlags
		ok   bool
	}{
		{[]byte{0, 0, 0, 6}, changeIP | changePort, true},
		{[]byte{0, 0, 0, 2}, changePort, true},
		{[]byte{0, 0, 0, 4}, changeIP, true},
		{[]byte{0xff, 0xff, 0xff, 0xf9}, 0, true}, // reserved bits ignored
		{[]byte{0, 0, 6}, 0, false},
		{[]byte{0, 0, 0, 0, 0}, 0, false},
	} {
		got, err := parseChange(tc.v)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseChange(%x) = %v, %v", tc.v, got, err)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	good, _ := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	mutate := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good.Raw...)) }
	for name, b := range map[string][]byte{
		"short":           good.Raw[:19],
		"not STUN":        []byte("hello, this is not a STUN message"),
		"trailing bytes":  append(append([]byte(nil), good.Raw...), 0, 0, 0, 0),
		"length not /4":   mutate(func(b []byte) []byte { binary.BigEndian.PutUint16(b[2:], 6); return b[:26] }),
		"top bits":        mutate(func(b []byte) []byte { b[0] |= 0x80; return b }),
		"bad fingerprint": mutate(func(b []byte) []byte { b[len(b)-1] ^= 0xff; return b }),
		"huge":            append(append([]byte(nil), good.Raw[:20]...), make([]byte, 2000)...),
	} {
		if _, err := decode(b); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	if _, err := decode(good.Raw); err != nil {
		t.Errorf("good: %v", err)
	}
}

// FuzzDecodeResponse: any datagram, as an answer to us, never panics; what
// parses has a usable mapped address and optional addresses that are usable
// or absent.
func FuzzDecodeResponse(f *testing.F) {
	r := newResponder(ServerConfig{RateLimit: -1}, [4]netip.AddrPort{
		netip.MustParseAddrPort("7.0.0.2:3478"), netip.MustParseAddrPort("7.0.0.2:3479"),
		netip.MustParseAddrPort("7.0.0.3:3478"), netip.MustParseAddrPort("7.0.0.3:3479"),
	}, true)
	for _, c := range []changeFlags{0, changePort, changeIP | changePort} {
		req, _ := newRequest(c)
		out, _, _ := r.handle(req, netip.MustParseAddrPort("8.0.0.1:4000"), 0)
		f.Add(out)
	}
	req, _ := newRequest(0)
	f.Add(r.errorResponse(req, stun.CodeUnknownAttribute, stun.UnknownAttributes{0x42}))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decode(b)
		if err != nil {
			return
		}
		if len(m.Raw) != len(b) || m.TransactionID != [12]byte(b[8:20]) {
			t.Fatalf("decode changed the message")
		}
		res, err := parseResponse(m)
		if err != nil {
			return
		}
		if !usable(res.mapped) {
			t.Fatalf("unusable mapped address %v accepted", res.mapped)
		}
		for _, a := range []netip.AddrPort{res.other, res.origin} {
			if a.IsValid() && !usable(a) {
				t.Fatalf("unusable optional address %v accepted", a)
			}
		}
	})
}

// FuzzResponder: any request gets no answer, or a response with its
// transaction ID that decodes, and a success maps the sender exactly and is
// sent from the socket CHANGE-REQUEST asked for.
func FuzzResponder(f *testing.F) {
	for _, c := range []changeFlags{0, changePort, changeIP, changeIP | changePort} {
		req, _ := newRequest(c)
		f.Add(req.Raw, uint8(0), true)
		f.Add(req.Raw, uint8(3), false)
	}
	unk, _ := stun.Build(stun.TransactionID, stun.BindingRequest, attr{0x0042, []byte{1}}, stun.NewUsername("u"))
	f.Add(unk.Raw, uint8(1), true)
	addrs := [4]netip.AddrPort{
		netip.MustParseAddrPort("7.0.0.2:3478"), netip.MustParseAddrPort("7.0.0.2:3479"),
		netip.MustParseAddrPort("7.0.0.3:3478"), netip.MustParseAddrPort("7.0.0.3:3479"),
	}
	from := netip.MustParseAddrPort("8.0.0.9:40000")
	f.Fuzz(func(t *testing.T, b []byte, arrival uint8, rfc5780 bool) {
		req, err := decode(b)
		if err != nil {
			return
		}
		in := int(arrival % 4)
		if !rfc5780 {
			in = 0
		}
		r := newResponder(ServerConfig{RateLimit: -1}, addrs, rfc5780)
		out, via, ok := r.handle(req, from, in)
		if !ok {
			return
		}
		m, err := decode(out)
		if err != nil {
			t.Fatalf("our response does not decode: %v", err)
		}
		if m.TransactionID != req.TransactionID {
			t.Fatal("transaction ID changed")
		}
		res, err := parseResponse(m)
		if err != nil {
			if m.Type.Class != stun.ClassErrorResponse || via != in {
				t.Fatalf("bad response %v: %v", m.Type, err)
			}
			return
		}
		if res.mapped != from {
			t.Fatalf("mapped %v, want %v", res.mapped, from)
		}
		var change changeFlags
		if v, err := req.Get(stun.AttrChangeRequest); err == nil {
			change, _ = parseChange(v)
		}
		if !rfc5780 && change != 0 {
			t.Fatal("CHANGE-REQUEST honoured without alternates")
		}
		want := in
		if change&changePort != 0 {
			want ^= sockAltPort
		}
		if change&changeIP != 0 {
			want ^= sockAltIP
		}
		if via != want || res.origin != addrs[via] {
			t.Fatalf("sent from %d (origin %v), want %d", via, res.origin, want)
		}
		if rfc5780 != res.other.IsValid() || (rfc5780 && res.other != addrs[in^sockAltBoth]) {
			t.Fatalf("OTHER-ADDRESS %v", res.other)
		}
	})
}

// FuzzAddrAttr: parseAddr never panics, and what it accepts encodes back to
// the same bytes (but for the first, reserved byte).
func FuzzAddrAttr(f *testing.F) {
	f.Add(addrAttr(netip.MustParseAddrPort("1.2.3.4:5"), true, txid), true)
	f.Add(addrAttr(netip.MustParseAddrPort("[2001:db8::1]:5"), false, txid), false)
	f.Fuzz(func(t *testing.T, v []byte, xor bool) {
		a, err := parseAddr(v, xor, txid)
		if err != nil {
			return
		}
		back := addrAttr(a, xor, txid)
		if !bytes.Equal(back[1:], v[1:]) {
			// An IPv4-mapped IPv6 address comes back as IPv4; nothing else may differ.
			if !(v[1] == 2 && a.Addr().Is4In6()) {
				t.Fatalf("%x -> %v -> %x", v, a, back)
			}
		}
	})
}
