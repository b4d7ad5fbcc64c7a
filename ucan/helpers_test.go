package ucan

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/MetaMask/go-did-it"
	"github.com/ipfs/go-cid"
	"github.com/ipld/go-ipld-prime"
	"github.com/ipld/go-ipld-prime/codec"
	"github.com/ipld/go-ipld-prime/codec/dagcbor"
	"github.com/ipld/go-ipld-prime/datamodel"
	"github.com/ipld/go-ipld-prime/fluent/qp"
	cidlink "github.com/ipld/go-ipld-prime/linking/cid"
	"github.com/ipld/go-ipld-prime/node/basicnode"
	"github.com/multiformats/go-multihash"
	"github.com/ucan-wg/go-ucan/pkg/policy/literal"

	"github.com/macula-io/macula/realm"
)

const testRealmName = "io.acme"

// fakeClock is an injectable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// testRealm holds an authority, a few principals and a clock.
type testRealm struct {
	auth    ed25519.PrivateKey
	authDID string
	start   time.Time // real time when the realm was made; tokens are issued around it
	clock   *fakeClock
}

// seedKey returns a deterministic key for a name.
func seedKey(name string) ed25519.PrivateKey {
	s := sha256.Sum256([]byte("macula-ucan-test:" + name))
	return ed25519.NewKeyFromSeed(s[:])
}

func newTestRealm(t testing.TB) *testRealm {
	t.Helper()
	auth := seedKey("authority")
	now := time.Now()
	return &testRealm{auth: auth, authDID: KeyDID(auth), start: now, clock: &fakeClock{t: now}}
}

