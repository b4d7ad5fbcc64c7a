package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"

	"github.com/macula-io/macula/dht"
	"github.com/macula-io/macula/event"
	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/rpc"
)

// silenceDHT makes n's DHT take requests and never answer them, on new
// streams and on those peers keep open.
func silenceDHT(n *Node) {
	proto := dht.ProtocolPrefix(n.Realm()) + "/kad/1.0.0"
	n.Host().SetStreamHandler(proto, func(s network.Stream) {
		_, _ = io.Copy(io.Discard, s) // until the asker resets it
		_ = s.Reset()
	})
	for _, c := range n.Host().Network().Conns() {
		for _, s := range c.GetStreams() {
			if s.Protocol() == proto {
				_ = s.Reset()
			}
		}
	}
}

// slowLiveness makes the idle pings of the nodes the test starts rare, so
// that a peer is found out by the probes of a suspect alone. No node may
// run when it is called.
func slowLiveness(t *testing.T) {
	old := livenessInterval
	livenessInterval = time.Minute
	t.Cleanup(func() { livenessInterval = old })
}

// freezableSockets makes a node's UDP sockets freezable; freeze freezes
// them all.
func freezableSockets(c *Config) (freeze func()) {
	return freezer(c).Freeze
}

// freezer makes a node's UDP sockets freezable and returns their Freezer.
func freezer(c *Config) *testnet.Freezer {
	f := &testnet.Freezer{}
	c.testHostOptions = append(c.testHostOptions, f.Option())
	return f
}

// A peer that froze (not a packet from it: a stopped process, a kill -9
// before QUIC notices) does not hold up a not-found answer: the lookup goes
// on without it once it left a request unanswered past its bound (kad-dht's
// own wait is 10 s), and being suspect it is probed at once and declared
// gone. The regular pings are made rare, so only the probes can find it out
// within the test.
func TestFrozenPeerNotFoundAndProbed(t *testing.T) {
	slowLiveness(t)
	var freeze func()
	a, b, _ := trioWith(t, func(c *Config) { freeze = freezableSockets(c) })
	sub := a.Events().Subscribe(64, event.ConnectionDown)
	defer sub.Close()
	freeze()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := range 3 {
		t0 := time.Now()
		_, err := a.RPC().Call(ctx, "io.acme.orders.nobody", nil, rpc.WithTimeout(20*time.Second))
		t.Logf("not found %d: %v (b still a peer: %v; %v)", i, time.Since(t0).Round(time.Millisecond), a.IsPeer(b.ID()), err)
		if !errors.Is(err, rpc.ErrNotFound) {
			t.Fatalf("call %d to a procedure nobody advertises, with a frozen peer: %v, want not found", i, err)
		}
	}
	for {
		select {
		case e := <-sub.C:
			if e.Peer != b.ID().String() {
				continue
			}
			if e.Reason != ReasonUnresponsive || a.probes.Load() == 0 {
				t.Fatalf("connection_down %+v after %d probes, want reason %q after probes", e, a.probes.Load(), ReasonUnresponsive)
			}
			return
		case <-ctx.Done():
			t.Fatalf("a never declared the frozen b gone (%d probes)", a.probes.Load())
		}
	}
}

