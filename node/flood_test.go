package node

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"

	"github.com/macula-io/macula/rpc"
)

// A peer of the realm that opens thousands of streams to a node and holds
// them open is contained by the resource manager: the node holds at most
// its per-peer limit of that peer's streams and resets the rest, and
// another peer's calls go on being served meanwhile.
func TestStreamFloodContained(t *testing.T) {
	a := startNode(t, "io.acme.orders", "a", nil)
	b := startNode(t, "io.acme.orders", "b", func(c *Config) { c.Bootstrap = bootstrapOf(a) })
	// The flooding peer has no limits of its own (a node keeps its own
	// outbound streams within limits too; a hostile peer would not).
	hostLimits = func() rcmgr.ConcreteLimitConfig { return rcmgr.InfiniteLimits }
	flood := startNode(t, "io.acme.orders", "flood", func(c *Config) { c.Bootstrap = bootstrapOf(a) })
	hostLimits = resourceLimits
	eventually(t, 30*time.Second, "a to have both peers", func() bool { return len(a.Peers()) == 2 })

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	echo := func(_ context.Context, r *rpc.Request) ([]byte, error) { return r.Payload, nil }
	if err := a.RPC().Advertise(ctx, "io.acme.orders.echo", echo); err != nil {
		t.Fatal(err)
	}
	call := func() error {
		_, err := b.RPC().Call(ctx, "io.acme.orders.echo", []byte("x"), rpc.WithTimeout(30*time.Second))
		return err
	}
	if err := call(); err != nil {
		t.Fatalf("call before the flood: %v", err)
	}

	const streams = 3000
	proto := rpc.Protocol("io.acme.orders")
	var held []network.Stream
	defer func() {
		for _, s := range held {
			_ = s.Reset()
		}
	}()
	opened, refused := 0, 0
	var firstErr error
	for i := 0; i < streams; i++ {
		sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
		s, err := flood.Host().NewStream(sctx, a.ID(), proto)
		scancel()
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			refused++
			continue
		}
		held = append(held, s)
		// The first write sends the protocol negotiation: a takes the
		// stream in (or refuses it) on that.
		if _, err := s.Write([]byte{0}); err == nil {
			opened++
		}
		if i%500 == 499 {
			if err := call(); err != nil {
				t.Fatalf("call during the flood (after %d streams): %v", i+1, err)
			}
		}
	}

	// The peer's streams of every protocol (the rpc ones are bounded
	// tighter, by the limit per peer and protocol).
	lc := resourceLimits().ToPartialLimitConfig()
	limit, protoLimit := lc.PeerDefault.StreamsInbound, lc.ProtocolPeerDefault.StreamsInbound
	var inbound int
	testViewPeer := func() int {
		_ = a.Host().Network().ResourceManager().ViewPeer(flood.ID(), func(s network.PeerScope) error {
			inbound = s.Stat().NumStreamsInbound
			return nil
		})
		return inbound
	}
	if n := testViewPeer(); n > int(limit) {
		t.Fatalf("a holds %d inbound streams of the flooding peer; the limit is %d", n, limit)
	}
	if err := call(); err != nil {
		t.Fatalf("call after the flood: %v", err)
	}
	t.Logf("flooding peer: %d streams tried, %d opened, %d written to, %d refused (first: %v); a holds %d of them (inbound limits: %d per peer, %d per peer and protocol); b's calls answered throughout",
		streams, len(held), opened, refused, firstErr, inbound, limit, protoLimit)
}
