package alias

import (
	"context"
	"crypto/ed25519"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	record "github.com/libp2p/go-libp2p-record"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/macula-io/macula/dht"
	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/realm"
)

var _ Store = (*dht.DHT)(nil)

// lockedLog is a log buffer safe for a logger and a test to share.
type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// aliasDHT is a host with the realm's DHT and its alias validator.
func aliasDHT(t *testing.T, self string) (host.Host, *dht.DHT) {
	t.Helper()
	h := testnet.Host(t)
	d, err := dht.New(h, dht.Config{Realm: "io.acme.orders", Logger: testnet.QuietLogger(),
		Validators: map[string]record.Validator{Namespace: NewValidator("io.acme.orders", self, nil, testnet.QuietLogger())}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return h, d
}

// A publisher stores its node's record once the node has a peer; another
// node resolves it; a second key with the same alias is refused.
func TestPublishResolveTakeover(t *testing.T) {
	const name = "did:macula:io.acme.orders.n1"
	ha, da := aliasDHT(t, name)
	hb, db := aliasDHT(t, "did:macula:io.acme.orders.n2")
	hc, dc := aliasDHT(t, name) // the impostor's node
	testnet.Connect(t, hb, ha)
	testnet.Connect(t, hc, hb)
	for _, p := range []struct {
		d    *dht.DHT
		want []peer.ID
	}{{da, []peer.ID{hb.ID()}}, {db, []peer.ID{ha.ID(), hc.ID()}}, {dc, []peer.ID{hb.ID()}}} {
		testnet.Eventually(t, 15*time.Second, func() error {
			if len(p.d.RoutingTablePeers()) < len(p.want) {
				return errors.New("routing table not full yet")
			}
			return nil
		})
	}
	key := newKey(t)
	pub, err := NewPublisher(da, PublisherConfig{Alias: name, Key: key, TTL: time.Hour, Addrs: ha.Addrs,
		Member: func() string { return "" }, Logger: testnet.QuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close() })
	pub.Wake()
	var rec *Record
	testnet.Eventually(t, 20*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		rec, err = Resolve(ctx, db, name)
		return err
	})
	if want := realm.DIDKey(key.Public().(ed25519.PublicKey)); rec.DID != want || len(rec.Addrs) == 0 {
		t.Fatalf("resolved %+v, want %s", rec, want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := Resolve(ctx, db, "did:macula:io.acme.orders.nobody"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("an alias nobody published: %v", err)
	}
	// The impostor's publisher finds the alias taken and says so.
	var logs lockedLog
	imp, err := NewPublisher(dc, PublisherConfig{Alias: name, Key: newKey(t), TTL: time.Hour, Addrs: hc.Addrs,
		Member: func() string { return "" }, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { imp.Close() })
	imp.Wake()
	testnet.Eventually(t, 20*time.Second, func() error {
		if !strings.Contains(logs.String(), "alias is bound to another key") {
			return errors.New("the impostor did not find the alias taken")
		}
		return nil
	})
	if again, err := Resolve(ctx, db, name); err != nil || again.DID != rec.DID {
		t.Fatalf("after the takeover attempt: %+v, %v", again, err)
	}
}
