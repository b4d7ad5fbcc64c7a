package node

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/macula-io/macula/event"
)

// Two realms share one bootstrap address: the realm of the bootstrap node
// works as usual, the other realm's node sees no peer, no DHT record, and is
// refused.
func TestRealmsSharingBootstrapNeverMeet(t *testing.T) {
	boot := startNode(t, "io.acme.orders", "boot", nil)
	a1 := startNode(t, "io.acme.orders", "a1", func(c *Config) { c.Bootstrap = bootstrapOf(boot) })
	a2 := startNode(t, "io.acme.orders", "a2", func(c *Config) { c.Bootstrap = bootstrapOf(boot) })
	xBoot := startNode(t, "io.other.realm", "xboot", nil)
	x1 := startNode(t, "io.other.realm", "x1", func(c *Config) {
		c.Bootstrap = append(bootstrapOf(boot), bootstrapOf(xBoot)...)
	})
	refused := x1.Events().Subscribe(16, event.PeerRefused)
	defer refused.Close()

	eventually(t, 15*time.Second, "realm io.acme.orders to form", func() bool {
		return len(boot.Peers()) == 2 && len(a1.Peers()) == 2 && len(a2.Peers()) == 2
	})
	// A peer enters the routing table a query's round trip after it
	// connected: the announcements below need one there.
	eventually(t, 15*time.Second, "x1 to join its own realm", func() bool {
		return len(x1.Peers()) == 1 && len(xBoot.Peers()) == 1 &&
			slices.Contains(x1.DHT().RoutingTablePeers(), xBoot.ID()) && len(a2.DHT().RoutingTablePeers()) > 0
	})
	select {
	case e := <-refused.C:
		if e.Peer != boot.ID().String() {
			t.Fatalf("refused %s, want the other realm's bootstrap %s", e.Peer, boot.ID())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("x1 raised no peer_refused event for the other realm's bootstrap node")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := a2.DHT().Provide(ctx, "shared-key"); err != nil {
		t.Fatal(err)
	}
	if err := x1.DHT().Provide(ctx, "shared-key"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "a1 to find a2 as provider", func() bool {
		lctx, lcancel := context.WithTimeout(ctx, 2*time.Second)
		defer lcancel()
		provs, _ := a1.DHT().Lookup(lctx, "shared-key", 0)
		return hasOnly(provs, a2.ID())
	})
	lctx, lcancel := context.WithTimeout(ctx, 3*time.Second)
	provs, _ := x1.DHT().Lookup(lctx, "shared-key", 0)
	lcancel()
	if !hasOnly(provs, x1.ID()) {
		t.Fatalf("x1's lookup = %v, want only itself", provs)
	}
	for _, n := range []*Node{boot, a1, a2} {
		for _, p := range n.Peers() {
			if p.ID == x1.ID() || p.ID == xBoot.ID() {
				t.Fatalf("%s lists %s of the other realm as a peer", n.Name(), p.Name)
			}
		}
		for _, p := range n.DHT().RoutingTablePeers() {
			if p == x1.ID() || p == xBoot.ID() {
				t.Fatalf("%s has a peer of the other realm in its routing table", n.Name())
			}
		}
	}
	for _, p := range x1.DHT().RoutingTablePeers() {
		if p != xBoot.ID() {
			t.Fatalf("x1's routing table has %s, not of its realm", p)
		}
	}
	// The alias of the other realm does not resolve across realms.
	if _, err := x1.Resolve(ctx, a1.Alias()); !errors.Is(err, ErrOtherRealm) {
		t.Fatalf("x1 resolving %s: %v, want ErrOtherRealm", a1.Alias(), err)
	}
	// The refused bootstrap peer is gated: x1 does not come back to it.
	if x1.IsPeer(boot.ID()) || !x1.gater.isRefused(boot.ID()) {
		t.Fatal("x1 does not gate the other realm's bootstrap peer")
	}
}

func hasOnly(provs []peer.AddrInfo, id peer.ID) bool {
	return len(provs) == 1 && provs[0].ID == id
}
