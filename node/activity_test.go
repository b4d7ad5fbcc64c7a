package node

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/rpc"
)

// A peer counts as in use (pinged every second) while calls go to it, and
// idle (pinged every 30 s) once nothing but the realm's own upkeep (the
// membership's heartbeats, pings) went to it for activeFor; a call makes it
// in use again at once.
func TestPeerInUse(t *testing.T) {
	a := startNode(t, "io.acme.orders", "a", nil)
	b := startNode(t, "io.acme.orders", "b", func(c *Config) { c.Bootstrap = bootstrapOf(a) })
	eventually(t, 30*time.Second, "a and b to see each other", func() bool {
		return a.IsPeer(b.ID()) && b.IsPeer(a.ID())
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	echo := func(_ context.Context, r *rpc.Request) ([]byte, error) { return r.Payload, nil }
	if err := b.RPC().Advertise(ctx, "io.acme.orders.echo", echo); err != nil {
		t.Fatal(err)
	}
	use := func() *peerUse {
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
	if _, err := a.RPC().Call(ctx, "io.acme.orders.echo", []byte("x"), rpc.WithTimeout(30*time.Second)); err != nil {
		t.Fatal(err)
	}
	if !use().inUse(time.Now()) {
		t.Fatal("b is not in use right after a call to it")
	}
}
