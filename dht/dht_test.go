package dht

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"

	"github.com/macula-io/macula/internal/testnet"
)

func TestMain(m *testing.M) {
	testnet.VerifyTestMain(m)
}

func newHost(t *testing.T) host.Host { return testnet.Host(t) }

func newDHT(t *testing.T, h host.Host, realm string) *DHT {
	t.Helper()
	d, err := New(h, Config{Realm: realm, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
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

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestProvideLookupStats(t *testing.T) {
	ha, hb, hc := newHost(t), newHost(t), newHost(t)
	a, b, c := newDHT(t, ha, "io.acme.orders"), newDHT(t, hb, "io.acme.orders"), newDHT(t, hc, "io.acme.orders")
	connect(t, hb, ha)
	connect(t, hc, ha)
	waitFor(t, "routing tables", func() bool { return len(a.RoutingTablePeers()) == 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_ = b.RefreshRoutingTable(ctx)
	_ = c.RefreshRoutingTable(ctx)

	if err := b.Provide(ctx, "io.acme.orders.get_order"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "c to find b", func() bool {
		lctx, lcancel := context.WithTimeout(ctx, 2*time.Second)
		defer lcancel()
		provs, err := c.Lookup(lctx, "io.acme.orders.get_order", 0)
		return err == nil && len(provs) == 1 && provs[0].ID == hb.ID() && len(provs[0].Addrs) > 0
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
	connect(t, hb, ha)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Provide(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // give identify a chance to (wrongly) add the peer
	if n := len(a.RoutingTablePeers()) + len(b.RoutingTablePeers()); n != 0 {
		t.Fatalf("%d peers of another realm in the routing tables", n)
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
