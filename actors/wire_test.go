package actors

import (
	"bytes"
	"errors"
	"testing"
)

func TestMsgRoundTrip(t *testing.T) {
	m := msgRequest{cast: true, capability: "game", kind: "player", id: "player_1", initArg: []byte(`{"l":1}`), payload: []byte("hi")}
	got, err := parseMsgRequest(appendMsgRequest(nil, &m))
	if err != nil || got.cast != m.cast || got.capability != m.capability || got.kind != m.kind || got.id != m.id ||
		!bytes.Equal(got.initArg, m.initArg) || !bytes.Equal(got.payload, m.payload) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	inc, reply, err := parseMsgReply(appendMsgReply(nil, 42, []byte("r")))
	if err != nil || inc != 42 || string(reply) != "r" {
		t.Fatalf("reply round trip: %d %q %v", inc, reply, err)
	}
	for _, bad := range [][]byte{nil, {2}, {1, 0, 9, 'g'}, {1, 0, 0, 0, 0xff, 0xff}} {
		if _, err := parseMsgRequest(bad); !errors.Is(err, errMalformed) {
			t.Fatalf("parse %x: %v", bad, err)
		}
	}
}

func TestHandoffRoundTrip(t *testing.T) {
	h := handoffRequest{final: true, capability: "game", shards: []int{0, 7, 4095},
		actors: []handoffActor{{kind: "counter", id: "a", snapshot: []byte{1, 2}}, {kind: "counter", id: "b", snapshot: []byte{}}}}
	got, err := parseHandoff(appendHandoff(nil, &h))
	if err != nil || !got.final || got.capability != "game" || len(got.shards) != 3 || got.shards[2] != 4095 ||
		len(got.actors) != 2 || got.actors[1].id != "b" || !bytes.Equal(got.actors[0].snapshot, []byte{1, 2}) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	// A shard out of range, a count the body cannot hold, trailing bytes.
	for _, bad := range [][]byte{
		{1, 1, 0, 0, 1, 0x10, 0x00},
		{1, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff},
		append(appendHandoff(nil, &h), 0),
	} {
		if _, err := parseHandoff(bad); !errors.Is(err, errMalformed) {
			t.Fatalf("parse %x: %v", bad, err)
		}
	}
}

func FuzzMsgRequest(f *testing.F) {
	f.Add(appendMsgRequest(nil, &msgRequest{capability: "game", kind: "k", id: "x", payload: []byte("p")}))
	f.Add(appendMsgRequest(nil, &msgRequest{cast: true, capability: "c", kind: "k", id: "id", initArg: []byte("a")}))
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseMsgRequest(b)
		if err != nil {
			return
		}
		if len(m.capability) > 255 || len(m.kind) > 255 || len(m.id) > 65535 {
			t.Fatal("field over its length")
		}
		again, err := parseMsgRequest(appendMsgRequest(nil, &m))
		if err != nil || again.id != m.id || again.cast != m.cast || !bytes.Equal(again.payload, m.payload) || !bytes.Equal(again.initArg, m.initArg) {
			t.Fatalf("re-encoding differs: %+v %v", again, err)
		}
	})
}

func FuzzHandoff(f *testing.F) {
	f.Add(appendHandoff(nil, &handoffRequest{final: true, capability: "game", shards: []int{1, 2}, actors: []handoffActor{{kind: "k", id: "i", snapshot: []byte("s")}}}))
	f.Add(appendHandoff(nil, &handoffRequest{capability: "x"}))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseHandoff(b)
		if err != nil {
			return
		}
		for _, s := range h.shards {
			if s < 0 || s >= 4096 {
				t.Fatalf("shard %d", s)
			}
		}
		again, err := parseHandoff(appendHandoff(nil, &h))
		if err != nil || len(again.actors) != len(h.actors) || len(again.shards) != len(h.shards) || again.final != h.final {
			t.Fatalf("re-encoding differs: %v", err)
		}
	})
}

func FuzzMsgReply(f *testing.F) {
	f.Add(appendMsgReply(nil, 7, []byte("x")))
	f.Fuzz(func(t *testing.T, b []byte) {
		inc, reply, err := parseMsgReply(b)
		if err != nil {
			return
		}
		inc2, reply2, err := parseMsgReply(appendMsgReply(nil, inc, reply))
		if err != nil || inc2 != inc || !bytes.Equal(reply, reply2) {
			t.Fatal("round trip")
		}
	})
}

func FuzzShards(f *testing.F) {
	f.Add(appendShards(nil, "game", []int{0, 17, 4095}))
	f.Add(appendShards(nil, "", nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, shards, err := parseShards(b)
		if err != nil {
			return
		}
		for _, s := range shards {
			if s < 0 || s >= 4096 {
				t.Fatalf("shard %d", s)
			}
		}
		c2, again, err := parseShards(appendShards(nil, c, shards))
		if err != nil || c2 != c || len(again) != len(shards) {
			t.Fatalf("round trip: %v", err)
		}
	})
}
