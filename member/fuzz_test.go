package member

import (
	"bytes"
	"crypto/rand"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// testKey returns a fresh Ed25519 key and its peer ID.
func testKey(t testing.TB) (crypto.PrivKey, peer.ID) {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return k, id
}

func sampleRecord(t testing.TB) (*record, crypto.PrivKey) {
	k, id := testKey(t)
	r := &record{
		ID: id, Incarnation: 1700000000000, Boot: 1700000000000, Name: "worker-1",
		Capabilities: []string{"chat", "game"}, Clusters: []string{"eu"},
		Addrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/udp/7400/quic-v1")},
	}
	if err := r.sign(testRealm, k); err != nil {
		t.Fatal(err)
	}
	return r, k
}

// FuzzDecodeRecord: whatever decodes re-encodes to the same bytes, within
// the limits; a signature checks only over those bytes.
func FuzzDecodeRecord(f *testing.F) {
	r, _ := sampleRecord(f)
	f.Add(r.encode())
	r2 := *r
	r2.Capabilities, r2.Clusters, r2.Addrs = nil, nil, nil
	f.Add(r2.encode())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := decodeRecord(in)
		if err != nil {
			return
		}
		if !bytes.Equal(got.encode(), in) {
			t.Fatalf("re-encoding differs: %x vs %x", got.encode(), in)
		}
		if len(got.Capabilities) > MaxCapabilities || len(got.Clusters) > MaxClusters || len(got.Addrs) > maxAddrs || len(in) > maxRecord {
			t.Fatalf("limits: %+v", got)
		}
		_ = got.verify(testRealm) // must not panic
	})
}

func sampleAlert(t testing.TB, kind alertKind) *alert {
	k, author := testKey(t)
	_, subject := testKey(t)
	if kind == alertLeft {
		subject = author
	}
	a := &alert{Kind: kind, Subject: subject, Incarnation: 42, Author: author}
	if err := a.sign(testRealm, k); err != nil {
		t.Fatal(err)
	}
	return a
}

func FuzzDecodeAlert(f *testing.F) {
	for _, k := range []alertKind{alertSuspect, alertFailed, alertLeft, alertUnreachable} {
		f.Add(sampleAlert(f, k).encode())
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		a, err := decodeAlert(in)
		if err != nil {
			return
		}
		if !bytes.Equal(a.encode(), in) {
			t.Fatal("re-encoding differs")
		}
		if (a.Kind == alertLeft) != (a.Author == a.Subject) {
			t.Fatalf("author and subject: %+v", a)
		}
		_ = a.verify(testRealm)
	})
}

func FuzzDecodeDigest(f *testing.F) {
	_, id := testKey(f)
	f.Add((&digest{Last: true, Entries: []digestEntry{{ID: id, Incarnation: 7, State: stateFailed}}}).encode())
	f.Add((&digest{}).encode())
	f.Fuzz(func(t *testing.T, in []byte) {
		g, err := decodeDigest(in)
		if err != nil {
			return
		}
		if !bytes.Equal(g.encode(), in) {
			t.Fatal("re-encoding differs")
		}
		for _, e := range g.Entries {
			if e.State == stateSuspect || e.State > stateLeft {
				t.Fatalf("state %v in a digest", e.State)
			}
		}
	})
}

func FuzzDecodeSummary(f *testing.F) {
	f.Add(summary{Members: 3}.encode())
	f.Fuzz(func(t *testing.T, in []byte) {
		s, err := decodeSummary(in)
		if err != nil {
			return
		}
		if !bytes.Equal(s.encode(), in) {
			t.Fatal("re-encoding differs")
		}
	})
}

func TestRecordSignature(t *testing.T) {
	r, _ := sampleRecord(t)
	got, err := decodeRecord(r.encode())
	if err != nil {
		t.Fatal(err)
	}
	if err := got.verify(testRealm); err != nil {
		t.Fatal(err)
	}
	if err := got.verify("io.other.realm"); err == nil {
		t.Fatal("a record signed for one realm verified for another")
	}
	got.Capabilities = append(got.Capabilities, "payment")
	if err := got.verify(testRealm); err == nil {
		t.Fatal("an altered record verified")
	}
	// A record signed by another key than its ID's.
	other, _ := testKey(t)
	forged := *r
	if err := forged.sign(testRealm, other); err != nil {
		t.Fatal(err)
	}
	if err := forged.verify(testRealm); err == nil {
		t.Fatal("a record signed by another key verified")
	}
	a := sampleAlert(t, alertSuspect)
	b, err := decodeAlert(a.encode())
	if err != nil || b.verify(testRealm) != nil {
		t.Fatalf("alert: %v", err)
	}
	b.Incarnation++
	if b.verify(testRealm) == nil {
		t.Fatal("an altered alert verified")
	}
}

func TestDecodeRefuses(t *testing.T) {
	r, k := sampleRecord(t)
	bad := []struct {
		name string
		mod  func(*record)
	}{
		{"unsorted capabilities", func(r *record) { r.Capabilities = []string{"game", "chat"} }},
		{"duplicate clusters", func(r *record) { r.Clusters = []string{"eu", "eu"} }},
		{"bad capability", func(r *record) { r.Capabilities = []string{"Game!"} }},
		{"bad name", func(r *record) { r.Name = "a b" }},
		{"incarnation 0", func(r *record) { r.Incarnation = 0 }},
		{"too many capabilities", func(r *record) {
			r.Capabilities = nil
			for i := 0; i <= MaxCapabilities; i++ {
				r.Capabilities = append(r.Capabilities, string(rune('a'+i/26))+string(rune('a'+i%26)))
			}
		}},
	}
	for _, c := range bad {
		x := *r
		c.mod(&x)
		if err := x.sign(testRealm, k); err != nil {
			t.Fatal(err)
		}
		if _, err := decodeRecord(x.encode()); err == nil {
			t.Errorf("%s: accepted", c.name)
		}
	}
	enc := r.encode()
	for _, in := range [][]byte{enc[:len(enc)-1], append(enc, 0), make([]byte, maxRecord+1)} {
		if _, err := decodeRecord(in); err == nil {
			t.Errorf("accepted %d bytes", len(in))
		}
	}
	// A non-minimal varint (the incarnation, as 0x80 0x00 ...).
	if _, err := decodeSummary(append(make([]byte, hashLen), 0x80, 0x00)); err == nil {
		t.Error("non-minimal varint accepted")
	}
}
