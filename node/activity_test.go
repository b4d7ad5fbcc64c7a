package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"

	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/pubsub"
	"github.com/macula-io/macula/rpc"
)

// A peer counts as in use (pinged every second) while calls go to it, and
// idle (not pinged) once nothing but the realm's own upkeep (the
// membership's heartbeats, pings) went to it for activeFor; a call makes it
// in use again at once.
func TestPeerInUse(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a, _, use := idlePair(t, ctx)
	if _, err := a.RPC().Call(ctx, "io.acme.orders.echo", []byte("x"), rpc.WithTimeout(30*time.Second)); err != nil {
		t.Fatal(err)
	}
	if !use().inUse(time.Now()) {
		t.Fatal("b is not in use right after a call to it")
	}
}

// idlePair starts a and b, b serving io.acme.orders.echo, and returns once
// b counts as idle for a; use returns a's record of b's use.
func idlePair(t *testing.T, ctx context.Context) (a, b *Node, use func() *peerUse) {
	t.Helper()
	a = startNode(t, "io.acme.orders", "a", nil)
	b = startNode(t, "io.acme.orders", "b", func(c *Config) { c.Bootstrap = bootstrapOf(a) })
	eventually(t, 30*time.Second, "a and b to see each other", func() bool {
		return a.IsPeer(b.ID()) && b.IsPeer(a.ID())
	})
	echo := func(_ context.Context, r *rpc.Request) ([]byte, error) { return r.Payload, nil }
	if err := b.RPC().Advertise(ctx, "io.acme.orders.echo", echo); err != nil {
		t.Fatal(err)
	}
	// A call first: rpc's link between them (b's advertisements go over
	// it) is up and counted, so what follows starts from an idle peer, not
	// one whose link traffic is still to come.
	testnet.Eventually(t, 30*time.Second, func() error {
		_, err := a.RPC().Call(ctx, "io.acme.orders.echo", []byte("x"), rpc.WithTimeout(5*time.Second))
		return err // not found until b's advertisement is known
	})
	use = func() *peerUse {
		v, ok := a.activity.peers.Load(b.ID())
		if !ok {
			t.Fatal("a keeps no record of b's use")
		}
		return v.(*peerUse)
	}
	testnet.Eventually(t, time.Minute, func() error {
		if use().inUse(time.Now()) {
			return errors.New("b still counts as in use")
		}
		return nil
	})
	return a, b, use
}

