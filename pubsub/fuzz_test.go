package pubsub

import (
	"bytes"
	"slices"
	"strconv"
	"testing"

	"github.com/macula-io/macula/frame"
	"github.com/macula-io/macula/realm"
)

// FuzzDecodeMessage checks that the message decoder never reads out of
// bounds, that what it accepts re-encodes to the same bytes against the
// same stream state, and that a frame built from any fields decodes back
// to them.
func FuzzDecodeMessage(f *testing.F) {
	body := func(prev streamState, id uint32, seq uint64, nanos int64, payload []byte) []byte {
		return appendMessageBody(nil, &prev, id, seq, nanos, payload)
	}
	f.Add(body(streamState{}, 1, 1, 2, []byte("hello")), uint64(0), int64(0))
	f.Add(body(streamState{5, 100}, 4096, 1<<63, -1, nil), uint64(5), int64(100))
	f.Add([]byte{}, uint64(0), int64(0))
	f.Add([]byte{0x81, 0, 0, 0}, uint64(0), int64(0))
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0}, uint64(7), int64(-7))
	f.Fuzz(func(t *testing.T, b []byte, seq uint64, nanos int64) {
		prev := streamState{seq, nanos}
		st := prev
		m, err := decodeMessage(b, &st)
		if err == nil {
			if m.id == 0 || m.id > maxStreamTopics {
				t.Fatalf("accepted topic id %d", m.id)
			}
			if st != (streamState{m.seq, m.nanos}) {
				t.Fatalf("state %+v after %+v", st, m)
			}
			again := appendMessageBody(nil, &prev, m.id, m.seq, m.nanos, m.payload)
			if !bytes.Equal(again, b) {
				t.Fatalf("re-encoding differs: %x vs %x", again, b)
			}
		} else if st != prev {
			t.Fatal("a failed decode changed the stream state")
		}
		// Use the input as fields, and check a round trip through whole
		// frames on a stream: two messages, the second on the same topic.
		var e encoder
		e.prev = streamState{seq, nanos}
		topic := "io.acme.orders." + strconv.Itoa(len(b))
		fb := e.appendMessage(nil, seq^uint64(len(b)), nanos+int64(len(b)), topic, b)
		fb = e.appendMessage(fb, seq, nanos, topic, nil)
		d := streamState{seq, nanos}
		var topics []string
		var got []message
		for len(fb) > 0 {
			h, body, rest, err := frame.Decode(fb, uint32(len(fb)))
			if err != nil {
				t.Fatal(err)
			}
			fb = rest
			switch h.Type {
			case typeTopic:
				topics = append(topics, string(body))
			case typeMessage:
				m, err := decodeMessage(body, &d)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, m)
			default:
				t.Fatalf("frame type %d", h.Type)
			}
		}
		if !slices.Equal(topics, []string{topic}) || len(got) != 2 {
			t.Fatalf("topics %q, %d messages", topics, len(got))
		}
		if got[0].id != 1 || got[0].seq != seq^uint64(len(b)) || got[0].nanos != nanos+int64(len(b)) || !bytes.Equal(got[0].payload, b) {
			t.Fatalf("first message %+v", got[0])
		}
		if got[1].id != 1 || got[1].seq != seq || got[1].nanos != nanos || len(got[1].payload) != 0 {
			t.Fatalf("second message %+v", got[1])
		}
	})
}

// FuzzDecodeInterest checks the interest decoders the same way.
func FuzzDecodeInterest(f *testing.F) {
	f.Add(appendInterestSetFrames(nil, 1<<20, []string{"io.acme.orders.*", "io.acme.>"})[frame.HeaderLen:])
	f.Add([]byte{0, 0, 0, 1})
	f.Add([]byte{0, 0, 0, 1, 3, 'a', 'b'})
	f.Add([]byte{0, 0, 0, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		limit, pats, err := decodeInterestSet(b)
		if err != nil {
			return
		}
		for _, p := range pats {
			if len(p) == 0 || len(p) > realm.MaxNameLen {
				t.Fatalf("accepted a pattern of %d bytes", len(p))
			}
		}
		fb := appendInterestSetFrames(nil, limit, pats)
		// Small sets fit one frame and re-encode to the input.
		if len(b) <= interestChunk {
			if !bytes.Equal(fb[frame.HeaderLen:], b) {
				t.Fatalf("re-encoding differs")
			}
		}
		var got []string
		for first := true; len(fb) > 0; first = false {
			_, body, rest, err := frame.Decode(fb, minFrameLimit)
			if err != nil {
				t.Fatal(err)
			}
			var ps []string
			if first {
				var l uint32
				l, ps, err = decodeInterestSet(body)
				if l != limit {
					t.Fatalf("limit %d, want %d", l, limit)
				}
			} else {
				ps, err = decodePatterns(body)
			}
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, ps...)
			fb = rest
		}
		if !slices.Equal(got, pats) {
			t.Fatalf("round trip %q, want %q", got, pats)
		}
	})
}

// FuzzInterestKeys checks the DHT key design against the matcher: for any
// valid pattern and concrete topic of the realm that it matches, the
// pattern's key is one of the topic's keys.
func FuzzInterestKeys(f *testing.F) {
	f.Add("io.acme.orders.*", "io.acme.orders.placed")
	f.Add("io.acme.>", "io.acme.orders.eu.de")
	f.Add("*.acme.*.x.>", "io.acme.orders.x.y")
	f.Add(">", "io.acme.orders.a")
	f.Add("io.acme.orders.AB12.*", "io.acme.orders.AB12.telemetry")
	f.Fuzz(func(t *testing.T, pattern, topic string) {
		if realm.ValidatePattern(testRealm, pattern) != nil || realm.ValidateTopic(testRealm, topic) != nil {
			return
		}
		key := interestKey(testRealm, pattern)
		keys := topicKeys(testRealm, topic)
		if len(keys) == 0 || keys[0] != keyPrefix+testRealm || keys[len(keys)-1] != keyPrefix+topic {
			t.Fatalf("topicKeys(%q) = %q", topic, keys)
		}
		if !realm.Match(pattern, topic) {
			return
		}
		if !slices.Contains(keys, key) {
			t.Fatalf("pattern %q (key %q) matches %q, whose keys are %q", pattern, key, topic, keys)
		}
	})
}
