package reach

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/proto"
	libp2pquic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/quicreuse"
	"go.uber.org/fx"

	"github.com/macula-io/macula/frame"
	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/nat"
)

const testRealm = "io.acme.reach"

// node is a loopback host with a nat.Prober on its QUIC socket (no STUN
// servers: it only watches for dial-back requests).
type node struct {
	h      host.Host
	prober *nat.Prober
}

func newNode(t *testing.T) node {
	t.Helper()
	var cm *quicreuse.ConnManager
	h, err := libp2p.New(
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/udp/0/quic-v1"),
		libp2p.Transport(libp2pquic.NewTransport),
		libp2p.DisableMetrics(), libp2p.DisableRelay(),
		libp2p.ForceReachabilityPrivate(),
		libp2p.WithFxOption(fx.Populate(&cm)),
	)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := nat.SharedQUICConn(cm, h.Network().ListenAddresses())
	if err != nil {
		h.Close()
		t.Fatal(err)
	}
	p, err := nat.New(nat.Config{Interval: -1, Logger: testnet.QuietLogger()}, conn)
	if err != nil {
		conn.Close()
		h.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Close()
		h.Close()
	})
	return node{h, p}
}

func always(context.Context, peer.ID) bool { return true }

// decisions records what OnDecision saw.
type decisions struct {
	mu  sync.Mutex
	all []nat.Decision
}

func (d *decisions) add(x nat.Decision) {
	d.mu.Lock()
	d.all = append(d.all, x)
	d.mu.Unlock()
}

func (d *decisions) last() nat.Decision {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.all) == 0 {
		return nat.Decision{}
	}
	return d.all[len(d.all)-1]
}

