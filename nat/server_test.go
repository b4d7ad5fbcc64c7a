package nat

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v3"

	"github.com/macula-io/macula/internal/testnet"
)

// exchange sends one request from c to dst and returns the first STUN
// answer and where it came from (or fails after a second).
func exchange(t *testing.T, c *net.UDPConn, dst netip.AddrPort, setters ...stun.Setter) (*stun.Message, netip.AddrPort) {
	t.Helper()
	req, err := stun.Build(append([]stun.Setter{stun.TransactionID, stun.BindingRequest}, setters...)...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteTo(req.Raw, net.UDPAddrFromAddrPort(dst)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 1500)
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("no answer from %v: %v", dst, err)
	}
	m, err := decode(buf[:n])
	if err != nil {
		t.Fatalf("answer from %v does not decode: %v", from, err)
	}
	if m.TransactionID != req.TransactionID {
		t.Fatalf("answer has another transaction ID")
	}
	return m, netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
}

func TestServerAnswersBinding(t *testing.T) {
	s := simpleServer(t)
	c := udp(t, "127.0.0.1:0")
	m, from := exchange(t, c, s.Addr())
	if from != s.Addr() {
		t.Errorf("answer from %v, want %v", from, s.Addr())
	}
	b, err := parseResponse(m)
	if err != nil {
		t.Fatal(err)
	}
	if want := addrPortOf(c.LocalAddr()); b.mapped != want {
		t.Errorf("XOR-MAPPED-ADDRESS %v, want %v", b.mapped, want)
	}
	if b.other.IsValid() {
		t.Errorf("OTHER-ADDRESS %v from a one-socket server (RFC 5780 section 6.1 forbids it)", b.other)
	}
	if b.origin != s.Addr() {
		t.Errorf("RESPONSE-ORIGIN %v, want %v", b.origin, s.Addr())
	}
	if err := stun.Fingerprint.Check(m); err != nil {
		t.Errorf("FINGERPRINT: %v", err)
	}
	if s.RFC5780() {
		t.Error("RFC5780() true with one socket")
	}
}

func TestServerRefusesChangeWithoutAlternate(t *testing.T) {
	s := simpleServer(t)
	c := udp(t, "127.0.0.1:0")
	m, _ := exchange(t, c, s.Addr(), changeIP|changePort)
	_, err := parseResponse(m)
	var se *ServerError
	if !errors.As(err, &se) || se.Code != 420 {
		t.Fatalf("got %v, want error response 420", err)
	}
	var ua stun.UnknownAttributes
	if err := ua.GetFrom(m); err != nil || len(ua) != 1 || ua[0] != stun.AttrChangeRequest {
		t.Errorf("UNKNOWN-ATTRIBUTES %v (%v), want CHANGE-REQUEST", ua, err)
	}
	// A CHANGE-REQUEST that asks for no change is answered.
	m, _ = exchange(t, c, s.Addr(), changeFlags(0))
	if _, err := parseResponse(m); err != nil {
		t.Errorf("CHANGE-REQUEST 0: %v", err)
	}
}

