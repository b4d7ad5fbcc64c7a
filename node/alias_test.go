package node

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/macula-io/macula/alias"
	"github.com/macula-io/macula/realm"
	"github.com/macula-io/macula/ucan"
)

// newKey returns a fresh Ed25519 key.
func newKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	k, err := ucan.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Across real hosts: an alias resolves to the key that published it, and a
// second node with another key and the same name cannot take it over.
func TestAliasResolveAndTakeover(t *testing.T) {
	var bootLogs syncBuffer
	boot := startNode(t, "io.acme.orders", "boot", func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(&bootLogs, nil)) })
	b := startNode(t, "io.acme.orders", "b", func(c *Config) { c.Bootstrap = bootstrapOf(boot) })
	c := startNode(t, "io.acme.orders", "c", func(c *Config) { c.Bootstrap = bootstrapOf(boot) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var res *Resolution
	eventually(t, 20*time.Second, "c to resolve b's alias", func() bool {
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		defer rcancel()
		r, err := c.Resolve(rctx, b.Alias())
		res = r
		return err == nil
	})
	if res.DID != b.DID() || res.PeerID != b.ID().String() || res.Record == nil || len(res.Addrs) == 0 {
		t.Fatalf("resolved %s to %+v, want DID %s", b.Alias(), res, b.DID())
	}
	// did:key resolves to the peer ID without the DHT.
	if r, err := c.Resolve(ctx, b.DID()); err != nil || r.PeerID != b.ID().String() {
		t.Fatalf("Resolve(did:key) = %+v, %v", r, err)
	}
	if _, err := c.Resolve(ctx, "did:macula:io.acme.orders.nobody"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown alias: %v, want ErrNotFound", err)
	}
	if _, err := c.Resolve(ctx, "did:web:example"); !errors.Is(err, realm.ErrInvalidDID) {
		t.Fatalf("did:web: %v, want ErrInvalidDID", err)
	}

	// An impostor: same name, another key. Its own publication is refused
	// by the realm (its publisher says so); everyone keeps resolving the
	// alias to b's key. A node that knows the binding says so when the
	// impostor connects: boot, once it has checked b's record.
	if r, err := boot.Resolve(ctx, b.Alias()); err != nil || r.DID != b.DID() {
		t.Fatalf("boot resolves %s: %+v, %v", b.Alias(), r, err)
	}
	var impLogs syncBuffer
	imp := startNode(t, "io.acme.orders", "b", func(c *Config) {
		c.Bootstrap = bootstrapOf(boot)
		c.Logger = slog.New(slog.NewTextHandler(&impLogs, nil))
	})
	eventually(t, 20*time.Second, "the impostor's publisher to find the alias taken", func() bool {
		return strings.Contains(impLogs.String(), "alias is bound to another key")
	})
	eventually(t, 10*time.Second, "boot to log the impostor", func() bool {
		logs := bootLogs.String()
		return strings.Contains(logs, "level=WARN msg=\"refused alias claim by another key") &&
			strings.Contains(logs, "bound_to="+b.DID()) && strings.Contains(logs, "claimed_by="+imp.DID())
	})
	// Even a forced write is refused by the nodes that hold the record.
	rec := &alias.Record{Alias: b.Alias(), Seq: uint64(time.Now().UnixNano()), Bound: time.Now().Add(-48 * time.Hour), Expires: time.Now().Add(time.Hour)}
	if err := rec.Sign(imp.id.priv); err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(rec)
	_ = imp.DHT().PutValue(ctx, alias.Key(b.Alias()), raw)
	for _, n := range []*Node{boot, c} {
		r, err := n.Resolve(ctx, b.Alias())
		if err != nil || r.DID != b.DID() {
			t.Fatalf("%s resolves %s to %+v (%v) after the takeover attempt, want %s", n.Name(), b.Alias(), r, err, b.DID())
		}
	}
}
