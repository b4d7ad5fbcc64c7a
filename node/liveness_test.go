package node

import (
	"context"
	"errors"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"

	"github.com/macula-io/macula/dht"
	"github.com/macula-io/macula/event"
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

// A peer that froze (no answer to pings nor to DHT requests, its
// connections open: a kill -9 before QUIC notices) does not hold up a
// not-found answer, which comes well within a deadline shorter than the
// liveness timeout; and being suspect, it is pinged at once and declared
// gone sooner than an idle peer would be.
func TestFrozenPeerNotFoundAndProbed(t *testing.T) {
	a, b, _ := trio(t)
	sub := a.Events().Subscribe(64, event.ConnectionDown)
	defer sub.Close()
	b.Host().RemoveStreamHandler(ping.ID)
	silenceDHT(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Waiting for b's connections to be closed would take the liveness
	// timeout (4 s) or kad-dht's (10 s): a deadline of 3 s gives a timeout
	// then, where a lookup that goes on without b answers not found.
	for i := range 3 {
		t0 := time.Now()
		_, err := a.RPC().Call(ctx, "io.acme.orders.nobody", nil, rpc.WithTimeout(3*time.Second))
		t.Logf("not found %d: %v (%v)", i, time.Since(t0).Round(time.Millisecond), err)
		if !errors.Is(err, rpc.ErrNotFound) {
			t.Fatalf("call %d to a procedure nobody advertises, with a frozen peer: %v, want not found", i, err)
		}
	}
	if e := waitDown(t, sub, b.ID()); e.Reason != ReasonUnresponsive {
		t.Fatalf("connection_down %+v, want reason %q", e, ReasonUnresponsive)
	}
	if a.probes.Load() == 0 {
		t.Fatal("a never probed b, which left a DHT request unanswered")
	}
}

// A peer whose DHT does not answer but which answers pings (a slow peer,
// not a dead one) stays a peer: it is suspect for the time of one ping,
// then back in the routing table.
func TestSlowDHTPeerStays(t *testing.T) {
	a, b, _ := trio(t)
	silenceDHT(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := a.RPC().Call(ctx, "io.acme.orders.nobody", nil, rpc.WithTimeout(5*time.Second)); !errors.Is(err, rpc.ErrNotFound) {
		t.Fatalf("call to a procedure nobody advertises: %v, want not found", err)
	}
	eventually(t, 15*time.Second, "a to probe b and take it back", func() bool {
		return a.probes.Load() > 0 && slices.Contains(a.DHT().RoutingTablePeers(), b.ID())
	})
	if !a.IsPeer(b.ID()) {
		t.Fatal("a dropped b, which answers pings")
	}
}