// pingedOnCall has from call proc and waits for pings (countPings of the
// callee) to count one: a call makes the callee a peer the caller depends
// on, pinged at once.
func pingedOnCall(t *testing.T, ctx context.Context, from *Node, proc string, pings *atomic.Int64) {
	t.Helper()
	if _, err := from.RPC().Call(ctx, proc, []byte("x"), rpc.WithTimeout(30*time.Second)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the caller to ping the callee once it calls it", func() bool { return pings.Load() > 0 })
}

// countPings has b count the pings a sends it (and answer them).
func countPings(a, b *Node) *atomic.Int64 {
	var pings atomic.Int64
	svc := &ping.PingService{Host: b.Host()}
	b.Host().SetStreamHandler(ping.ID, func(s network.Stream) {
		if s.Conn().RemotePeer() == a.ID() {
			pings.Add(1)
		}
		svc.PingHandler(s)
	})
	return &pings
}

// Every protocol that carries calls, messages or lookups counts as use of
// the connection (trimming keeps it): when rpc added its traced protocol
// (1.1.0, which callers open first), calls stopped counting, and a called
// peer's connection looked idle unless a DHT lookup went to it.
func TestUseProtocolsCounted(t *testing.T) {
	a := startNode(t, "io.acme.orders", "a", nil)
	served := 0
	for _, p := range a.host.Mux().Protocols() {
		s := string(p)
		if !strings.HasPrefix(s, "/macula/io.acme.orders/") {
			continue
		}
		if strings.Contains(s, "/rpc/") || strings.Contains(s, "/pubsub/") || strings.Contains(s, "/kad/") {
			served++
			if !a.activity.counted[p] {
				t.Errorf("%s does not count as use", p)
			}
		}
	}
	if served < 3 { // rpc (two versions) and pubsub; kad once the DHT serves
		t.Fatalf("only %d call, message and lookup protocols served: %v", served, a.host.Mux().Protocols())
	}
}

// A DHT lookup that asks a peer keeps the connection in use (trimming
// spares it) but does not make either side ping the other: the DHT bounds
// its requests by the peer's round-trip time and probes a peer that leaves
// one unanswered. Counted as a dependency, each lookup set off pings at
// once and every second for activeFor between the looking node and every
// peer it asked, both ways: three times the CPU of the lookups themselves
// in a 50-node realm.
func TestLookupSetsOffNoPings(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a, b, use := idlePair(t, ctx)
	pings := countPings(a, b)
	// A key nobody provides: the query asks every peer it knows, b.
	before := use().last.Load()
	for range 20 {
		provs, err := a.DHT().Lookup(ctx, "nobody-provides-this", 0)
		if err != nil || len(provs) != 0 {
			t.Fatalf("lookup of a key nobody provides: %v, %v", provs, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if use().last.Load() == before {
		t.Fatal("a's lookups, which asked b, did not count as use of the connection")
	}
	time.Sleep(3 * livenessInterval)
	if n := pings.Load(); n != 0 || use().inUse(time.Now()) {
		t.Fatalf("a pinged b %d times after lookups that asked it (b in use: %v)", n, use().inUse(time.Now()))
	}
	pingedOnCall(t, ctx, a, "io.acme.orders.echo", pings)
}

// What rpc and pub/sub send to every peer they link to (advertisements,
// interests) is no dependency: two nodes that advertise and subscribe and
// connect do not ping each other. A call makes the caller ping the callee,
// not the callee the caller; a message makes the publisher ping the
// subscriber. Counted by protocol, as before, the link traffic set off 10 s
// of pings both ways on every new connection between two such nodes (a
// DHT lookup's, say).
func TestLinkTrafficSetsOffNoPings(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a := startNode(t, "io.acme.orders", "a", nil)
	b := startNode(t, "io.acme.orders", "b", nil)
	echo := func(_ context.Context, r *rpc.Request) ([]byte, error) { return r.Payload, nil }
	got := make(chan struct{}, 16)
	for _, n := range []*Node{a, b} {
		if err := n.RPC().Advertise(ctx, "io.acme.orders.on_"+n.Name(), echo); err != nil {
			t.Fatal(err)
		}
		if _, err := n.PubSub().Subscribe("io.acme.orders.to_"+n.Name(), func(pubsub.Message) {
			select {
			case got <- struct{}{}:
			default:
			}
		}); err != nil {
			t.Fatal(err)
		}
	}
	toB, toA := countPings(a, b), countPings(b, a)
	if err := a.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: b.Host().Addrs()}); err != nil {
		t.Fatal(err)
	}
	// Both sides link to the other (rpc to send its advertisements,
	// pub/sub its interests), each on a stream of its own.
	testnet.Eventually(t, 30*time.Second, func() error {
		links := map[string]bool{}
		for _, c := range a.Host().Network().ConnsToPeer(b.ID()) {
			for _, s := range c.GetStreams() {
				switch s.Protocol() {
				case rpc.Protocol(a.Realm()), rpc.ProtocolTrace(a.Realm()):
					links["rpc "+s.Stat().Direction.String()] = true
				case pubsub.Protocol(a.Realm()):
					links["pubsub "+s.Stat().Direction.String()] = true
				}
			}
		}
		for _, want := range []string{"rpc Inbound", "rpc Outbound", "pubsub Inbound", "pubsub Outbound"} {
			if !links[want] {
				return fmt.Errorf("no %s link stream at a: %v", want, links)
			}
		}
		return nil
	})
	time.Sleep(3 * livenessInterval)
	if x, y := toB.Load(), toA.Load(); x != 0 || y != 0 {
		t.Fatalf("after their links' traffic alone, a pinged b %d times and b pinged a %d times", x, y)
	}
	// a calls b: a pings b, b does not ping a.
	pingedOnCall(t, ctx, a, "io.acme.orders.on_b", toB)
	time.Sleep(3 * livenessInterval)
	if y := toA.Load(); y != 0 {
		t.Fatalf("b pinged a, its caller, %d times", y)
	}
	// b publishes to a: b pings a.
	if err := b.PubSub().Publish(ctx, "io.acme.orders.to_a", []byte("x")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
	case <-ctx.Done():
		t.Fatal("a never got b's message")
	}
	eventually(t, 10*time.Second, "b to ping a once it sends it a message", func() bool { return toA.Load() > 0 })
}