func start(t *testing.T, n node, cfg Config) *Service {
	t.Helper()
	cfg.Realm = testRealm
	if cfg.Verified == nil {
		cfg.Verified = always
	}
	if cfg.Info == nil {
		cfg.Info = n.prober.Info
	}
	if cfg.Logger == nil {
		cfg.Logger = testnet.QuietLogger()
	}
	cfg.allowPrivate = true // loopback peers may check
	s, err := New(n.h, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func connect(t *testing.T, a, b host.Host) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err != nil {
		t.Fatal(err)
	}
}

// behindNAT is what STUN says of a node behind a port-restricted NAT (or a
// firewall that lets one port in): only a dial-back can tell.
func behindNAT() nat.Info {
	return nat.Info{Type: nat.TypePortRestricted, Mapping: nat.BehaviorEndpointIndependent,
		Filtering: nat.BehaviorAddressAndPortDependent, PublicIP: netip.MustParseAddr("8.0.0.5"), PublicPort: 7400,
		MeasuredAt: measured}
}

// measured is when the fake measurements were made.
var measured = time.Now()

func hasRelayService(h host.Host) bool {
	return slices.Contains(h.Mux().Protocols(), proto.ProtoIDv2Hop)
}

// TestFirstDecision: before anything is measured the node acts as private
// (reservations, DHT client), and says so on the host's bus at once.
func TestFirstDecision(t *testing.T) {
	n := newNode(t)
	sub, err := n.h.EventBus().Subscribe(new(event.EvtLocalReachabilityChanged))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var ds decisions
	s := start(t, n, Config{Expect: n.prober.ExpectRequest, OnDecision: ds.add})
	d := s.Decision()
	if d.Reachability != nat.ReachabilityUnknown || d.DHTServer || !d.Reservations || d.RelayService {
		t.Fatalf("first decision %+v", d)
	}
	if ds.last() != d {
		t.Fatalf("OnDecision saw %+v", ds.last())
	}
	// The static AutoNAT's "private", then ours.
	deadline := time.After(5 * time.Second)
	for {
		select {
		case e := <-sub.Out():
			if r := e.(event.EvtLocalReachabilityChanged).Reachability; r != network.ReachabilityPrivate {
				t.Fatalf("bus says %v", r)
			}
		case <-deadline:
			return
		case <-time.After(300 * time.Millisecond):
			return
		}
	}
}

// TestDialBackReached: a node that STUN finds behind a port-restricted NAT
// asks a connected peer to send from a new socket; the request reaches its
// QUIC socket (loopback has no filter), so the node is public: DHT server,
// relay service, no reservations, and the bus says public.
func TestDialBackReached(t *testing.T) {
	a, b := newNode(t), newNode(t)
	start(t, b, Config{Info: behindNAT})
	sub, err := a.h.EventBus().Subscribe(new(event.EvtLocalReachabilityChanged))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var ds decisions
	s := start(t, a, Config{Info: behindNAT, Expect: a.prober.ExpectRequest, OnDecision: ds.add})
	if s.Decision().Public() {
		t.Fatal("public before any check")
	}
	connect(t, a.h, b.h)
	testnet.Eventually(t, 10*time.Second, holds("public decision", func() bool { return s.Decision().Public() }))
	d := s.Decision()
	if !d.DHTServer || !d.RelayService || d.Reservations || ds.last() != d {
		t.Fatalf("decision %+v (OnDecision %+v)", d, ds.last())
	}
	testnet.Eventually(t, 5*time.Second, holds("relay service", func() bool { return hasRelayService(a.h) }))
	testnet.Eventually(t, 5*time.Second, holds("public on the bus", func() bool {
		select {
		case e := <-sub.Out():
			return e.(event.EvtLocalReachabilityChanged).Reachability == network.ReachabilityPublic
		default:
			return false
		}
	}))
	// Close stops the relay service with the rest.
	s.Close()
	if hasRelayService(a.h) {
		t.Fatal("relay service left after Close")
	}
	if slices.Contains(a.h.Mux().Protocols(), Protocol(testRealm)) {
		t.Fatal("handler left after Close")
	}
}

// TestDialBackBlocked: a node that STUN finds open (no NAT) asks a peer
// whose requests never arrive (as behind a firewall): private.
func TestDialBackBlocked(t *testing.T) {
	a, b := newNode(t), newNode(t)
	start(t, b, Config{Info: behindNAT})
	open := func() nat.Info {
		return nat.Info{Type: nat.TypeOpen, Mapping: nat.BehaviorEndpointIndependent, Filtering: nat.BehaviorUnknown,
			PublicIP: netip.MustParseAddr("7.0.0.20"), PublicPort: 7400, MeasuredAt: measured}
	}
	never := func(TxID) (<-chan struct{}, func()) { return make(chan struct{}), func() {} }
	s := start(t, a, Config{Info: open, Expect: never})
	if !s.Decision().Public() {
		t.Fatalf("an open node starts %+v", s.Decision())
	}
	connect(t, a.h, b.h)
	testnet.Eventually(t, 10*time.Second, holds("private decision", func() bool { return !s.Decision().Public() }))
	if d := s.Decision(); d.DHTServer || !d.Reservations || d.RelayService {
		t.Fatalf("decision %+v", d)
	}
}

// TestNoCheckWhereItCannotTell: a symmetric or restricted node, or one
// whose reachability is forced, asks nobody.
func TestNoCheckWhereItCannotTell(t *testing.T) {
	for _, c := range []struct {
		name   string
		info   nat.Info
		policy nat.Policy
	}{
		{"symmetric", nat.Info{Type: nat.TypeSymmetric, Mapping: nat.BehaviorAddressAndPortDependent, Filtering: nat.BehaviorAddressAndPortDependent, MeasuredAt: measured}, nat.Policy{}},
		{"restricted", nat.Info{Type: nat.TypeRestricted, Mapping: nat.BehaviorEndpointIndependent, Filtering: nat.BehaviorAddressDependent, MeasuredAt: measured}, nat.Policy{}},
		{"forced private", behindNAT(), nat.Policy{Reachability: nat.ReachabilityPrivate}},
		{"before the first STUN probe", nat.Info{Type: nat.TypeUnknown}, nat.Policy{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, b := newNode(t), newNode(t)
			asked := make(chan struct{}, 1)
			start(t, b, Config{Info: behindNAT, Verified: func(context.Context, peer.ID) bool {
				select {
				case asked <- struct{}{}:
				default:
				}
				return true
			}})
			info := c.info
			s := start(t, a, Config{Info: func() nat.Info { return info }, Expect: a.prober.ExpectRequest, Policy: c.policy})
			connect(t, a.h, b.h)
			s.Update()
			select {
			case <-asked:
				t.Fatal("asked a peer")
			case <-time.After(500 * time.Millisecond):
			}
			if s.Decision().Public() {
				t.Fatalf("decision %+v", s.Decision())
			}
		})
	}
}

// TestForcedRelayService: the relay service runs when forced on, whatever
// the reachability, and never when forced off.
func TestForcedRelayService(t *testing.T) {
	a := newNode(t)
	s := start(t, a, Config{Info: behindNAT, Policy: nat.Policy{RelayService: nat.ForceOn}})
	if !s.Decision().RelayService || !hasRelayService(a.h) {
		t.Fatalf("forced on: %+v", s.Decision())
	}
	b := newNode(t)
	open := func() nat.Info { return nat.Info{Type: nat.TypeOpen, Mapping: nat.BehaviorEndpointIndependent} }
	s = start(t, b, Config{Info: open, Policy: nat.Policy{RelayService: nat.ForceOff}})
	if d := s.Decision(); !d.Public() || d.RelayService || hasRelayService(b.h) {
		t.Fatalf("forced off: %+v", d)
	}
}

// TestRuntimeChange: a new NAT measurement changes the decision, and the
// relay service follows it both ways.
func TestRuntimeChange(t *testing.T) {
	a := newNode(t)
	var mu sync.Mutex
	info := nat.Info{Type: nat.TypeOpen, Mapping: nat.BehaviorEndpointIndependent, Filtering: nat.BehaviorEndpointIndependent}
	get := func() nat.Info { mu.Lock(); defer mu.Unlock(); return info }
	set := func(i nat.Info) { mu.Lock(); info = i; mu.Unlock() }
	s := start(t, a, Config{Info: get})
	if !s.Decision().Public() || !hasRelayService(a.h) {
		t.Fatalf("open: %+v", s.Decision())
	}
	set(nat.Info{Type: nat.TypeSymmetric, Mapping: nat.BehaviorAddressAndPortDependent, Filtering: nat.BehaviorAddressAndPortDependent})
	s.Update()
	testnet.Eventually(t, 5*time.Second, holds("private after the change", func() bool { return !s.Decision().Public() }))
	testnet.Eventually(t, 5*time.Second, holds("relay service stopped", func() bool { return !hasRelayService(a.h) }))
	set(nat.Info{Type: nat.TypeFullCone, Mapping: nat.BehaviorEndpointIndependent, Filtering: nat.BehaviorEndpointIndependent})
	s.Update()
	testnet.Eventually(t, 5*time.Second, holds("public again", func() bool { return s.Decision().Public() && hasRelayService(a.h) }))
}

// TestHandlerRefuses: checks from unverified peers are reset; checks are
// rate limited per peer and refused with a reason.
func TestHandlerRefuses(t *testing.T) {
	a, b := newNode(t), newNode(t)
	verified := true
	var mu sync.Mutex
	start(t, b, Config{Info: behindNAT, Verified: func(context.Context, peer.ID) bool { mu.Lock(); defer mu.Unlock(); return verified }})
	connect(t, a.h, b.h)
	ask := func() (uint8, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := a.h.NewStream(ctx, b.h.ID(), Protocol(testRealm))
		if err != nil {
			return 0, err
		}
		defer st.Close()
		if err := frame.Write(st, typeCheck, wireVersion, make([]byte, 12)); err != nil {
			return 0, err
		}
		h, _, err := frame.NewReader(st, maxPayload).Next()
		return h.Type, err
	}
	if typ, err := ask(); err != nil || typ != typeSent {
		t.Fatalf("first check: type %d, %v", typ, err)
	}
	if typ, err := ask(); err != nil || typ != typeRefused {
		t.Fatalf("second check at once: type %d, %v, want refused", typ, err)
	}
	mu.Lock()
	verified = false
	mu.Unlock()
	if typ, err := ask(); err == nil {
		t.Fatalf("unverified peer answered with type %d", typ)
	}
}

func TestLimiter(t *testing.T) {
	l := newLimiter()
	now := time.Now()
	if !l.allow("a", now) || l.allow("a", now.Add(limitPeerGap/2)) || !l.allow("a", now.Add(limitPeerGap)) {
		t.Fatal("per-peer gap")
	}
	n := 0
	for i := 0; i < 100; i++ {
		if l.allow(peer.ID(rune(1000+i)), now.Add(time.Hour)) {
			n++
		}
	}
	if n != limitBurst {
		t.Fatalf("%d allowed in one instant, want %d", n, limitBurst)
	}
	if !l.allow("z", now.Add(time.Hour+limitWindow)) {
		t.Fatal("refused after the window")
	}
}

func TestNewValidates(t *testing.T) {
	n := newNode(t)
	info := func() nat.Info { return nat.Info{} }
	for _, c := range []struct {
		name string
		cfg  Config
	}{
		{"realm", Config{Realm: "x", Info: info, Verified: always}},
		{"info", Config{Realm: testRealm, Verified: always}},
		{"verified", Config{Realm: testRealm, Info: info}},
		{"reachability", Config{Realm: testRealm, Info: info, Verified: always, Policy: nat.Policy{Reachability: "sideways"}}},
		{"relay", Config{Realm: testRealm, Info: info, Verified: always, Policy: nat.Policy{RelayService: "maybe"}}},
	} {
		if _, err := New(n.h, c.cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v, want ErrConfig", c.name, err)
		}
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
