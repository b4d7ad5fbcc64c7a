package node

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/macula-io/macula/realm"
)

func newKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func signedRecord(t *testing.T, key ed25519.PrivateKey, alias string, mod func(*AliasRecord)) []byte {
	t.Helper()
	now := time.Now()
	r := &AliasRecord{Alias: alias, Addrs: []string{"/ip4/127.0.0.1/udp/1/quic-v1"}, Seq: 1, Bound: now, Expires: now.Add(time.Hour)}
	if mod != nil {
		mod(r)
	}
	if err := r.sign(key); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAliasValidator(t *testing.T) {
	const alias = "did:macula:io.acme.orders.n1"
	k1, k2 := newKey(t), newKey(t)
	good := signedRecord(t, k1, alias, nil)
	tampered := bytes.Replace(good, []byte("udp/1/"), []byte("udp/2/"), 1)
	expired := signedRecord(t, k1, alias, func(r *AliasRecord) { r.Expires = time.Now().Add(-time.Second) })
	future := signedRecord(t, k1, alias, func(r *AliasRecord) { r.Bound = time.Now().Add(time.Hour) })
	otherRealm := signedRecord(t, k1, "did:macula:io.other.realm.n1", nil)
	var wrongPeer AliasRecord
	_ = json.Unmarshal(good, &wrongPeer)
	wrongPeer.PeerID = "12D3KooWHHzSeKaY8xuZVzkLbKFfvNgPPeKhFBGrMbNzbm5akpqu"
	wrongPeerRaw, _ := json.Marshal(wrongPeer)

	cases := []struct {
		name string
		key  string
		val  []byte
		want error
	}{
		{"valid", AliasKey(alias), good, nil},
		{"tampered address", AliasKey(alias), tampered, ErrBadRecord},
		{"expired", AliasKey(alias), expired, ErrBadRecord},
		{"bound in the future", AliasKey(alias), future, ErrBadRecord},
		{"other realm", AliasKey("did:macula:io.other.realm.n1"), otherRealm, ErrOtherRealm},
		{"stored under another key", AliasKey("did:macula:io.acme.orders.n2"), good, ErrBadRecord},
		{"peer id of another key", AliasKey(alias), wrongPeerRaw, ErrBadRecord},
		{"garbage", AliasKey(alias), []byte("{not json"), ErrBadRecord},
		{"oversized", AliasKey(alias), bytes.Repeat([]byte(" "), maxAliasRecord+1), ErrBadRecord},
		{"second key claims bound alias", AliasKey(alias), signedRecord(t, k2, alias, nil), ErrAliasTaken},
	}
	var logs bytes.Buffer
	v := newAliasValidator("io.acme.orders", "", slog.New(slog.NewTextHandler(&logs, nil)))
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := v.Validate(c.key, c.val)
			if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("Validate = %v, want %v", err, c.want)
			}
		})
	}
	if !strings.Contains(logs.String(), "refused alias claim") {
		t.Fatalf("the refused claim was not logged; logs: %s", logs.String())
	}
}

func TestAliasSelect(t *testing.T) {
	const alias = "did:macula:io.acme.orders.n1"
	k1, k2 := newKey(t), newKey(t)
	early := time.Now().Add(-time.Hour)
	old := signedRecord(t, k1, alias, func(r *AliasRecord) { r.Seq = 1; r.Bound = early })
	newer := signedRecord(t, k1, alias, func(r *AliasRecord) { r.Seq = 2; r.Bound = early })
	usurper := signedRecord(t, k2, alias, func(r *AliasRecord) { r.Seq = 99 })
	// A fresh validator per case: Select must not depend on pinning.
	sel := func(vals ...[]byte) int {
		v := newAliasValidator("io.acme.orders", "", quietLogger())
		i, err := v.Select(AliasKey(alias), vals)
		if err != nil {
			t.Fatal(err)
		}
		return i
	}
	if i := sel(old, newer); i != 1 {
		t.Fatalf("same key: picked %d, want the higher seq", i)
	}
	if i := sel(usurper, old); i != 1 {
		t.Fatalf("two keys: picked %d, want the earlier claim", i)
	}
	if i := sel([]byte("junk"), newer); i != 1 {
		t.Fatalf("with junk: picked %d, want the valid one", i)
	}
	v := newAliasValidator("io.acme.orders", "", quietLogger())
	if _, err := v.Select(AliasKey(alias), [][]byte{[]byte("junk")}); err == nil {
		t.Fatal("Select of only junk succeeded")
	}
}

func FuzzAliasRecord(f *testing.F) {
	_, k, _ := ed25519.GenerateKey(rand.Reader)
	now := time.Now()
	r := &AliasRecord{Alias: "did:macula:io.acme.orders.n1", Seq: 1, Bound: now, Expires: now.Add(time.Hour)}
	_ = r.sign(k)
	good, _ := json.Marshal(r)
	f.Add(good)
	f.Add([]byte(`{"alias":"did:macula:io.acme.orders.n1"}`))
	f.Add([]byte(`null`))
	var mu sync.Mutex
	v := newAliasValidator("io.acme.orders", "", quietLogger())
	f.Fuzz(func(t *testing.T, b []byte) {
		mu.Lock()
		defer mu.Unlock()
		rec, err := ParseAliasRecord(b)
		verr := v.Validate(AliasKey("did:macula:io.acme.orders.n1"), b)
		if err != nil {
			if verr == nil {
				t.Fatal("Validate accepted what ParseAliasRecord refused")
			}
			return
		}
		if verr == nil {
			// Accepted: it must really be signed by the key its DID names.
			pub, perr := realm.ParseDIDKey(rec.DID)
			if perr != nil || !ed25519.Verify(pub, rec.signingBytes(), rec.Sig) {
				t.Fatal("Validate accepted a record without a valid signature")
			}
		}
	})
}

// Across real hosts: an alias resolves to the key that published it, and a
// second node with another key and the same name cannot take it over.
func TestAliasResolveAndTakeover(t *testing.T) {
	boot := startNode(t, "io.acme.orders", "boot", nil)
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
	// by the realm; everyone keeps resolving the alias to b's key.
	imp := startNode(t, "io.acme.orders", "b", func(c *Config) { c.Bootstrap = bootstrapOf(boot) })
	eventually(t, 15*time.Second, "impostor to join", func() bool {
		return len(imp.Peers()) >= 1 && len(imp.DHT().RoutingTablePeers()) >= 1
	})
	if _, err := imp.publishAlias(time.Time{}); !errors.Is(err, ErrAliasTaken) {
		t.Fatalf("impostor publishing: %v, want ErrAliasTaken", err)
	}
	// Even a forced write is refused by the nodes that hold the record.
	rec := &AliasRecord{Alias: b.Alias(), Seq: uint64(time.Now().UnixNano()), Bound: time.Now().Add(-48 * time.Hour), Expires: time.Now().Add(time.Hour)}
	if err := rec.sign(imp.id.priv); err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(rec)
	_ = imp.DHT().PutValue(ctx, AliasKey(b.Alias()), raw)
	for _, n := range []*Node{boot, c} {
		r, err := n.Resolve(ctx, b.Alias())
		if err != nil || r.DID != b.DID() {
			t.Fatalf("%s resolves %s to %+v (%v) after the takeover attempt, want %s", n.Name(), b.Alias(), r, err, b.DID())
		}
	}
}