func (r *testRealm) validator(t testing.TB, self string, mod func(*Config)) *Validator {
	t.Helper()
	cfg := Config{Realm: testRealmName, Authority: r.authDID, Self: self, Now: r.clock.Now, Logger: slog.New(slog.DiscardHandler)}
	if mod != nil {
		mod(&cfg)
	}
	v, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// issue wraps Issue with a default expiry of one hour.
func (r *testRealm) issue(t testing.TB, key ed25519.PrivateKey, o IssueOptions) Chain {
	t.Helper()
	if o.Expires.IsZero() {
		o.Expires = r.start.Add(time.Hour)
	}
	c, err := Issue(key, o)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	return c
}

// rawToken describes a token field by field, to craft tokens that Issue
// would refuse to make: wrong signers, odd subjects, odd policies.
type rawToken struct {
	tag           string // default: delegation
	iss, aud, sub string // sub "null": powerline; "" omits the field
	cmd           string
	pol           datamodel.Node // nil: []
	nonce         []byte         // nil: 12 bytes
	nbf, exp      int64          // 0: absent (exp: null)
	args          datamodel.Node // invocations
	header        []byte         // nil: Ed25519/DAG-CBOR
}

// seal encodes and signs rt with signer, which need not be its issuer.
func (rt rawToken) seal(t testing.TB, signer ed25519.PrivateKey) []byte {
	t.Helper()
	tag := rt.tag
	if tag == "" {
		tag = tagDelegation
	}
	inv := tag == tagInvocation || tag == tagInvocationFinal
	payload, err := qp.BuildMap(basicnode.Prototype.Any, -1, func(ma datamodel.MapAssembler) {
		qp.MapEntry(ma, "iss", qp.String(rt.iss))
		if rt.aud != "" {
			qp.MapEntry(ma, "aud", qp.String(rt.aud))
		}
		switch rt.sub {
		case "":
		case "null":
			qp.MapEntry(ma, "sub", qp.Null())
		default:
			qp.MapEntry(ma, "sub", qp.String(rt.sub))
		}
		qp.MapEntry(ma, "cmd", qp.String(rt.cmd))
		if inv {
			args := rt.args
			if args == nil {
				args, _ = qp.BuildMap(basicnode.Prototype.Any, 0, func(datamodel.MapAssembler) {})
			}
			qp.MapEntry(ma, "args", qp.Node(args))
			qp.MapEntry(ma, "prf", qp.List(0, func(datamodel.ListAssembler) {}))
		} else {
			pol := rt.pol
			if pol == nil {
				pol, _ = qp.BuildList(basicnode.Prototype.Any, 0, func(datamodel.ListAssembler) {})
			}
			qp.MapEntry(ma, "pol", qp.Node(pol))
		}
		nonce := rt.nonce
		if nonce == nil {
			nonce = []byte("0123456789ab")
		}
		qp.MapEntry(ma, "nonce", qp.Bytes(nonce))
		if rt.nbf != 0 {
			qp.MapEntry(ma, "nbf", qp.Int(rt.nbf))
		}
		if rt.exp != 0 {
			qp.MapEntry(ma, "exp", qp.Int(rt.exp))
		} else {
			qp.MapEntry(ma, "exp", qp.Null())
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	header := rt.header
	if header == nil {
		header = ed25519Header
	}
	return sealNode(t, signer, header, tag, payload)
}

// sealNode signs {h, tag: payload} and wraps it in an envelope.
func sealNode(t testing.TB, signer ed25519.PrivateKey, header []byte, tag string, payload datamodel.Node) []byte {
	t.Helper()
	sp, err := qp.BuildMap(basicnode.Prototype.Any, 2, func(ma datamodel.MapAssembler) {
		qp.MapEntry(ma, "h", qp.Bytes(header))
		qp.MapEntry(ma, tag, qp.Node(payload))
	})
	if err != nil {
		t.Fatal(err)
	}
	signed, err := ipld.Encode(sp, dagcbor.Encode)
	if err != nil {
		t.Fatal(err)
	}
	env, err := qp.BuildList(basicnode.Prototype.Any, 2, func(la datamodel.ListAssembler) {
		qp.ListEntry(la, qp.Bytes(ed25519.Sign(signer, signed)))
		qp.ListEntry(la, qp.Node(sp))
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := ipld.Encode(env, dagcbor.Encode)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// reencode returns the same token with every map's entries in reverse
// order: other bytes, another envelope CID, the same signed content (the
// signature still verifies, because it covers the canonical encoding).
func reencode(t testing.TB, raw []byte) []byte {
	t.Helper()
	n, err := ipld.Decode(raw, dagcbor.Decode)
	if err != nil {
		t.Fatal(err)
	}
	out, err := ipld.Encode(reverseMaps(t, n), dagcbor.EncodeOptions{AllowLinks: true, MapSortMode: codec.MapSortMode_None}.Encode)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(out, raw) {
		t.Fatal("re-encoding changed nothing")
	}
	return out
}

func reverseMaps(t testing.TB, n datamodel.Node) datamodel.Node {
	switch n.Kind() {
	case datamodel.Kind_Map:
		type kv struct {
			k string
			v datamodel.Node
		}
		var entries []kv
		for it := n.MapIterator(); !it.Done(); {
			k, v, _ := it.Next()
			ks, _ := k.AsString()
			entries = append(entries, kv{ks, reverseMaps(t, v)})
		}
		m, err := qp.BuildMap(basicnode.Prototype.Any, int64(len(entries)), func(ma datamodel.MapAssembler) {
			for i := len(entries) - 1; i >= 0; i-- {
				qp.MapEntry(ma, entries[i].k, qp.Node(entries[i].v))
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		return m
	case datamodel.Kind_List:
		var items []datamodel.Node
		for it := n.ListIterator(); !it.Done(); {
			_, v, _ := it.Next()
			items = append(items, reverseMaps(t, v))
		}
		l, err := qp.BuildList(basicnode.Prototype.Any, int64(len(items)), func(la datamodel.ListAssembler) {
			for _, v := range items {
				qp.ListEntry(la, qp.Node(v))
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	return n
}

// statement builds a policy statement node [op, selector, value].
func statement(op, sel string, val datamodel.Node) datamodel.Node {
	n, _ := qp.BuildList(basicnode.Prototype.Any, 3, func(la datamodel.ListAssembler) {
		qp.ListEntry(la, qp.String(op))
		qp.ListEntry(la, qp.String(sel))
		qp.ListEntry(la, qp.Node(val))
	})
	return n
}

func policyOf(stmts ...datamodel.Node) datamodel.Node {
	n, _ := qp.BuildList(basicnode.Prototype.Any, int64(len(stmts)), func(la datamodel.ListAssembler) {
		for _, s := range stmts {
			qp.ListEntry(la, qp.Node(s))
		}
	})
	return n
}

// policyArgs builds invocation arguments.
func policyArgs(t testing.TB, m map[string]any) datamodel.Node {
	t.Helper()
	n, err := literal.Map(m)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// rawInvocation crafts an invocation citing proofs (root first) by their
// envelope CIDs. exp 0 leaves it without expiry.
func rawInvocation(t testing.TB, signer ed25519.PrivateKey, iss, aud, sub string, cmd Command, args datamodel.Node, proofs Chain, exp int64) []byte {
	t.Helper()
	payload, err := qp.BuildMap(basicnode.Prototype.Any, -1, func(ma datamodel.MapAssembler) {
		qp.MapEntry(ma, "iss", qp.String(iss))
		if aud != "" {
			qp.MapEntry(ma, "aud", qp.String(aud))
		}
		qp.MapEntry(ma, "sub", qp.String(sub))
		qp.MapEntry(ma, "cmd", qp.String(string(cmd)))
		qp.MapEntry(ma, "args", qp.Node(args))
		qp.MapEntry(ma, "prf", qp.List(int64(len(proofs)), func(la datamodel.ListAssembler) {
			for _, p := range proofs {
				c, err := cid.V1Builder{Codec: cid.DagCBOR, MhType: multihash.SHA2_256}.Sum(p)
				if err != nil {
					panic(err)
				}
				qp.ListEntry(la, qp.Link(cidlink.Link{Cid: c}))
			}
		}))
		qp.MapEntry(ma, "nonce", qp.Bytes(randomNonce()))
		if exp != 0 {
			qp.MapEntry(ma, "exp", qp.Int(exp))
		} else {
			qp.MapEntry(ma, "exp", qp.Null())
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return sealNode(t, signer, ed25519Header, tagInvocation, payload)
}

func randomNonce() []byte {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return b
}

func base64Std(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// didOf returns the go-did-it DID of a key.
func (*testRealm) didOf(key ed25519.PrivateKey) (did.DID, error) {
	_, d, err := signerOf(key)
	return d, err
}

func ed25519PublicOf(did string) (ed25519.PublicKey, error) { return realm.ParseDIDKey(did) }
