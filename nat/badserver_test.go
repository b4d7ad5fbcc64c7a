package nat

import (
	"context"
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

// fakeServer answers every datagram on a loopback socket with what answer
// returns (nothing if nil).
func fakeServer(t *testing.T, answer func(req []byte) []byte) netip.AddrPort {
	t.Helper()
	c := udp(t, "127.0.0.1:0")
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if out := answer(append([]byte(nil), buf[:n]...)); out != nil {
				for range 3 { // a flood of junk
					c.WriteToUDPAddrPort(out, from)
				}
			}
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return addrPortOf(c.LocalAddr())
}

// withTxID builds a message of the given type whose transaction ID is the
// request's, with the given attributes.
func withTxID(req []byte, typ stun.MessageType, setters ...stun.Setter) []byte {
	var m stun.Message
	if err := stun.Decode(req, &m); err != nil {
		return nil
	}
	out, err := stun.Build(append([]stun.Setter{stun.NewTransactionIDSetter(m.TransactionID), typ}, setters...)...)
	if err != nil {
		panic(err)
	}
	return out.Raw
}

func TestBadServers(t *testing.T) {
	garbage := fakeServer(t, func([]byte) []byte { return []byte("HTTP/1.1 400 Bad Request\r\n\r\n") })
	silent := fakeServer(t, func([]byte) []byte { return nil })
	otherTx := fakeServer(t, func([]byte) []byte {
		m, _ := stun.Build(stun.TransactionID, stun.BindingSuccess, &stun.XORMappedAddress{IP: net.IPv4(1, 2, 3, 4), Port: 5})
		return m.Raw
	})
	badFamily := fakeServer(t, func(req []byte) []byte {
		return withTxID(req, stun.BindingSuccess, attr{stun.AttrXORMappedAddress, []byte{0, 7, 1, 2, 3, 4, 5, 6}})
	})
	shortAddr := fakeServer(t, func(req []byte) []byte {
		return withTxID(req, stun.BindingSuccess, attr{stun.AttrXORMappedAddress, []byte{0, 1, 1, 2, 3}})
	})
	noMapped := fakeServer(t, func(req []byte) []byte { return withTxID(req, stun.BindingSuccess) })
	zeroMapped := fakeServer(t, func(req []byte) []byte {
		return withTxID(req, stun.BindingSuccess, &stun.MappedAddress{IP: net.IPv4zero, Port: 0})
	})
	badFingerprint := fakeServer(t, func(req []byte) []byte {
		out := withTxID(req, stun.BindingSuccess, &stun.XORMappedAddress{IP: net.IPv4(1, 2, 3, 4), Port: 5}, stun.Fingerprint)
		out[len(out)-1] ^= 1
		return out
	})
	errResp := fakeServer(t, func(req []byte) []byte {
		return withTxID(req, stun.BindingError, stun.ErrorCodeAttribute{Code: 500, Reason: []byte("Server Error")})
	})
	badErr := fakeServer(t, func(req []byte) []byte {
		return withTxID(req, stun.BindingError, attr{stun.AttrErrorCode, []byte{0}})
	})
	truncated := fakeServer(t, func(req []byte) []byte {
		out := withTxID(req, stun.BindingSuccess, &stun.XORMappedAddress{IP: net.IPv4(1, 2, 3, 4), Port: 5})
		return out[:len(out)-2]
	})
	closedPort := func() netip.AddrPort {
		c := udp(t, "127.0.0.1:0")
		a := addrPortOf(c.LocalAddr())
		c.Close()
		return a
	}()

	for _, tc := range []struct {
		name   string
		server string
		err    error
		text   string
	}{
		{"garbage", garbage.String(), ErrBadResponse, "not STUN responses"},
		{"silent", silent.String(), ErrTimeout, "no response to 3 requests"},
		{"other transaction", otherTx.String(), ErrBadResponse, "not STUN responses"},
		{"bad family", badFamily.String(), ErrBadResponse, "address family 7"},
		{"short address", shortAddr.String(), ErrBadResponse, "want 8"},
		{"no mapped address", noMapped.String(), ErrBadResponse, "no XOR-MAPPED-ADDRESS"},
		{"zero mapped address", zeroMapped.String(), ErrBadResponse, "not usable"},
		{"bad fingerprint", badFingerprint.String(), ErrBadResponse, "not STUN responses"},
		{"error response", errResp.String(), ErrServerError, "500"},
		{"bad error response", badErr.String(), ErrBadResponse, "ERROR-CODE"},
		{"truncated", truncated.String(), ErrBadResponse, "not STUN responses"},
		{"closed port", closedPort.String(), ErrTimeout, "no response"},
		{"unresolvable", "stun.invalid:3478", ErrUnreachable, "resolve stun.invalid"},
		{"wrong family", "[::1]:3478", ErrUnreachable, "family"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newProber(t, fastConfig(tc.server))
			// Never ask a real resolver: only loopback traffic in tests.
			p.lookup = func(ctx context.Context, network, host string) ([]netip.Addr, error) {
				return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
			}
			start := time.Now()
			info, err := probe(t, p)
			if elapsed := time.Since(start); elapsed > 2*time.Second {
				t.Errorf("probe took %v", elapsed)
			}
			if !errors.Is(err, ErrNoAnswer) {
				t.Fatalf("err %v, want ErrNoAnswer", err)
			}
			if info.Type != TypeUnknown || info.PublicIP.IsValid() {
				t.Errorf("info %+v, want type unknown and no public address", info)
			}
			if len(info.Servers) != 1 || info.Servers[0].OK {
				t.Fatalf("servers %+v", info.Servers)
			}
			if !strings.Contains(info.Error, tc.text) || !strings.Contains(info.Servers[0].Error, tc.text) {
				t.Errorf("error %q / %q, want it to mention %q", info.Error, info.Servers[0].Error, tc.text)
			}
			_, serr := p.ep.roundTrip(context.Background(), mustResolve(t, tc.server), 0, 20*time.Millisecond, 0)
			if tc.server != "stun.invalid:3478" && !errors.Is(serr, tc.err) {
				t.Errorf("roundTrip: %v, want %v", serr, tc.err)
			}
		})
	}
}

