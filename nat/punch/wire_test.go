package punch

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/netip"
	"testing"

	"github.com/macula-io/macula/frame"
)

func TestPunchMsgRoundTrip(t *testing.T) {
	for _, m := range []punchMsg{
		{Type: "full_cone", Addr: "8.0.0.2:7400"},
		{Type: "restricted", Addr: "8.0.0.4:7400", Opened: true},
		{Type: "symmetric"},
	} {
		var buf bytes.Buffer
		if err := writePunchMsg(&buf, m); err != nil {
			t.Fatal(err)
		}
		if h, _ := frame.ParseHeader(buf.Bytes()); h.Type != typeInfo || h.Version != wireVersion {
			t.Fatalf("header %+v", h)
		}
		got, err := readPunchMsg(&buf)
		if err != nil || got != m {
			t.Fatalf("round trip: %+v %v, want %+v", got, err, m)
		}
	}
	bad := [][]byte{
		frame.Append(nil, 2, wireVersion, []byte(`{"type":"full_cone"}`)), // unknown type
		frame.Append(nil, typeInfo, 9, []byte(`{"type":"full_cone"}`)),    // unknown version
		frame.Append(nil, typeInfo, wireVersion, []byte(`{"type":`)),      // bad JSON
		frame.AppendHeader(nil, typeInfo, wireVersion, punchMsgMax+1),     // over the limit
		frame.Append(nil, typeInfo, wireVersion, []byte(`{"type":"`+string(bytes.Repeat([]byte("x"), 40))+`"}`)),
		[]byte(`{"type":"full_cone"}`), // the old bare JSON
	}
	for _, b := range bad {
		if m, err := readPunchMsg(bytes.NewReader(b)); err == nil {
			t.Errorf("%q accepted as %+v", b, m)
		}
	}
	if _, err := readPunchMsg(bytes.NewReader(frame.AppendHeader(nil, typeInfo, wireVersion, 1<<30))); !errors.Is(err, frame.ErrTooLarge) {
		t.Errorf("a 1 GiB header: %v, want ErrTooLarge", err)
	}
}

func TestBdayMsgs(t *testing.T) {
	nonce := bytes.Repeat([]byte{1}, bdayNonceLen)
	good := []bdayMsg{
		{Kind: typeStart, Nonce: nonce, Addr: "8.0.0.5:7400"},
		{Kind: typeReady, Nonce: nonce, Addr: "8.0.0.7"},
		{Kind: typeHit, Port: 43397},
		{Kind: typeDone, OK: true, Probes: 96},
		{Kind: typeDone},
	}
	for _, m := range good {
		var buf bytes.Buffer
		if err := writeBdayMsg(&buf, m); err != nil {
			t.Fatal(err)
		}
		got, err := readBdayMsg(&buf)
		if err != nil {
			t.Errorf("%+v: %v", m, err)
			continue
		}
		if got.Kind != m.Kind || got.Addr != m.Addr || got.Port != m.Port || got.OK != m.OK ||
			got.Probes != m.Probes || !bytes.Equal(got.Nonce, m.Nonce) {
			t.Errorf("round trip: got %+v, want %+v", got, m)
		}
	}
	bad := []bdayMsg{
		{Kind: typeStart, Nonce: nonce, Addr: "8.0.0.5"},            // no port
		{Kind: typeStart, Nonce: nonce, Addr: "127.0.0.1:7400"},     // loopback
		{Kind: typeStart, Nonce: nonce, Addr: "224.0.0.1:7400"},     // multicast
		{Kind: typeStart, Nonce: nonce, Addr: "0.0.0.0:7400"},       // unspecified
		{Kind: typeStart, Nonce: nonce, Addr: "[2001:db8::1]:7400"}, // IPv6: not yet
		{Kind: typeStart, Nonce: nonce[:3], Addr: "8.0.0.5:7400"},   // short nonce
		{Kind: typeStart, Addr: "8.0.0.5:0"},
		{Kind: typeReady, Nonce: nonce, Addr: "8.0.0.7:1234"}, // an IP only
		{Kind: typeReady, Addr: "8.0.0.7"},
		{Kind: typeHit, Port: 80},
		{Kind: typeHit},
		{Kind: typeDone, Probes: bdayProbesMax + 1},
		{Kind: typeDone, Probes: -1},
		{Kind: 9},
		{},
	}
	for _, m := range bad {
		b, _ := json.Marshal(m)
		if got, err := decodeBdayMsg(m.Kind, b); err == nil {
			t.Errorf("%s %s: accepted as %+v", kindName(m.Kind), b, got)
		}
	}
	for _, b := range []string{"", "{", "null", "[]", `{"port":70000}`, `{"nonce":"!!"}`} {
		if _, err := decodeBdayMsg(typeHit, []byte(b)); err == nil {
			t.Errorf("%q accepted", b)
		}
	}
	// Frames longer than bdayMsgMax are refused before they are read.
	if _, err := readBdayMsg(bytes.NewReader(frame.AppendHeader(nil, typeHit, wireVersion, 1<<20))); !errors.Is(err, frame.ErrTooLarge) {
		t.Errorf("a 1 MiB frame: %v", err)
	}
	if _, err := readBdayMsg(bytes.NewReader(frame.AppendHeader(nil, typeHit, wireVersion, 10)[:8])); err == nil {
		t.Error("accepted a truncated frame")
	}
	if _, err := readBdayMsg(bytes.NewReader(frame.Append(nil, typeHit, 2, []byte(`{"port":43397}`)))); err == nil {
		t.Error("accepted version 2")
	}
}

