package node

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"

	"github.com/macula-io/macula/event"
	"github.com/macula-io/macula/rpc"
)

// waitDown waits for the connection_down event of p on sub and returns it.
func waitDown(t *testing.T, sub *event.Subscription, p peer.ID) event.Event {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case e, ok := <-sub.C:
			if !ok {
				t.Fatal("event stream closed")
			}
			if e.Kind == event.ConnectionDown && e.Peer == p.String() {
				return e
			}
		case <-timeout:
			t.Fatalf("no connection_down for %s", p)
		}
	}
}

// trio starts a, b and c, all connected to each other, with full routing
// tables.
func trio(t *testing.T) (a, b, c *Node) {
	t.Helper()
	return trioWith(t, nil)
}

// trioWith is trio with b's Config changed by modB.
func trioWith(t *testing.T, modB func(*Config)) (a, b, c *Node) {
	t.Helper()
	a = startNode(t, "io.acme.orders", "a", nil)
	b = startNode(t, "io.acme.orders", "b", func(c *Config) {
		c.Bootstrap = bootstrapOf(a)
		if modB != nil {
			modB(c)
		}
	})
	c = startNode(t, "io.acme.orders", "c", func(cfg *Config) { cfg.Bootstrap = append(bootstrapOf(a), bootstrapOf(b)...) })
	eventually(t, 15*time.Second, "a full mesh", func() bool {
		for _, n := range []*Node{a, b, c} {
			if len(n.Peers()) != 2 || len(n.DHT().RoutingTablePeers()) != 2 {
				return false
			}
		}
		return true
	})
	return a, b, c
}

// A node that closes says goodbye: its peers drop it at once, with reason
// left, from their peers, routing tables and provider lists; calls to its
// procedure answer not found (not a timeout, not a dial to it); the
// procedure of a live node is called without a DHT round trip.
func TestCleanLeave(t *testing.T) {
	a, b, c := trio(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	echo := func(_ context.Context, r *rpc.Request) ([]byte, error) { return r.Payload, nil }
	if err := b.RPC().Advertise(ctx, "io.acme.orders.on_b", echo); err != nil {
		t.Fatal(err)
	}
	if err := c.RPC().Advertise(ctx, "io.acme.orders.on_c", echo); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "a to call b's procedure", func() bool {
		_, err := a.RPC().Call(ctx, "io.acme.orders.on_b", nil, rpc.WithTimeout(time.Second))
		return err == nil
	})
	sub := a.Events().Subscribe(64, event.ConnectionDown)
	defer sub.Close()
	subC := c.Events().Subscribe(64, event.ConnectionDown)
	defer subC.Close()
	bid := b.ID()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*event.Subscription{sub, subC} {
		if e := waitDown(t, s, bid); e.Reason != ReasonLeft {
			t.Fatalf("connection_down %+v, want reason %q", e, ReasonLeft)
		}
	}
	for _, n := range []*Node{a, c} {
		if n.IsPeer(bid) || slices.Contains(n.DHT().RoutingTablePeers(), bid) || !n.gater.gone(bid) {
			t.Fatalf("%s still has b: peer %v, routing table %v", n.Name(), n.IsPeer(bid), n.DHT().RoutingTablePeers())
		}
	}
	_, err := a.RPC().Call(ctx, "io.acme.orders.on_b", nil, rpc.WithTimeout(5*time.Second))
	if !errors.Is(err, rpc.ErrNotFound) {
		t.Fatalf("call to the procedure of the node that left: %v, want not found", err)
	}
	if _, err := a.RPC().Call(ctx, "io.acme.orders.on_c", []byte("x"), rpc.WithTimeout(5*time.Second)); err != nil {
		t.Fatalf("call to the live node: %v", err)
	}
}