func mustResolve(t *testing.T, s string) netip.AddrPort {
	a, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.MustParseAddrPort("127.0.0.1:9")
	}
	return a
}

// A bad server next to a good one: the good one is used, the bad one is
// reported.
func TestBadServerBesideGoodOne(t *testing.T) {
	silent := fakeServer(t, func([]byte) []byte { return nil })
	good := rfc5780Server(t, ServerConfig{})
	p := newProber(t, fastConfig(silent.String(), good.Addr().String()))
	info, err := probe(t, p)
	if err != nil {
		t.Fatal(err)
	}
	if info.Type != TypeOpen || info.Filtering != BehaviorEndpointIndependent {
		t.Errorf("info %+v", info)
	}
	if info.Servers[0].OK || !info.Servers[1].OK || !strings.Contains(info.Error, silent.String()+": no response") {
		t.Errorf("servers %+v, error %q", info.Servers, info.Error)
	}
}

// Non-STUN traffic on the socket (QUIC shares it) is ignored and counted.
func TestProberIgnoresForeignTraffic(t *testing.T) {
	s := simpleServer(t)
	cfg := fastConfig(s.Addr().String())
	cfg.NoBehaviorTests = true
	p := newProber(t, cfg)
	c := udp(t, "127.0.0.1:0")
	for i := range 10 {
		c.WriteTo([]byte(fmt.Sprintf("punch %d", i)), net.UDPAddrFromAddrPort(p.LocalAddr()))
	}
	testnet.Eventually(t, 2*time.Second, func() error {
		if n := p.ep.ignoredCount(); n < 10 {
			return fmt.Errorf("%d datagrams ignored, want 10", n)
		}
		return nil
	})
	if n := p.ep.ignoredCount(); n != 10 {
		t.Errorf("ignored %d datagrams, want 10", n)
	}
	if _, err := probe(t, p); err != nil {
		t.Error(err)
	}
}