func TestServerUnknownAndBadAttributes(t *testing.T) {
	s := simpleServer(t)
	c := udp(t, "127.0.0.1:0")
	m, _ := exchange(t, c, s.Addr(), attr{stun.AttrType(0x0042), []byte{1, 2, 3, 4}}, attr{stun.AttrType(0x8042), []byte{1}})
	var ua stun.UnknownAttributes
	if err := ua.GetFrom(m); err != nil || len(ua) != 1 || ua[0] != 0x0042 {
		t.Errorf("UNKNOWN-ATTRIBUTES %v (%v), want only 0x0042 (0x8042 is comprehension-optional)", ua, err)
	}
	m, _ = exchange(t, c, s.Addr(), attr{stun.AttrChangeRequest, []byte{0, 0, 6}})
	var se *ServerError
	if _, err := parseResponse(m); !errors.As(err, &se) || se.Code != 400 {
		t.Errorf("short CHANGE-REQUEST: got %v, want 400", err)
	}
	st := s.Stats()
	if st.Requests != 2 || st.Errors != 2 || st.Responses != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestServerRFC5780(t *testing.T) {
	s := rfc5780Server(t, ServerConfig{Software: "macula test"})
	if !s.RFC5780() {
		t.Fatal("RFC5780() false with four sockets")
	}
	a1p1 := s.Addr()
	c := udp(t, "127.0.0.1:0")
	m, _ := exchange(t, c, a1p1)
	b, err := parseResponse(m)
	if err != nil {
		t.Fatal(err)
	}
	a2p2 := b.other
	if a2p2.Addr() != netip.MustParseAddr("127.0.0.2") || a2p2.Port() == a1p1.Port() {
		t.Fatalf("OTHER-ADDRESS %v", a2p2)
	}
	var sw stun.Software
	if err := sw.GetFrom(m); err != nil || sw.String() != "macula test" {
		t.Errorf("SOFTWARE %q (%v)", sw, err)
	}
	a1p2 := netip.AddrPortFrom(a1p1.Addr(), a2p2.Port())
	a2p1 := netip.AddrPortFrom(a2p2.Addr(), a1p1.Port())
	for _, tc := range []struct {
		to     netip.AddrPort
		change changeFlags
		from   netip.AddrPort
		other  netip.AddrPort
	}{
		{a1p1, 0, a1p1, a2p2},
		{a1p1, changePort, a1p2, a2p2},
		{a1p1, changeIP, a2p1, a2p2},
		{a1p1, changeIP | changePort, a2p2, a2p2},
		{a2p1, 0, a2p1, a1p2},
		{a2p2, changeIP | changePort, a1p1, a1p1},
		{a1p2, changeIP, a2p2, a2p1},
	} {
		m, from := exchange(t, c, tc.to, tc.change)
		b, err := parseResponse(m)
		if err != nil {
			t.Errorf("to %v change %v: %v", tc.to, tc.change, err)
			continue
		}
		if from != tc.from || b.origin != tc.from {
			t.Errorf("to %v change %v: from %v, RESPONSE-ORIGIN %v, want %v", tc.to, tc.change, from, b.origin, tc.from)
		}
		if b.other != tc.other {
			t.Errorf("to %v: OTHER-ADDRESS %v, want %v", tc.to, b.other, tc.other)
		}
	}
}

func TestServerRateLimit(t *testing.T) {
	s, err := NewServer(ServerConfig{RateLimit: 5}, Sockets{Primary: udp(t, "127.0.0.1:0")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := udp(t, "127.0.0.1:0")
	req, _ := newRequest(0)
	for range 20 {
		c.WriteTo(req.Raw, net.UDPAddrFromAddrPort(s.Addr()))
	}
	testnet.Eventually(t, 2*time.Second, func() error {
		if n := s.Stats().Requests; n < 20 {
			return fmt.Errorf("%d requests seen, want 20", n)
		}
		return nil
	})
	st := s.Stats()
	if st.Responses > 6 || st.RateLimited < 14 {
		t.Errorf("stats %+v: want about 5 responses and the rest rate limited", st)
	}
}

func TestServerIgnoresNonRequests(t *testing.T) {
	s := simpleServer(t)
	c := udp(t, "127.0.0.1:0")
	ind, _ := stun.Build(stun.TransactionID, stun.NewType(stun.MethodBinding, stun.ClassIndication))
	resp, _ := stun.Build(stun.TransactionID, stun.BindingSuccess)
	for _, b := range [][]byte{[]byte("hello"), ind.Raw, resp.Raw, make([]byte, 2000)} {
		c.WriteTo(b, net.UDPAddrFromAddrPort(s.Addr()))
	}
	testnet.Eventually(t, 2*time.Second, func() error {
		if n := s.Stats().Ignored; n < 4 {
			return fmt.Errorf("%d datagrams ignored, want 4", n)
		}
		return nil
	})
	if st := s.Stats(); st.Ignored != 4 || st.Responses != 0 {
		t.Errorf("stats %+v, want 4 ignored", st)
	}
}

func TestNewServerValidates(t *testing.T) {
	a := udp(t, "127.0.0.1:0")
	b := udp(t, "127.0.0.1:0")
	for name, tc := range map[string]struct {
		cfg   ServerConfig
		socks Sockets
		want  string
	}{
		"no primary":    {ServerConfig{}, Sockets{}, "Primary is required"},
		"two sockets":   {ServerConfig{}, Sockets{Primary: a, AltPort: b}, "all four"},
		"long software": {ServerConfig{Software: strings.Repeat("x", 200)}, Sockets{Primary: a}, "Software"},
	} {
		_, err := NewServer(tc.cfg, tc.socks)
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrConfig mentioning %q", name, err, tc.want)
		}
	}
}
