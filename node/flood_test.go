package node

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
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
	call := echoFromB(ctx, t, a, b)

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

// A peer that sends calls at the payload limit to a slow handler, hundreds
// at once, is held to its share of the payload bytes that running handlers
// may hold (the rest are answered "overloaded"), and another peer's calls
// are served meanwhile.
func TestMaxSizeCallFloodContained(t *testing.T) {
	// The bounds scaled down 16 times (64 KiB calls, 4 MiB per caller), so
	// that the flood is a few megabytes: hundreds of megabytes on a loaded
	// machine under the race detector starved the flooder's liveness probes
	// (its calls unanswered, it pings a, and a answered late).
	const maxPayload, perPeer = 64 << 10, 4 << 20
	a := startNode(t, "io.acme.orders", "a", func(c *Config) {
		c.RPC.MaxPayload, c.RPC.MaxServingBytesPerPeer = maxPayload, perPeer
	})
	b := startNode(t, "io.acme.orders", "b", func(c *Config) { c.Bootstrap = bootstrapOf(a) })
	flood := startNode(t, "io.acme.orders", "flood", func(c *Config) { c.Bootstrap = bootstrapOf(a) })
	eventually(t, 30*time.Second, "a to have both peers", func() bool { return len(a.Peers()) == 2 })

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	release := make(chan struct{})
	slow := func(ctx context.Context, r *rpc.Request) ([]byte, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil, nil
	}
	if err := a.RPC().Advertise(ctx, "io.acme.orders.slow", slow); err != nil {
		t.Fatal(err)
	}
	call := echoFromB(ctx, t, a, b)

	const calls = 96
	payload := make([]byte, a.RPC().MaxPayload())
	var overloaded, other atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < calls; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := flood.RPC().Call(ctx, "io.acme.orders.slow", payload, rpc.WithTimeout(time.Minute))
			var re *rpc.RemoteError
			switch {
			case errors.As(err, &re) && re.Code == rpc.CodeOverloaded:
				overloaded.Add(1)
			case err != nil:
				other.Add(1)
				t.Logf("flood call: %v", err)
			}
		}()
	}
	maxHeld := 0
	eventually(t, time.Minute, "a to hold its share of the flood's payloads and refuse the rest", func() bool {
		held := a.RPC().Stats().ServingBytes
		maxHeld = max(maxHeld, held)
		return held > perPeer || overloaded.Load()+other.Load()+int64(held/len(payload)) >= calls
	})
	errDuring := call()
	close(release)
	wg.Wait()
	if maxHeld > perPeer {
		t.Fatalf("a's handlers held %d payload bytes of one caller; the bound is %d", maxHeld, perPeer)
	}
	if errDuring != nil {
		t.Fatalf("b's call during the flood: %v", errDuring)
	}
	if other.Load() != 0 {
		t.Fatalf("%d flood calls failed otherwise than overloaded", other.Load())
	}
	if got := a.RPC().Stats().ServingBytes; got != 0 {
		t.Fatalf("a still holds %d payload bytes after the handlers returned", got)
	}
	if err := call(); err != nil {
		t.Fatalf("call after the flood: %v", err)
	}
	t.Logf("%d calls of %d bytes: %d overloaded, at most %d bytes held (bound %d)", calls, len(payload), overloaded.Load(), maxHeld, perPeer)
}

// echoFromB advertises an echo procedure on a and returns a call of it from
// b, which it makes once (before a flood).
func echoFromB(ctx context.Context, t *testing.T, a, b *Node) func() error {
	t.Helper()
	echo := func(_ context.Context, r *rpc.Request) ([]byte, error) { return r.Payload, nil }
	if err := a.RPC().Advertise(ctx, "io.acme.orders.echo", echo); err != nil {
		t.Fatal(err)
	}
	call := func() error {
		_, err := b.RPC().Call(ctx, "io.acme.orders.echo", []byte("x"), rpc.WithTimeout(30*time.Second))
		return err
	}
	// b learns of the procedure from a's advertisement on their link, a
	// moment after Advertise returns: until then the call is not found.
	var err error
	eventually(t, 30*time.Second, "b's call before the flood", func() bool {
		err = call()
		return !errors.Is(err, rpc.ErrNotFound)
	})
	if err != nil {
		t.Fatalf("call before the flood: %v", err)
	}
	return call
}
