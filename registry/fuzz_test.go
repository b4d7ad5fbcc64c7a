package registry

import (
	"bytes"
	"slices"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/macula-io/macula/frame"
	"github.com/macula-io/macula/realm"
)

var fuzzPeer = func() peer.ID {
	p, err := peer.Decode("12D3KooWGRUVh7ZrSUAhD7MZJJkBZgAMuxVdRzLiGZDU7Cnuh1jy")
	if err != nil {
		panic(err)
	}
	return p
}()

// body strips a frame's header.
func body(t testing.TB, b []byte) []byte {
	_, p, rest, err := frame.Decode(b, 1<<30)
	if err != nil || len(rest) != 0 {
		t.Fatalf("frame: %v, %d left", err, len(rest))
	}
	return p
}

// FuzzDecodeClusters checks hello and clusters frames: what decodes
// re-encodes to the same bytes, and names are valid clusters.
func FuzzDecodeClusters(f *testing.F) {
	f.Add(body(f, appendHello(nil, []string{"game", "chat"})))
	f.Add(body(f, appendClusters(nil, clustersLeave, []string{"x"})))
	f.Add([]byte{0})
	f.Add([]byte{1, 1, 0})
	f.Add([]byte{2, 0x80, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		if cl, err := decodeHello(b); err == nil {
			for _, c := range cl {
				if c == "" || checkCluster(c) != nil {
					t.Fatalf("accepted cluster %q", c)
				}
			}
			if again := body(t, appendHello(nil, cl)); !bytes.Equal(again, b) {
				t.Fatalf("hello re-encodes differently: %x vs %x", again, b)
			}
		}
		if op, cl, err := decodeClusters(b); err == nil {
			if again := body(t, appendClusters(nil, op, cl)); !bytes.Equal(again, b) {
				t.Fatalf("clusters re-encodes differently")
			}
		}
	})
}

// FuzzDecodeDigest checks digests the same way.
func FuzzDecodeDigest(f *testing.F) {
	f.Add(body(f, appendDigest(nil, digest{cluster: "game", resync: true, streams: []digestEntry{{fuzzPeer, 5, 7}}})))
	f.Add(body(f, appendDigest(nil, digest{})))
	f.Add([]byte{0, 0, 0xff, 0xff, 0x03})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := decodeDigest(b)
		if err != nil {
			return
		}
		if again := body(t, appendDigest(nil, d)); !bytes.Equal(again, b) {
			t.Fatalf("digest re-encodes differently: %x vs %x", again, b)
		}
	})
}

// FuzzDecodeDelta checks deltas: no read out of bounds, the invariants
// the appliers rely on, and a round trip.
func FuzzDecodeDelta(f *testing.F) {
	kr := newKeyRules(testRealm)
	d := delta{cluster: "game", origin: fuzzPeer, epoch: 9, from: 3, to: 10, flags: flagMore}
	items := []item{
		{op: itemPut, kind: kindName, key: "user/1", proc: 4, ver: 5, since: 77, meta: []byte(`{"a":1}`)},
		{op: itemDel, kind: kindMember, key: "room/1", proc: 4, ver: 10, reason: ReasonLeft, detail: "x"},
	}
	f.Add(body(f, appendDelta(nil, &d, items)))
	full := delta{origin: fuzzPeer, epoch: 1, to: 5, flags: flagFull}
	f.Add(body(f, appendDelta(nil, &full, items[:1])))
	f.Add([]byte{0, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := decodeDelta(b, &kr, maxMetaSizeLimit)
		if err != nil {
			return
		}
		if d.from > d.to || d.flags&^(flagFull|flagMore) != 0 || (d.flags&flagFull != 0 && d.from != 0) {
			t.Fatalf("header %+v", d)
		}
		for _, it := range d.items {
			switch {
			case it.ver == 0 || it.ver > d.to || it.proc == 0:
				t.Fatalf("item %+v", it)
			case it.kind != kindName && it.kind != kindMember:
				t.Fatalf("kind %d", it.kind)
			case kr.checkKey(it.key) != nil:
				t.Fatalf("key %q", it.key)
			case len(it.meta) > maxMetaSizeLimit:
				t.Fatalf("meta of %d", len(it.meta))
			case d.flags&flagFull != 0 && it.op == itemDel:
				t.Fatal("a removal in a full delta")
			}
		}
		if again := body(t, appendDelta(nil, &d, d.items)); !bytes.Equal(again, b) {
			t.Fatalf("delta re-encodes differently")
		}
	})
}

// FuzzDecodeSend checks send frames.
func FuzzDecodeSend(f *testing.F) {
	kr := newKeyRules(testRealm)
	f.Add(body(f, appendSend(nil, &sendMsg{targets: []uint64{1, 1 << 40}, from: 3, cluster: "game", key: "room/", payload: []byte("hi")})))
	f.Add(body(f, appendSend(nil, &sendMsg{targets: []uint64{1}})))
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeSend(b, &kr, 1<<20)
		if err != nil {
			return
		}
		if len(m.targets) == 0 || slices.Contains(m.targets, 0) || len(m.payload) > 1<<20 {
			t.Fatalf("message %+v", m)
		}
		if again := body(t, appendSend(nil, &m)); !bytes.Equal(again, b) {
			t.Fatalf("send re-encodes differently")
		}
	})
}

// FuzzKeys checks the key rules against the realm's name rules: a key the
// registry accepts maps to a topic of the realm, its prefixes are valid
// prefixes, and its UCAN pattern matches it.
func FuzzKeys(f *testing.F) {
	kr := newKeyRules(testRealm)
	for _, s := range []string{"user/1", "chat/room/42", "a/", "", "a//b", "x y", "A/b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		if kr.checkKey(key) != nil {
			return
		}
		res := Resource(testRealm, key)
		if realm.ValidateTopic(testRealm, res) != nil || !realm.Match(ResourcePattern(testRealm, ""), res) || !realm.Match(ResourcePattern(testRealm, key), res) {
			t.Fatalf("resource %q of %q", res, key)
		}
		prefixesOf(key, func(p string) {
			if isPrefix, err := kr.checkQuery(p); err != nil || !isPrefix {
				t.Fatalf("prefix %q of %q: %v", p, key, err)
			}
			if !realm.Match(ResourcePattern(testRealm, p), res) {
				t.Fatalf("the pattern of prefix %q does not match %q", p, res)
			}
		})
		if _, err := kr.checkQuery(key); err != nil {
			t.Fatalf("query %q: %v", key, err)
		}
	})
}
