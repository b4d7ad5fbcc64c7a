package alias

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/macula-io/macula/internal/testnet"
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

func signedRecord(t *testing.T, key ed25519.PrivateKey, alias string, mod func(*Record)) []byte {
	t.Helper()
	now := time.Now()
	r := &Record{Alias: alias, Addrs: []string{"/ip4/127.0.0.1/udp/1/quic-v1"}, Seq: 1, Bound: now, Expires: now.Add(time.Hour)}
	if mod != nil {
		mod(r)
	}
	if err := r.Sign(key); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestValidator(t *testing.T) {
	const name = "did:macula:io.acme.orders.n1"
	k1, k2 := newKey(t), newKey(t)
	good := signedRecord(t, k1, name, nil)
	tampered := bytes.Replace(good, []byte("udp/1/"), []byte("udp/2/"), 1)
	expired := signedRecord(t, k1, name, func(r *Record) { r.Expires = time.Now().Add(-time.Second) })
	future := signedRecord(t, k1, name, func(r *Record) { r.Bound = time.Now().Add(time.Hour) })
	otherRealm := signedRecord(t, k1, "did:macula:io.other.realm.n1", nil)
	var wrongPeer Record
	_ = json.Unmarshal(good, &wrongPeer)
	wrongPeer.PeerID = "12D3KooWHHzSeKaY8xuZVzkLbKFfvNgPPeKhFBGrMbNzbm5akpqu"
	wrongPeerRaw, _ := json.Marshal(wrongPeer)

	cases := []struct {
		name string
		key  string
		val  []byte
		want error
	}{
		{"valid", Key(name), good, nil},
		{"tampered address", Key(name), tampered, ErrBadRecord},
		{"expired", Key(name), expired, ErrBadRecord},
		{"bound in the future", Key(name), future, ErrBadRecord},
		{"other realm", Key("did:macula:io.other.realm.n1"), otherRealm, ErrBadRecord},
		{"stored under another key", Key("did:macula:io.acme.orders.n2"), good, ErrBadRecord},
		{"peer id of another key", Key(name), wrongPeerRaw, ErrBadRecord},
		{"garbage", Key(name), []byte("{not json"), ErrBadRecord},
		{"oversized", Key(name), bytes.Repeat([]byte(" "), maxRecord+1), ErrBadRecord},
		{"second key claims bound alias", Key(name), signedRecord(t, k2, name, nil), ErrTaken},
	}
	var logs bytes.Buffer
	v := NewValidator("io.acme.orders", "", nil, slog.New(slog.NewTextHandler(&logs, nil)))
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

func TestSelect(t *testing.T) {
	const name = "did:macula:io.acme.orders.n1"
	k1, k2 := newKey(t), newKey(t)
	early := time.Now().Add(-time.Hour)
	old := signedRecord(t, k1, name, func(r *Record) { r.Seq = 1; r.Bound = early })
	newer := signedRecord(t, k1, name, func(r *Record) { r.Seq = 2; r.Bound = early })
	usurper := signedRecord(t, k2, name, func(r *Record) { r.Seq = 99 })
	// A fresh validator per case: Select must not depend on pinning.
	sel := func(vals ...[]byte) int {
		v := NewValidator("io.acme.orders", "", nil, testnet.QuietLogger())
		i, err := v.Select(Key(name), vals)
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
	v := NewValidator("io.acme.orders", "", nil, testnet.QuietLogger())
	if _, err := v.Select(Key(name), [][]byte{[]byte("junk")}); err == nil {
		t.Fatal("Select of only junk succeeded")
	}
}

func FuzzRecord(f *testing.F) {
	_, k, _ := ed25519.GenerateKey(rand.Reader)
	now := time.Now()
	r := &Record{Alias: "did:macula:io.acme.orders.n1", Seq: 1, Bound: now, Expires: now.Add(time.Hour)}
	_ = r.Sign(k)
	good, _ := json.Marshal(r)
	f.Add(good)
	f.Add([]byte(`{"alias":"did:macula:io.acme.orders.n1"}`))
	f.Add([]byte(`null`))
	var mu sync.Mutex
	v := NewValidator("io.acme.orders", "", nil, testnet.QuietLogger())
	f.Fuzz(func(t *testing.T, b []byte) {
		mu.Lock()
		defer mu.Unlock()
		rec, err := Parse(b)
		verr := v.Validate(Key("did:macula:io.acme.orders.n1"), b)
		if err != nil {
			if verr == nil {
				t.Fatal("Validate accepted what Parse refused")
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
