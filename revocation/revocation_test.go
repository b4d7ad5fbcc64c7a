package revocation

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/macula-io/macula/frame"
	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/ucan"
)

const testRealm = "io.acme.orders"

func validator(t *testing.T, a *testnet.Authority) *ucan.Validator {
	t.Helper()
	v, err := ucan.New(ucan.Config{Realm: testRealm, Authority: a.DID, Logger: testnet.QuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

// node is one host with its validator and exchange; members are the peers
// it reads records from.
type node struct {
	h       host.Host
	v       *ucan.Validator
	x       *Exchange
	applied chan struct{}
}

func start(t *testing.T, a *testnet.Authority, dir string, member func(peer.ID) bool) *node {
	t.Helper()
	n := &node{h: testnet.Host(t), v: validator(t, a), applied: make(chan struct{}, 16)}
	if member == nil {
		member = func(peer.ID) bool { return true }
	}
	if err := Load(n.v, dir, testnet.QuietLogger()); err != nil {
		t.Fatal(err)
	}
	x, err := New(n.h, Config{
		Realm: testRealm, Validator: n.v, Dir: dir, Timeout: 10 * time.Second,
		Peers:  n.h.Network().Peers,
		Member: member,
		Applied: func() {
			select {
			case n.applied <- struct{}{}:
			default:
			}
		},
		Logger: testnet.QuietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	n.x = x
	t.Cleanup(func() { x.Close() })
	return n
}

func held(v *ucan.Validator, rec []byte) bool {
	return slices.ContainsFunc(v.Revocations(), func(r []byte) bool { return bytes.Equal(r, rec) })
}

// A record given to one node reaches every node, hop by hop (c meets only
// b), is kept on disk where there is a data directory, and comes back
// from it after a restart; a record the authority did not sign is refused
// and goes nowhere.
func TestRecordSpreadsAndIsKept(t *testing.T) {
	auth := testnet.NewAuthority(t)
	dir := t.TempDir()
	a := start(t, auth, dir, nil)
	b := start(t, auth, "", nil)
	c := start(t, auth, "", nil)
	testnet.Connect(t, a.h, b.h)
	testnet.Connect(t, c.h, b.h)

	chain := auth.Grant(t, ucan.KeyDID(mustKey(t)), ucan.Member, "")
	forged, err := ucan.Revoke(mustKey(t), chain.Leaf())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.x.Add(forged, ""); !errors.Is(err, ucan.ErrNotRooted) {
		t.Fatalf("a record not by the authority: %v", err)
	}
	if _, err := a.x.Add([]byte("not a record"), ""); !errors.Is(err, ucan.ErrUnauthorized) {
		t.Fatalf("garbage: %v", err)
	}
	if len(a.v.Revocations()) != 0 {
		t.Fatalf("refused records in force: %d", len(a.v.Revocations()))
	}

	rec := auth.Revoke(t, chain)
	if isNew, err := a.x.Add(rec, ""); err != nil || !isNew {
		t.Fatalf("Add = %v, %v", isNew, err)
	}
	if isNew, err := a.x.Add(rec, ""); err != nil || isNew {
		t.Fatalf("Add again = %v, %v; want not new", isNew, err)
	}
	select {
	case <-a.applied:
	default:
		t.Fatal("Applied was not called")
	}
	testnet.Eventually(t, 30*time.Second, func() error {
		if !held(b.v, rec) || !held(c.v, rec) {
			return errors.New("the record to reach b and c")
		}
		return nil
	})
	if _, err := os.Stat(filepath.Join(dir, File)); err != nil {
		t.Fatal(err)
	}
	again := validator(t, auth)
	if err := Load(again, dir, testnet.QuietLogger()); err != nil || !held(again, rec) {
		t.Fatalf("after a restart: %v, %d records", err, len(again.Revocations()))
	}
}

// A node that connects later gets the records with SendAll; records from
// a peer that is not a member are not read.
func TestSendAllAndMembersOnly(t *testing.T) {
	auth := testnet.NewAuthority(t)
	a := start(t, auth, "", nil)
	rec := auth.Revoke(t, auth.Grant(t, ucan.KeyDID(mustKey(t)), ucan.Member, ""))
	if _, err := a.x.Add(rec, ""); err != nil {
		t.Fatal(err)
	}
	late := start(t, auth, "", nil)
	testnet.Connect(t, late.h, a.h)
	a.x.SendAll(late.h.ID())
	testnet.Eventually(t, 30*time.Second, func() error {
		if !held(late.v, rec) {
			return errors.New("the record to reach the late node")
		}
		return nil
	})

	// The handler asks Member before it reads anything: once it was
	// asked about a (and said no), nothing of a's is read.
	asked := make(chan peer.ID, 16)
	closed := start(t, auth, "", func(p peer.ID) bool {
		select {
		case asked <- p:
		default:
		}
		return false
	})
	testnet.Connect(t, closed.h, a.h)
	a.x.SendAll(closed.h.ID())
	select {
	case p := <-asked:
		if p != a.h.ID() {
			t.Fatalf("Member asked about %s, want a", p)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the records sent were never handled")
	}
	if len(closed.v.Revocations()) != 0 {
		t.Fatal("records read from a peer that is not a member")
	}
}

func TestClosed(t *testing.T) {
	auth := testnet.NewAuthority(t)
	a := start(t, auth, "", nil)
	if err := a.x.Close(); err != nil {
		t.Fatal(err)
	}
	rec := auth.Revoke(t, auth.Grant(t, ucan.KeyDID(mustKey(t)), ucan.Member, ""))
	if _, err := a.x.Add(rec, ""); !errors.Is(err, ErrClosed) || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Add after Close: %v", err)
	}
	if err := a.x.Close(); err != nil {
		t.Fatal(err)
	}
}

func mustKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	k, err := ucan.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// The file's parser never panics, and what it returns encodes back to a
// prefix of its input.
func FuzzParse(f *testing.F) {
	f.Add([]byte{})
	f.Add(frame.Append(nil, frameRecord, recordVer, []byte("record")))
	f.Add(append(frame.Append(nil, frameRecord, recordVer, []byte("a")), 9, 9, 9))
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, _ := parse(b)
		var out []byte
		for _, r := range recs {
			out = frame.Append(out, frameRecord, recordVer, r)
		}
		if !bytes.HasPrefix(b, out) {
			t.Fatalf("records %q do not encode a prefix of %q", recs, b)
		}
	})
}
