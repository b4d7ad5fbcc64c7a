package node

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/macula-io/macula/internal/testnet"
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

// Every protocol that carries calls, messages or lookups counts as use:
// when rpc added its traced protocol (1.1.0, which callers open first),
// calls stopped counting, and a peer only called looked idle (pinged
// every 30 s then, a death found that late) unless a DHT lookup went to it.
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
				t.Errorf("%s carries calls, messages or lookups but does not count as use", p)
			}
		}
	}
	if served < 3 { // rpc (two versions) and pubsub; kad once the DHT serves
		t.Fatalf("only %d call, message and lookup protocols served: %v", served, a.host.Mux().Protocols())
	}
}