// A peer the node calls that stops answering pings is declared gone with
// reason unresponsive, and its connections are closed.
func TestUnresponsivePeerDropped(t *testing.T) {
	a := startNode(t, "io.acme.orders", "a", nil)
	b := startNode(t, "io.acme.orders", "b", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: b.Host().Addrs()}); err != nil {
		t.Fatal(err)
	}
	// a depends on b once it calls b (a connection alone is no use: a
	// peer is pinged only while calls or messages go to it).
	echo := func(_ context.Context, r *rpc.Request) ([]byte, error) { return r.Payload, nil }
	if err := b.RPC().Advertise(ctx, "io.acme.orders.echo", echo); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "a to call b", func() bool {
		_, err := a.RPC().Call(ctx, "io.acme.orders.echo", []byte("x"), rpc.WithTimeout(2*time.Second))
		return err == nil
	})
	sub := a.Events().Subscribe(64, event.ConnectionDown)
	defer sub.Close()
	b.Host().RemoveStreamHandler(ping.ID) // b is alive but no longer answers
	if e := waitDown(t, sub, b.ID()); e.Reason != ReasonUnresponsive {
		t.Fatalf("connection_down %+v, want reason %q", e, ReasonUnresponsive)
	}
	if a.IsPeer(b.ID()) || !a.gater.gone(b.ID()) {
		t.Fatal("a keeps the unresponsive peer")
	}
	eventually(t, 5*time.Second, "a to close its connections to b", func() bool {
		return len(a.Host().Network().ConnsToPeer(b.ID())) == 0
	})
}

// A peer that left and comes back (same identity) is a peer again: its
// connection ends the departure.
func TestLeftPeerComesBack(t *testing.T) {
	a := startNode(t, "io.acme.orders", "a", nil)
	dir := t.TempDir()
	b := startNode(t, "io.acme.orders", "b", func(c *Config) { c.Bootstrap = bootstrapOf(a); c.DataDir = dir })
	eventually(t, 10*time.Second, "b joins", func() bool { return a.IsPeer(b.ID()) })
	bid := b.ID()
	sub := a.Events().Subscribe(64, event.ConnectionDown, event.ConnectionUp)
	defer sub.Close()
	b.Close()
	if e := waitDown(t, sub, bid); e.Reason != ReasonLeft {
		t.Fatalf("connection_down %+v", e)
	}
	b2 := startNode(t, "io.acme.orders", "b", func(c *Config) { c.Bootstrap = bootstrapOf(a); c.DataDir = dir })
	if b2.ID() != bid {
		t.Fatal("b came back with another identity")
	}
	eventually(t, 10*time.Second, "b to be a peer again", func() bool { return a.IsPeer(bid) && !a.gater.gone(bid) })
}

// Leave says goodbye first and waits for the calls being served: a call in
// flight when its provider leaves ends normally, and new calls go to the
// other provider at once.
func TestLeaveDrainsCalls(t *testing.T) {
	a, b, c := trio(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	release := make(chan struct{})
	var finished atomic.Bool
	slow := func(ctx context.Context, r *rpc.Request) ([]byte, error) {
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		finished.Store(true)
		return []byte("b"), nil
	}
	if err := b.RPC().Advertise(ctx, "io.acme.orders.slow", slow); err != nil {
		t.Fatal(err)
	}
	if err := c.RPC().Advertise(ctx, "io.acme.orders.slow", func(context.Context, *rpc.Request) ([]byte, error) { return []byte("c"), nil }); err != nil {
		t.Fatal(err)
	}
	// A call that b serves, in flight.
	served := make(chan error, 1)
	go func() {
		for {
			reply, err := a.RPC().Call(ctx, "io.acme.orders.slow", nil, rpc.WithTimeout(10*time.Second))
			if err != nil || string(reply) == "b" {
				served <- err
				return
			}
		}
	}()
	eventually(t, 10*time.Second, "b to serve a call", func() bool {
		return b.RPC().Stats().Served > 0
	})
	sub := a.Events().Subscribe(64, event.ConnectionDown)
	defer sub.Close()
	left := make(chan error, 1)
	go func() { left <- b.Leave(ctx) }()
	if e := waitDown(t, sub, b.ID()); e.Reason != ReasonLeft {
		t.Fatalf("connection_down %+v", e)
	}
	// b is gone for a: new calls go to c, while b's call goes on.
	if reply, err := a.RPC().Call(ctx, "io.acme.orders.slow", nil, rpc.WithTimeout(5*time.Second)); err != nil || string(reply) != "c" {
		t.Fatalf("a call after b left: %q, %v", reply, err)
	}
	select {
	case err := <-left:
		t.Fatalf("Leave returned (%v) while b served a call", err)
	default:
	}
	close(release)
	if err := <-left; err != nil || !finished.Load() {
		t.Fatalf("Leave: %v, the call finished: %v", err, finished.Load())
	}
	if err := <-served; err != nil {
		t.Fatalf("the call in flight when b left: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}
