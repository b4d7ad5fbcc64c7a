package nat

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/macula-io/macula/internal/testnet"
)

func TestMain(m *testing.M) {
	testnet.VerifyTestMain(m)
}

// udp binds a UDP socket on ip:0 (ip:port with port) and closes it at the
// end of the test (closing twice is harmless).
func udp(t testing.TB, hostport string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(hostport)))
	if err != nil {
		t.Fatalf("listen %s: %v", hostport, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// fastConfig keeps failing transactions short: 50+100+200 ms.
func fastConfig(servers ...string) Config {
	return Config{
		Servers:     servers,
		Interval:    -1,
		RTO:         50 * time.Millisecond,
		Retransmits: 2,
		Logger:      slog.New(slog.DiscardHandler),
	}
}

// newProber starts a Prober on a fresh loopback socket.
func newProber(t testing.TB, cfg Config) *Prober {
	t.Helper()
	p, err := New(cfg, udp(t, "127.0.0.1:0"))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func probe(t testing.TB, p *Prober) (Info, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return p.Probe(ctx)
}

// rfc5780Server starts a Server on 127.0.0.1 and 127.0.0.2 with two ports.
func rfc5780Server(t testing.TB, cfg ServerConfig) *Server {
	t.Helper()
	for try := 0; try < 20; try++ {
		a := udp(t, "127.0.0.1:0")
		b := udp(t, "127.0.0.1:0")
		p1, p2 := a.LocalAddr().(*net.UDPAddr).Port, b.LocalAddr().(*net.UDPAddr).Port
		c, err1 := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: p1})
		d, err2 := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: p2})
		if err1 != nil || err2 != nil {
			for _, x := range []*net.UDPConn{a, b, c, d} {
				if x != nil {
					x.Close()
				}
			}
			continue // a port taken on 127.0.0.2: try others
		}
		s, err := NewServer(cfg, Sockets{Primary: a, AltPort: b, AltIP: c, AltBoth: d})
		if err != nil {
			t.Fatalf("NewServer: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	t.Fatal("no pair of ports free on 127.0.0.1 and 127.0.0.2")
	return nil
}

// simpleServer starts a Server with one socket on 127.0.0.1.
func simpleServer(t testing.TB) *Server {
	t.Helper()
	s, err := NewServer(ServerConfig{}, Sockets{Primary: udp(t, "127.0.0.1:0")})
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