// A peer that is alive but slow to answer pings (its handler waits for a
// core on a loaded machine; here it never answers) is not declared gone
// while its packets still arrive: on a machine starting 50 nodes, thousands
// of live peers were dropped and redialled in a minute, which fed the load.
// A peer that sends nothing at all is (TestFrozenPeerNotFoundAndProbed).
func TestSlowPingsKeepLivePeer(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a, b, use := idlePair(t, ctx)
	b.Host().SetStreamHandler(ping.ID, func(s network.Stream) {
		_, _ = io.Copy(io.Discard, s) // takes the ping, never answers
		_ = s.Reset()
	})
	sub := a.Events().Subscribe(64, event.ConnectionDown)
	defer sub.Close()
	// Calls keep b in use, so a pings it every second: each ping times
	// out, and would have been a miss.
	deadline := time.Now().Add(12 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := a.RPC().Call(ctx, "io.acme.orders.echo", []byte("x"), rpc.WithTimeout(10*time.Second)); err != nil {
			t.Fatalf("call to b: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !use().inUse(time.Now()) {
		t.Fatal("b is not in use")
	}
	select {
	case e := <-sub.C:
		t.Fatalf("a dropped b, which is alive: %+v", e)
	default:
	}
	if !a.IsPeer(b.ID()) || a.pingsLate.Load() < livenessMisses {
		t.Fatalf("b a peer: %v; late pings %d, want at least %d", a.IsPeer(b.ID()), a.pingsLate.Load(), livenessMisses)
	}
}

// A peer whose DHT does not answer but which answers pings (a slow peer,
// not a dead one) stays a peer: it is suspect for the time of one ping,
// then asked again (dht's TestSilentPeerDoesNotStallQueries: back in the
// routing table).
func TestSlowDHTPeerStays(t *testing.T) {
	slowLiveness(t)
	a, b, _ := trio(t)
	silenceDHT(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := a.RPC().Call(ctx, "io.acme.orders.nobody", nil, rpc.WithTimeout(5*time.Second)); !errors.Is(err, rpc.ErrNotFound) {
		t.Fatalf("call to a procedure nobody advertises: %v, want not found", err)
	}
	// b stays silent to DHT requests, so each query that asks it makes it
	// suspect again (it is in the routing table only between queries):
	// wait for a probe that b answered, not for a routing table state.
	eventually(t, 30*time.Second, "a to probe b and clear it", func() bool {
		return a.probesAnswered.Load() > 0
	})
	if !a.IsPeer(b.ID()) {
		t.Fatal("a dropped b, which answers pings")
	}
}

// An idle peer is not pinged at all (it was, every 30 s: in a realm of 50
// nodes, most of an idle node's packets); its use makes it pinged again at
// once.
func TestIdlePeerNotPinged(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a, b, use := idlePair(t, ctx)
	pings := countPings(a, b)
	time.Sleep(35 * time.Second) // longer than the idle interval was
	if n := pings.Load(); n != 0 || use().inUse(time.Now()) {
		t.Fatalf("a pinged its idle peer b %d times in 35 s (b in use: %v)", n, use().inUse(time.Now()))
	}
	pingedOnCall(t, ctx, a, "io.acme.orders.echo", pings)
}

// A peer declared gone for missed pings that was only stalled (its
// sockets froze for seconds, as a process does on a machine too loaded to
// run it) is called again within seconds of its return, not after
// departedFor: the membership still holds it live, so the node dials it
// again. Without that, two nodes that called each other and had declared
// each other gone, neither the other's bootstrap peer, did not dial each
// other for a minute: calls failed with "gater disallows connection to
// peer".
func TestStalledPeerCalledAgain(t *testing.T) {
	a := startNode(t, "io.acme.orders", "a", nil)
	var f *testnet.Freezer
	b := startNode(t, "io.acme.orders", "b", func(c *Config) {
		c.Bootstrap = bootstrapOf(a)
		f = freezer(c)
	})
	c := startNode(t, "io.acme.orders", "c", func(c *Config) { c.Bootstrap = bootstrapOf(a) })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	echo := func(_ context.Context, r *rpc.Request) ([]byte, error) { return r.Payload, nil }
	for _, n := range []*Node{b, c} {
		if err := n.RPC().Advertise(ctx, "io.acme.orders.on_"+n.Name(), echo); err != nil {
			t.Fatal(err)
		}
	}
	call := func(from, to *Node) error {
		_, err := from.RPC().Call(ctx, "io.acme.orders.on_"+to.Name(), []byte("x"), rpc.WithTimeout(2*time.Second))
		return err
	}
	// b and c call each other: each depends on the other, so each pings
	// the other, and each finds the other silent while b's sockets freeze.
	testnet.Eventually(t, 30*time.Second, func() error { return errors.Join(call(c, b), call(b, c)) })
	subB := b.Events().Subscribe(64, event.ConnectionDown)
	defer subB.Close()
	subC := c.Events().Subscribe(64, event.ConnectionDown)
	defer subC.Close()
	f.Freeze()
	for _, w := range []struct {
		sub  *event.Subscription
		peer *Node
	}{{subC, b}, {subB, c}} {
		if e := waitDown(t, w.sub, w.peer.ID()); e.Reason != ReasonUnresponsive {
			t.Fatalf("connection_down %+v, want reason %q", e, ReasonUnresponsive)
		}
	}
	f.Thaw()
	thawed := time.Now()
	// departedFor is a minute: well within it.
	testnet.Eventually(t, 30*time.Second, func() error {
		if err := call(c, b); err != nil {
			return fmt.Errorf("call to b after its stall: %w (b gone at c: %v, c gone at b: %v)", err, c.gater.gone(b.ID()), b.gater.gone(c.ID()))
		}
		return nil
	})
	// Neither is the other's bootstrap peer: the recheck made the connection.
	if b.rechecks.Load()+c.rechecks.Load() == 0 {
		t.Fatal("b and c connected again without a recheck's dial")
	}
	t.Logf("b called again %v after its sockets thawed; redials of a gone peer: by b %d, by c %d",
		time.Since(thawed).Round(time.Millisecond), b.rechecks.Load(), c.rechecks.Load())
}
