package dht

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/macula-io/macula/internal/testnet"
)

func TestMain(m *testing.M) {
	testnet.VerifyTestMain(m)
}

func newHost(t *testing.T) host.Host { return testnet.Host(t) }

func newDHT(t *testing.T, h host.Host, realm string) *DHT {
	t.Helper()
	d, err := New(h, Config{Realm: realm, Logger: testnet.QuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	})
	return d
}

func connect(t *testing.T, a, b host.Host) { testnet.Connect(t, a, b) }

// waitRoutingTable waits until d's routing table holds want, among others.
func waitRoutingTable(t *testing.T, d *DHT, want ...peer.ID) {
	t.Helper()
	testnet.Eventually(t, 15*time.Second, func() error {
		rt := d.RoutingTablePeers()
		for _, p := range want {
			if !slices.Contains(rt, p) {
				return fmt.Errorf("the routing table %v lacks %s", rt, p)
			}
		}
		return nil
	})
}

func TestProvideLookupStats(t *testing.T) {
	ha, hb, hc := newHost(t), newHost(t), newHost(t)
	a, b, c := newDHT(t, ha, "io.acme.orders"), newDHT(t, hb, "io.acme.orders"), newDHT(t, hc, "io.acme.orders")
	connect(t, hb, ha)
	connect(t, hc, ha)
	waitRoutingTable(t, a, hb.ID(), hc.ID())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_ = b.RefreshRoutingTable(ctx)
	_ = c.RefreshRoutingTable(ctx)

	if err := b.Provide(ctx, "io.acme.orders.get_order"); err != nil {
		t.Fatal(err)
	}
	testnet.Eventually(t, 15*time.Second, func() error {
		lctx, lcancel := context.WithTimeout(ctx, 2*time.Second)
		defer lcancel()
		provs, err := c.Lookup(lctx, "io.acme.orders.get_order", 0)
		if err != nil {
			return err
		}
		if len(provs) != 1 || provs[0].ID != hb.ID() || len(provs[0].Addrs) == 0 {
			return fmt.Errorf("c finds providers %v, want b (%s) with its addresses", provs, hb.ID())
		}
		return nil
	})
	st, err := b.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Nodes < 1 || st.Buckets < 1 || st.Providing != 1 || st.ProviderKeys < 1 || st.Mode != ModeServer {
		t.Fatalf("b's stats = %+v", st)
	}
	if got := b.Providing(); len(got) != 1 || got[0] != "io.acme.orders.get_order" {
		t.Fatalf("Providing = %v", got)
	}
	// Someone among a and c holds b's record for others.
	sa, _ := a.Stats(ctx)
	sc, _ := c.Stats(ctx)
	if sa.ProviderKeys+sc.ProviderKeys < 1 {
		t.Fatalf("no peer stores b's provider record: a %+v c %+v", sa, sc)
	}
	lctx, lcancel := context.WithTimeout(ctx, time.Second)
	defer lcancel()
	if provs, err := c.Lookup(lctx, "nobody-provides-this", 0); err != nil || len(provs) != 0 {
		t.Fatalf("lookup of an unknown key = %v, %v", provs, err)
	}
}

func TestRealmsDoNotShareARoutingTable(t *testing.T) {
	ha, hb := newHost(t), newHost(t)
	a, b := newDHT(t, ha, "io.acme.orders"), newDHT(t, hb, "io.other.realm")
	idA, idB := identified(t, ha), identified(t, hb)
	connect(t, hb, ha)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Provide(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	// Each DHT takes peers from its host's identify events, in order: once
	// a peer of its own realm that identified after the other realm's is
	// in the table, the other realm's peer has been considered.
	idA(hb.ID())
	idB(ha.ID())
	ha2, hb2 := newHost(t), newHost(t)
	newDHT(t, ha2, "io.acme.orders")
	newDHT(t, hb2, "io.other.realm")
	connect(t, ha2, ha)
	connect(t, hb2, hb)
	waitRoutingTable(t, a, ha2.ID())
	waitRoutingTable(t, b, hb2.ID())
	if rt := a.RoutingTablePeers(); slices.Contains(rt, hb.ID()) {
		t.Fatalf("a peer of another realm in a's routing table %v", rt)
	}
	if rt := b.RoutingTablePeers(); slices.Contains(rt, ha.ID()) {
		t.Fatalf("a peer of another realm in b's routing table %v", rt)
	}
	lctx, lcancel := context.WithTimeout(ctx, time.Second)
	defer lcancel()
	if provs, _ := a.Lookup(lctx, "k", 0); len(provs) != 0 {
		t.Fatalf("a found %v from another realm", provs)
	}
	if !strings.Contains(string(ProtocolPrefix("io.acme.orders")), "io.acme.orders") {
		t.Fatal("protocol prefix lacks the realm")
	}
}

// identified subscribes to h's identify events and returns a function that
// waits for the one of a peer.
func identified(t *testing.T, h host.Host) func(peer.ID) {
	t.Helper()
	sub, err := h.EventBus().Subscribe(new(event.EvtPeerIdentificationCompleted))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Close() })
	return func(p peer.ID) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case e := <-sub.Out():
				if e.(event.EvtPeerIdentificationCompleted).Peer == p {
					return
				}
			case <-timeout:
				t.Fatalf("%s never identified %s", h.ID(), p)
			}
		}
	}
}

func TestBadKeysAndConfig(t *testing.T) {
	h := newHost(t)
	d := newDHT(t, h, "io.acme.orders")
	ctx := context.Background()
	if err := d.Provide(ctx, ""); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("empty key: %v", err)
	}
	if _, err := d.Lookup(ctx, strings.Repeat("k", MaxKeyLen+1), 0); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("long key: %v", err)
	}
	if _, err := New(h, Config{}); err == nil {
		t.Fatal("New without a realm succeeded")
	}
	if _, err := New(h, Config{Realm: "io.acme.orders", Mode: "sideways"}); err == nil {
		t.Fatal("New with a bad mode succeeded")
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Provide(ctx, "k"); !errors.Is(err, ErrClosed) || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Provide after Close: %v, want ErrClosed and net.ErrClosed", err)
	}
}