func TestBdayPacket(t *testing.T) {
	nonce := bytes.Repeat([]byte{7}, bdayNonceLen)
	b := bdayPacket(nonce, 40000)
	if b[0]&0x40 != 0 {
		t.Fatalf("probe has QUIC's fixed bit set: %x", b[0])
	}
	if port, ok := parseBdayPacket(b, nonce); !ok || port != 40000 {
		t.Fatalf("parse: %d %v", port, ok)
	}
	other := bytes.Repeat([]byte{8}, bdayNonceLen)
	if _, ok := parseBdayPacket(b, other); ok {
		t.Fatal("accepted another nonce")
	}
	if _, ok := parseBdayPacket(bdayPacket(nonce, 0), nonce); ok {
		t.Fatal("accepted an opening packet as a probe")
	}
	if _, ok := parseBdayPacket(b[:len(b)-1], nonce); ok {
		t.Fatal("accepted a short packet")
	}
	if _, ok := parseBdayPacket(b, nonce[:4]); ok {
		t.Fatal("accepted a short nonce")
	}
	if punchOpenPayload[0]&0x40 != 0 {
		t.Fatal("the filter-opening packet has QUIC's fixed bit set")
	}
}

// FuzzPunchMsg: any bytes on a punch stream decode or fail cleanly; what
// decodes encodes and decodes again to the same message, and an address to
// dial comes only from a well-formed message.
func FuzzPunchMsg(f *testing.F) {
	for _, m := range []punchMsg{
		{Type: "full_cone", Addr: "198.51.100.7:4242"},
		{Type: "restricted", Addr: "[2001:db8::1]:1", Opened: true},
		{Type: "symmetric", Addr: "1.2.3.4:0"},
	} {
		var buf bytes.Buffer
		if err := writePunchMsg(&buf, m); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
	}
	f.Add(frame.Append(nil, typeInfo, wireVersion, []byte(`{"type":1}`)))
	f.Add(frame.AppendHeader(nil, typeInfo, wireVersion, 1<<31))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := readPunchMsg(bytes.NewReader(b))
		if err != nil {
			return
		}
		var buf bytes.Buffer
		if err := writePunchMsg(&buf, m); err != nil {
			t.Fatalf("%+v does not encode: %v", m, err)
		}
		again, err := readPunchMsg(&buf)
		if err != nil || again != m {
			t.Fatalf("round trip of %+v: %+v, %v", m, again, err)
		}
		if a, ok := punchTarget(m); ok && a == nil {
			t.Fatal("target without an address")
		}
	})
}

// FuzzBdayMsg: any frame decodes or fails without panicking; what decodes
// satisfies the checks the handlers rely on and reads back the same.
func FuzzBdayMsg(f *testing.F) {
	nonce := bytes.Repeat([]byte{1}, bdayNonceLen)
	for _, m := range []bdayMsg{
		{Kind: typeStart, Nonce: nonce, Addr: "8.0.0.5:7400"},
		{Kind: typeReady, Nonce: nonce, Addr: "8.0.0.7"},
		{Kind: typeHit, Port: 43397},
		{Kind: typeDone, OK: true, Probes: 96},
	} {
		var buf bytes.Buffer
		if err := writeBdayMsg(&buf, m); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
	}
	f.Add(frame.Append(nil, typeStart, wireVersion, []byte(`{"addr":"[::1]:1"}`)))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := readBdayMsg(bytes.NewReader(b))
		if err != nil {
			return
		}
		switch m.Kind {
		case typeStart, typeReady:
			if len(m.Nonce) != bdayNonceLen {
				t.Fatalf("nonce of %d bytes", len(m.Nonce))
			}
		case typeHit:
			if m.Port < bdayPortMin {
				t.Fatalf("port %d", m.Port)
			}
		case typeDone:
		default:
			t.Fatalf("kind %d", m.Kind)
		}
		// The handlers parse these without checking again.
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("%x: %v", b, r)
			}
		}()
		if m.Kind == typeStart {
			_ = netip.MustParseAddrPort(m.Addr)
		}
		if m.Kind == typeReady {
			_ = netip.MustParseAddr(m.Addr)
		}
		var buf bytes.Buffer
		if err := writeBdayMsg(&buf, m); err != nil {
			t.Fatalf("%+v does not encode: %v", m, err)
		}
		again, err := readBdayMsg(&buf)
		if err != nil || again.Kind != m.Kind || again.Addr != m.Addr || again.Port != m.Port ||
			again.OK != m.OK || again.Probes != m.Probes || !bytes.Equal(again.Nonce, m.Nonce) {
			t.Fatalf("round trip of %+v: %+v, %v", m, again, err)
		}
	})
}

// FuzzParseBdayPacket: any datagram is a probe or not without panicking;
// a probe carries the nonce and a port in range.
func FuzzParseBdayPacket(f *testing.F) {
	nonce := bytes.Repeat([]byte{9}, bdayNonceLen)
	f.Add(bdayPacket(nonce, 40000))
	f.Add(bdayPacket(nonce, 0))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		port, ok := parseBdayPacket(b, nonce)
		if !ok {
			return
		}
		if port < bdayPortMin || !bytes.Equal(bdayPacket(nonce, port), b) {
			t.Fatalf("%x: port %d", b, port)
		}
	})
}
