package punch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	libp2pquic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/quicreuse"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
	"go.uber.org/fx"

	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/nat"
)

const testRealm = "io.acme.punch"

// newHost starts a QUIC host on 127.0.0.1 with the circuit relay client, and
// the relay service when relay is set. It returns the host's socket sharer.
func newHost(t *testing.T, relay bool) (host.Host, *quicreuse.ConnManager) {
	t.Helper()
	var cm *quicreuse.ConnManager
	opts := []libp2p.Option{
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/udp/0/quic-v1"),
		libp2p.Transport(libp2pquic.NewTransport),
		libp2p.DisableMetrics(),
		libp2p.EnableRelay(),
		libp2p.WithFxOption(fx.Populate(&cm)),
	}
	if relay {
		opts = append(opts, libp2p.EnableRelayService(), libp2p.ForceReachabilityPublic())
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h, cm
}

// quicAddr is h's QUIC listen address as ip:port.
func quicAddr(t *testing.T, h host.Host) netip.AddrPort {
	t.Helper()
	for _, a := range h.Network().ListenAddresses() {
		if _, err := a.ValueForProtocol(ma.P_QUIC_V1); err != nil {
			continue
		}
		_, hostport, err := manet.DialArgs(a)
		if err != nil {
			continue
		}
		return netip.MustParseAddrPort(hostport)
	}
	t.Fatalf("no QUIC address in %v", h.Network().ListenAddresses())
	return netip.AddrPort{}
}

func always(context.Context, peer.ID) bool { return true }

func newService(t *testing.T, h host.Host, cfg Config) *Service {
	t.Helper()
	cfg.Realm = testRealm
	if cfg.Verified == nil {
		cfg.Verified = always
	}
	if cfg.Logger == nil {
		cfg.Logger = testnet.QuietLogger()
	}
	s, err := New(h, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestNewValidates(t *testing.T) {
	h, _ := newHost(t, false)
	self := func() nat.Info { return nat.Info{} }
	for _, c := range []struct {
		name string
		cfg  Config
	}{
		{"realm", Config{Realm: "Not A Realm", Self: self, Verified: always}},
		{"self", Config{Realm: testRealm, Verified: always}},
		{"verified", Config{Realm: testRealm, Self: self}},
		{"sockets", Config{Realm: testRealm, Self: self, Verified: always, BirthdaySockets: bdaySocketsMax + 1}},
		{"probes", Config{Realm: testRealm, Self: self, Verified: always, BirthdayProbes: -1}},
	} {
		if _, err := New(h, c.cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v, want ErrConfig", c.name, err)
		}
	}
	if _, err := New(nil, Config{Realm: testRealm, Self: self, Verified: always}); !errors.Is(err, ErrConfig) {
		t.Errorf("nil host: %v", err)
	}
	if slices.Contains(h.Mux().Protocols(), Protocol(testRealm)) {
		t.Error("a refused New left its handler")
	}
}

// TestClose: the service's handlers and its filter go with Close, which is
// safe twice; goroutines are checked by TestMain.
func TestClose(t *testing.T) {
	h, cm := newHost(t, false)
	f := NewFilter()
	s := newService(t, h, Config{Self: func() nat.Info { return nat.Info{Type: nat.TypeSymmetric} }, Sockets: cm, Filter: f})
	protos := h.Mux().Protocols()
	if !slices.Contains(protos, Protocol(testRealm)) || !slices.Contains(protos, BirthdayProtocol(testRealm)) {
		t.Fatalf("handlers missing: %v", protos)
	}
	if f.svc.Load() != s {
		t.Fatal("filter not attached")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	protos = h.Mux().Protocols()
	if slices.Contains(protos, Protocol(testRealm)) || slices.Contains(protos, BirthdayProtocol(testRealm)) {
		t.Fatalf("handlers left after Close: %v", protos)
	}
	if f.svc.Load() != nil {
		t.Fatal("filter still attached after Close")
	}
}

// relayed connects caller to callee through relay (callee reserves a slot)
// and returns the relayed connection as the callee sees it.
func relayed(t *testing.T, relay, callee, caller host.Host) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ri := peer.AddrInfo{ID: relay.ID(), Addrs: relay.Addrs()}
	if err := callee.Connect(ctx, ri); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Reserve(ctx, callee, ri); err != nil {
		t.Fatal(err)
	}
	circuit := ma.StringCast(fmt.Sprintf("%s/p2p/%s/p2p-circuit", relay.Addrs()[0], relay.ID()))
	if err := caller.Connect(ctx, peer.AddrInfo{ID: callee.ID(), Addrs: []ma.Multiaddr{circuit}}); err != nil {
		t.Fatal(err)
	}
}

func directConns(h host.Host, p peer.ID) []network.Conn {
	var out []network.Conn
	for _, c := range h.Network().ConnsToPeer(p) {
		if !isRelayed(c.RemoteMultiaddr()) {
			out = append(out, c)
		}
	}
	return out
}

// TestNATAwareDial: a node that says it is behind symmetric NAT receives a
// relayed connection from one that says full cone; the service asks the peer
// over the relay for its type and address and dials it directly (on
// loopback, where every address is reachable, so the dial shows the
// exchange and the decision, not a NAT).
func TestNATAwareDial(t *testing.T) {
	relay, _ := newHost(t, true)
	callee, calleeCM := newHost(t, false)
	caller, callerCM := newHost(t, false)
	callerAddr := quicAddr(t, caller)
	f := NewFilter()
	newService(t, callee, Config{Self: func() nat.Info {
		return nat.Info{Type: nat.TypeSymmetric, PublicIP: netip.MustParseAddr("127.0.0.1"), PublicPort: 1}
	}, Sockets: calleeCM, Filter: f})
	newService(t, caller, Config{Self: func() nat.Info {
		return nat.Info{Type: nat.TypeFullCone, PublicIP: callerAddr.Addr(), PublicPort: callerAddr.Port()}
	}, Sockets: callerCM})

	relayed(t, relay, callee, caller)
	testnet.Eventually(t, 5*time.Second, holds("direct connection from the callee", func() bool {
		for _, c := range directConns(callee, caller.ID()) {
			if c.Stat().Direction == network.DirOutbound {
				return true
			}
		}
		return false
	}))
}

// TestNoDialForPortRestricted: the same with a port-restricted peer: the
// exchange says DCUtR is needed, so the service dials nothing and DCUtR
// gets the peer's addresses.
func TestNoDialForPortRestricted(t *testing.T) {
	relay, _ := newHost(t, true)
	callee, calleeCM := newHost(t, false)
	caller, callerCM := newHost(t, false)
	callerAddr := quicAddr(t, caller)
	answered := make(chan struct{}, 1)
	f := NewFilter()
	newService(t, callee, Config{Self: func() nat.Info {
		return nat.Info{Type: nat.TypeSymmetric, PublicIP: netip.MustParseAddr("127.0.0.1"), PublicPort: 1}
	}, Sockets: calleeCM, Filter: f})
	newService(t, caller, Config{Self: func() nat.Info {
		select {
		case answered <- struct{}{}:
		default:
		}
		return nat.Info{Type: nat.TypePortRestricted, PublicIP: callerAddr.Addr(), PublicPort: callerAddr.Port()}
	}, Sockets: callerCM})
	relayed(t, relay, callee, caller)
	select {
	case <-answered:
	case <-time.After(5 * time.Second):
		t.Fatal("the caller was never asked")
	}
	addrs := []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/udp/9/quic-v1")}
	if got := f.FilterRemote(caller.ID(), addrs); len(got) != 1 {
		t.Fatalf("DCUtR got %v, want the addresses", got)
	}
	if c := directConns(callee, caller.ID()); len(c) != 0 {
		t.Fatalf("direct connections %v", c)
	}
}

// TestUnverifiedPeerRefused: a peer that has not passed the realm
// handshake gets its punch stream reset, and learns nothing.
func TestUnverifiedPeerRefused(t *testing.T) {
	a, _ := newHost(t, false)
	b, _ := newHost(t, false)
	newService(t, a, Config{
		Self:     func() nat.Info { return nat.Info{Type: nat.TypeRestricted} },
		Verified: func(context.Context, peer.ID) bool { return false },
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Connect(ctx, peer.AddrInfo{ID: a.ID(), Addrs: a.Addrs()}); err != nil {
		t.Fatal(err)
	}
	st, err := b.NewStream(ctx, a.ID(), Protocol(testRealm))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	_ = writePunchMsg(st, punchMsg{Type: "symmetric", Addr: "8.0.0.7:1"})
	if m, err := readPunchMsg(st); err == nil {
		t.Fatalf("answered %+v", m)
	}
}

// TestListenerLifecycle: a birthday listener stays while a direct
// connection uses it and closes when none does any more, or with the
// service.
func TestListenerLifecycle(t *testing.T) {
	b, _ := newHost(t, false)
	c, _ := newHost(t, false)
	s := newService(t, b, Config{Self: func() nat.Info { return nat.Info{} }})
	// A listener on a free port, as on a probed socket's once closed.
	var port int
	var laddr ma.Multiaddr
	listen := func() {
		u, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		port = u.LocalAddr().(*net.UDPAddr).Port
		u.Close()
		laddr = ma.StringCast(fmt.Sprintf("/ip4/127.0.0.1/udp/%d/quic-v1", port))
		if !s.bdayAddListener(port) {
			t.Fatal("no room for a listener")
		}
		if err := b.Network().Listen(laddr); err != nil {
			t.Fatal(err)
		}
	}
	listen()
	listening := func() bool { return slices.ContainsFunc(b.Network().ListenAddresses(), laddr.Equal) }
	if got := s.WithoutListeners(b.Network().ListenAddresses()); slices.ContainsFunc(got, laddr.Equal) {
		t.Fatalf("WithoutListeners kept the listener: %v", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: []ma.Multiaddr{laddr}}); err != nil {
		t.Fatal(err)
	}
	checks := s.watchChecks.Load()
	s.bdayWatch(port, laddr)
	testnet.Eventually(t, 3*bdayWatchEvery, holds("check by the listener's watcher", func() bool { return s.watchChecks.Load() > checks }))
	if !listening() || !s.bdayListenPort(port) {
		t.Fatal("listener closed while a connection uses it")
	}
	if err := c.Network().ClosePeer(b.ID()); err != nil {
		t.Fatal(err)
	}
	testnet.Eventually(t, 3*bdayWatchEvery, holds("closed listener", func() bool { return !listening() && !s.bdayListenPort(port) }))

	// Close ends a watcher and closes its listener.
	listen()
	s.bdayWatch(port, laddr)
	s.Close()
	if listening() || s.bdayListenPort(port) {
		t.Fatal("listener left after Close")
	}
}

// holds adapts a condition to testnet.Eventually.
func holds(what string, cond func() bool) func() error {
	return func() error {
		if !cond() {
			return fmt.Errorf("no %s yet", what)
		}
		return nil
	}
}

// TestRetryDirect: two nodes that say they are behind restricted cones
// stay relayed (no DCUtR on these hosts, and the first punch is not for
// them); once the relayed connection is RetryAfter old, the side with the
// smaller peer ID asks the other to open its filter and dials it directly.
// Two symmetric nodes retry too, and dial nothing.
func TestRetryDirect(t *testing.T) {
	for _, c := range []struct {
		typ    nat.Type
		direct bool
	}{{nat.TypeRestricted, true}, {nat.TypePortRestricted, true}, {nat.TypeSymmetric, false}} {
		t.Run(string(c.typ), func(t *testing.T) {
			relay, _ := newHost(t, true)
			callee, calleeCM := newHost(t, false)
			caller, callerCM := newHost(t, false)
			svc := map[peer.ID]*Service{}
			for _, h := range []struct {
				h  host.Host
				cm *quicreuse.ConnManager
			}{{callee, calleeCM}, {caller, callerCM}} {
				ap := quicAddr(t, h.h)
				svc[h.h.ID()] = newService(t, h.h, Config{Self: func() nat.Info {
					return nat.Info{Type: c.typ, PublicIP: ap.Addr(), PublicPort: ap.Port()}
				}, Sockets: h.cm, RetryAfter: 100 * time.Millisecond})
			}
			relayed(t, relay, callee, caller)
			if !c.direct {
				testnet.Eventually(t, 10*time.Second, holds("retry by both", func() bool {
					return svc[callee.ID()].retries.Load() > 0 && svc[caller.ID()].retries.Load() > 0
				}))
				if d := directConns(caller, callee.ID()); len(d) != 0 {
					t.Fatalf("direct connections %v", d)
				}
				return
			}
			testnet.Eventually(t, 10*time.Second, holds("direct connection", func() bool { return len(directConns(caller, callee.ID())) > 0 }))
			first, second := callee.ID(), caller.ID()
			if second < first {
				first, second = second, first
			}
			if svc[first].retries.Load() == 0 || svc[second].retries.Load() != 0 {
				t.Fatalf("retries: %d by the smaller ID, %d by the other; want only the smaller", svc[first].retries.Load(), svc[second].retries.Load())
			}
		})
	}
}

// TestRetryLoopSleeps: with no peer reached through relays only, the retry
// loop runs once at the start and then sleeps (it used to tick every
// retryTick on every node); a closed connection wakes it once.
func TestRetryLoopSleeps(t *testing.T) {
	a, _ := newHost(t, false)
	b, _ := newHost(t, false)
	self := func() nat.Info { return nat.Info{Type: nat.TypePortRestricted} }
	svc := newService(t, a, Config{Self: self})
	newService(t, b, Config{Self: self})
	testnet.Connect(t, a, b)
	time.Sleep(2*retryTick + retryTick/2) // not a timing assertion: rounds are counted
	if n := svc.retryRounds.Load(); n != 1 {
		t.Fatalf("%d rounds of the retry loop with no relayed peer, want 1 (the first)", n)
	}
	if err := a.Network().ClosePeer(b.ID()); err != nil {
		t.Fatal(err)
	}
	testnet.Eventually(t, 10*time.Second, holds("a round after the close", func() bool { return svc.retryRounds.Load() >= 2 }))
}
