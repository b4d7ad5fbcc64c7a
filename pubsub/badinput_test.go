package pubsub

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/macula-io/macula/frame"
	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/realm"
)

func TestPublishAndSubscribeRefuseBadInput(t *testing.T) {
	n := newNode(t, func(c *Config) { c.MaxMessageSize = 100 })
	ctx := context.Background()
	for _, tc := range []struct {
		topic string
		want  error
	}{
		{"", realm.ErrInvalid},
		{"io.acme.orders", realm.ErrOutsideRealm},
		{"io.acme.orders.*", realm.ErrInvalid},
		{"io.acme.orders.>", realm.ErrInvalid},
		{"io.acme.orders..placed", realm.ErrInvalid},
		{"io.acme.orders.-placed", realm.ErrInvalid},
		{"IO.acme.orders.placed", realm.ErrOutsideRealm}, // the realm part is lowercase
		{"io.acme.orders.placed.", realm.ErrInvalid},
		{"io.other.placed", realm.ErrOutsideRealm},
		{"io.acme.ordersx.placed", realm.ErrOutsideRealm},
		{"io.acme.orders." + strings.Repeat("a", 300), realm.ErrInvalid},
	} {
		if err := n.ps.Publish(ctx, tc.topic, nil); !errors.Is(err, tc.want) {
			t.Errorf("Publish(%q) = %v, want %v", tc.topic, err, tc.want)
		}
	}
	if err := n.ps.Publish(ctx, "io.acme.orders.placed", make([]byte, 101)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("101-byte payload: %v", err)
	}
	if err := n.ps.Publish(ctx, "io.acme.orders.placed", make([]byte, 100)); err != nil {
		t.Errorf("100-byte payload: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := n.ps.Publish(cctx, "io.acme.orders.placed", nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}
	for _, p := range []string{"", "io.acme.*", "io.other.>", "io.acme.orders.>.x", "io.acme.orders.a*", "io.acme.orders..x"} {
		if _, err := n.ps.Subscribe(p, func(Message) {}); !errors.Is(err, realm.ErrInvalid) {
			t.Errorf("Subscribe(%q) = %v", p, err)
		}
		if _, _, err := n.ps.SubscribeChan(p, 1); !errors.Is(err, realm.ErrInvalid) {
			t.Errorf("SubscribeChan(%q) = %v", p, err)
		}
	}
	if _, err := n.ps.Subscribe("io.acme.orders.x", nil); err == nil {
		t.Error("Subscribe with a nil handler succeeded")
	}
	if st := n.ps.Stats(); st.Published != 1 || st.Subscriptions != 0 {
		t.Errorf("stats %+v", st)
	}
	n.ps.Close()
	if err := n.ps.Publish(ctx, "io.acme.orders.placed", nil); !errors.Is(err, ErrClosed) || !errors.Is(err, net.ErrClosed) {
		t.Errorf("Publish after Close: %v, want ErrClosed and net.ErrClosed", err)
	}
	if _, err := n.ps.Subscribe("io.acme.orders.x", func(Message) {}); !errors.Is(err, ErrClosed) {
		t.Errorf("Subscribe after Close: %v", err)
	}
}

// frameOf builds one raw frame.
func frameOf(typ, version uint8, body []byte) []byte { return frame.Append(nil, typ, version, body) }

// rawMessage builds the frames of one message at the start of a stream:
// its topic's definition, then the message.
func rawMessage(topic string, payload []byte) []byte {
	var e encoder
	return e.appendMessage(nil, 1, time.Now().UnixNano(), topic, payload)
}

// messageBody builds a message frame around a hand-made body.
func messageBody(parts ...[]byte) []byte {
	return frameOf(typeMessage, wireVersion, bytes.Join(parts, nil))
}

// TestBadFramesCloseOnlyThatStream sends malformed, truncated and oversized
// frames on raw streams to a subscriber node: each such stream is reset,
// and the node keeps serving a real publisher.
func TestBadFramesCloseOnlyThatStream(t *testing.T) {
	pub := newNode(t, nil)
	sub := newNode(t, func(c *Config) { c.MaxMessageSize = 1000 })
	connect(t, sub.h, pub.h)
	_, c := subscribe(t, sub.ps, "io.acme.orders.>")
	testnet.Eventually(t, 10*time.Second, func() error {
		if got := pub.ps.routablePeers(); got != 1 {
			return fmt.Errorf("the publisher's routable peers: have %v, want 1", got)
		}
		return nil
	})

	set := appendInterestSetFrames(nil, 1<<20, nil)
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	hugeHeader := frame.AppendHeader(nil, typeMessage, wireVersion, 1<<31)
	cases := []struct {
		name     string
		in       []byte
		closeOut bool // end our side after writing (for truncation)
	}{
		{"message before the interest set", rawMessage("io.acme.orders.placed", nil), false},
		{"unknown frame type", cat(set, frameOf(99, wireVersion, nil)), false},
		{"unknown version", cat(frameOf(typeInterestSet, 2, make([]byte, 4))), false},
		{"header announcing 2 GiB", cat(set, hugeHeader), false},
		{"frame over the limit", cat(set, frameOf(typeMessage, wireVersion, make([]byte, 70<<10))), false},
		{"truncated header", cat(set, hugeHeader[:3]), true},
		{"truncated body", cat(set, rawMessage("io.acme.orders.placed", []byte("abcdef"))[:20]), true},
		{"empty message", cat(set, messageBody()), false},
		{"message for an undefined topic", cat(set, messageBody([]byte{1, 2, 2})), false},
		{"message for topic id 0", cat(set, frameOf(typeTopic, wireVersion, []byte("io.acme.orders.x")), messageBody([]byte{0, 2, 2})), false},
		{"non-minimal varint", cat(set, frameOf(typeTopic, wireVersion, []byte("io.acme.orders.x")), messageBody([]byte{0x81, 0, 2, 2})), false},
		{"varint cut short", cat(set, frameOf(typeTopic, wireVersion, []byte("io.acme.orders.x")), messageBody([]byte{1, 0x80})), false},
		{"topic outside the realm", cat(set, rawMessage("io.other.placed", nil)), false},
		{"topic with a wildcard", cat(set, rawMessage("io.acme.orders.*", nil)), false},
		{"topic that is not a name", cat(set, rawMessage("io.acme.orders.\xff", nil)), false},
		{"empty topic", cat(set, frameOf(typeTopic, wireVersion, nil)), false},
		{"topic reset with a body", cat(set, frameOf(typeTopicReset, wireVersion, []byte{1})), false},
		{"more topics than the table holds", cat(set, tooManyTopics()), false},
		{"payload over MaxMessageSize", cat(set, rawMessage("io.acme.orders.placed", make([]byte, 2000))), false},
		{"interest set without its limit", frameOf(typeInterestSet, wireVersion, []byte{1, 2}), false},
		{"pattern of another realm", appendInterestSetFrames(nil, 1, []string{"io.other.>"}), false},
		{"pattern length 0", cat(set, frameOf(typeInterestAdd, wireVersion, []byte{0})), false},
		{"pattern cut short", cat(set, frameOf(typeInterestRemove, wireVersion, []byte{10, 'i', 'o'})), false},
		{"garbage", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rp := newRawPeer(t)
			s := rp.open(t, sub, tc.in)
			defer s.Reset()
			if tc.closeOut {
				_ = s.CloseWrite()
			}
			_ = s.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err := s.Read(make([]byte, 1))
			if err == nil || errors.Is(err, io.EOF) || strings.Contains(err.Error(), "deadline") {
				t.Fatalf("the node did not reset the stream: read = %v", err)
			}
		})
	}
	// A valid stream with a frame of every kind is served.
	rp := newRawPeer(t)
	good := cat(set,
		appendInterestFrames(nil, typeInterestAdd, []string{"io.acme.orders.x"}),
		appendInterestFrames(nil, typeInterestRemove, []string{"io.acme.orders.x"}),
		rawMessage("io.acme.orders.raw", []byte("raw")))
	s := rp.open(t, sub, good)
	defer s.Reset()
	c.waitLen(t, 5*time.Second, 1)

	// The node still serves its real publisher.
	for i := 0; i < 10; i++ {
		publish(t, pub.ps, "io.acme.orders.placed", []byte(fmt.Sprint(i)))
	}
	c.waitLen(t, 5*time.Second, 11)
	if m := c.all()[0]; m.Topic != "io.acme.orders.raw" || string(m.Payload) != "raw" || m.PublisherPeer != rp.n.h.ID() {
		t.Fatalf("raw message = %+v", m)
	}
}

// tooManyTopics defines one topic more than a stream's table holds.
func tooManyTopics() []byte {
	var b []byte
	for i := 0; i <= maxStreamTopics; i++ {
		b = frame.Append(b, typeTopic, wireVersion, []byte(fmt.Sprintf("io.acme.orders.t%d", i)))
	}
	return b
}

func TestConfig(t *testing.T) {
	got, err := Config{Realm: testRealm}.validate()
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig(testRealm)
	got.Logger = nil
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("defaults = %+v, want %+v", got, want)
	}
	big, err := Config{Realm: testRealm, MaxMessageSize: 32 << 20}.validate()
	if err != nil || big.PeerQueueBytes < 4*(32<<20) {
		t.Fatalf("PeerQueueBytes for 32 MiB messages = %d, %v", big.PeerQueueBytes, err)
	}
	for _, tc := range []struct {
		cfg   Config
		field string
	}{
		{Config{}, "Realm"},
		{Config{Realm: "acme"}, "Realm"},
		{Config{Realm: testRealm, MaxMessageSize: -1}, "MaxMessageSize"},
		{Config{Realm: testRealm, MaxMessageSize: 65<<20 + 1}, "MaxMessageSize"},
		{Config{Realm: testRealm, PeerQueue: -5}, "PeerQueue"},
		{Config{Realm: testRealm, PeerQueueBytes: 1000}, "PeerQueueBytes"},
		{Config{Realm: testRealm, SubscriptionBuffer: -1}, "SubscriptionBuffer"},
		{Config{Realm: testRealm, InterestRefresh: time.Millisecond}, "InterestRefresh"},
		{Config{Realm: testRealm, InterestRefresh: -time.Second}, "InterestRefresh"},
	} {
		_, err := tc.cfg.validate()
		if err == nil || !strings.Contains(err.Error(), "Config."+tc.field) {
			t.Errorf("validate(%+v) = %v, want an error naming %s", tc.cfg, err, tc.field)
		}
	}
	h := newHost(t)
	if _, err := New(h, nil, nil, Config{Realm: testRealm}); err == nil {
		t.Error("New without a router succeeded")
	}
	if _, err := New(nil, nil, nil, Config{Realm: testRealm}); err == nil {
		t.Error("New without a host succeeded")
	}
}

// TestInterestKeys: every pattern's key is among the keys a publisher of a
// topic it matches looks up.
func TestInterestKeys(t *testing.T) {
	for _, tc := range []struct{ pattern, key string }{
		{"io.acme.orders.placed", "pubsub:io.acme.orders.placed"},
		{"io.acme.orders.*", "pubsub:io.acme.orders"},
		{"io.acme.orders.>", "pubsub:io.acme.orders"},
		{"io.acme.orders.eu.>", "pubsub:io.acme.orders.eu"},
		{"io.acme.orders.eu.*.placed", "pubsub:io.acme.orders.eu"},
		{"io.acme.>", "pubsub:io.acme.orders"},
		{">", "pubsub:io.acme.orders"},
		{"*.acme.orders.placed", "pubsub:io.acme.orders.placed"},
		{"*.*.*.*", "pubsub:io.acme.orders"},
		{"io.*.orders.x.>", "pubsub:io.acme.orders.x"},
		// Case-sensitive segments keep their case in the key: AB12 and
		// ab12 are two topics with two keys.
		{"io.acme.orders.AB12.>", "pubsub:io.acme.orders.AB12"},
		{"*.acme.orders.AB12.*", "pubsub:io.acme.orders.AB12"},
	} {
		if err := realm.ValidatePattern(testRealm, tc.pattern); err != nil {
			t.Fatal(err)
		}
		if got := interestKey(testRealm, tc.pattern); got != tc.key {
			t.Errorf("interestKey(%q) = %q, want %q", tc.pattern, got, tc.key)
		}
	}
	if got := topicKeys(testRealm, "io.acme.orders.AB12.t"); !slices.Contains(got, "pubsub:io.acme.orders.AB12") || slices.Contains(got, "pubsub:io.acme.orders.ab12") {
		t.Errorf("topicKeys of an upper-case topic = %q", got)
	}
	got := topicKeys(testRealm, "io.acme.orders.eu.de")
	want := []string{"pubsub:io.acme.orders", "pubsub:io.acme.orders.eu", "pubsub:io.acme.orders.eu.de"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("topicKeys = %q, want %q", got, want)
	}
}

func TestWireRoundTrip(t *testing.T) {
	// Messages on a stream: topics are defined once, ids are reused, the
	// table resets when full, and seq and time are deltas.
	var enc encoder
	type msg struct {
		topic string
		seq   uint64
		nanos int64
		body  string
	}
	var sent []msg
	for i := 0; i < 3*maxStreamTopics; i++ {
		m := msg{fmt.Sprintf("io.acme.orders.t%d", i%(maxStreamTopics+7)), uint64(1000 - i), int64(i * i), fmt.Sprint(i)}
		if i%3 == 0 {
			m.topic = "io.acme.orders.hot"
		}
		sent = append(sent, m)
	}
	var b []byte
	for _, m := range sent {
		b = enc.appendMessage(b, m.seq, m.nanos, m.topic, []byte(m.body))
	}
	var (
		topics []string
		prev   streamState
		got    []msg
		resets int
	)
	for len(b) > 0 {
		h, body, rest, err := frame.Decode(b, minFrameLimit)
		if err != nil || h.Version != wireVersion {
			t.Fatal(h, err)
		}
		b = rest
		switch h.Type {
		case typeTopic:
			topics = append(topics, string(body))
		case typeTopicReset:
			topics = topics[:0]
			resets++
		case typeMessage:
			m, err := decodeMessage(body, &prev)
			if err != nil || int(m.id) > len(topics) {
				t.Fatalf("message %d: %+v %v", len(got), m, err)
			}
			got = append(got, msg{topics[m.id-1], m.seq, m.nanos, string(m.payload)})
		default:
			t.Fatalf("frame type %d", h.Type)
		}
		if len(topics) > maxStreamTopics {
			t.Fatalf("%d topics defined", len(topics))
		}
	}
	if !slices.Equal(got, sent) || resets == 0 {
		t.Fatalf("round trip differs (%d messages, %d resets)", len(got), resets)
	}
	// A repeated topic costs a few bytes beyond the payload.
	var e2 encoder
	first := len(e2.appendMessage(nil, 1, 1, "io.acme.orders.placed", make([]byte, 128)))
	second := len(e2.appendMessage(nil, 2, 1500, "io.acme.orders.placed", make([]byte, 128)))
	// First: the topic frame, then id, seq delta and time delta of one
	// byte each. Second: the time delta (1499 ns) takes two bytes.
	if first != 2*frame.HeaderLen+len("io.acme.orders.placed")+3+128 || second != frame.HeaderLen+4+128 {
		t.Fatalf("frames of %d and %d bytes", first, second)
	}

	// A big interest set is split into a set frame and add frames.
	var pats []string
	for i := 0; i < 2000; i++ {
		pats = append(pats, fmt.Sprintf("io.acme.orders.topic-number-%d.>", i))
	}
	b = appendInterestSetFrames(nil, 777, pats)
	var all []string
	for first := true; len(b) > 0; first = false {
		h, body, rest, err := frame.Decode(b, minFrameLimit)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		if first {
			if h.Type != typeInterestSet {
				t.Fatalf("first frame type %d", h.Type)
			}
			var limit uint32
			limit, got, err = decodeInterestSet(body)
			if limit != 777 {
				t.Fatalf("limit %d", limit)
			}
		} else {
			if h.Type != typeInterestAdd {
				t.Fatalf("frame type %d", h.Type)
			}
			got, err = decodePatterns(body)
		}
		if err != nil || len(body) > interestChunk+4 {
			t.Fatalf("%v, body %d bytes", err, len(body))
		}
		all = append(all, got...)
		b = rest
	}
	if fmt.Sprint(all) != fmt.Sprint(pats) {
		t.Fatal("patterns differ after the round trip")
	}
	if _, _, err := decodeInterestSet(binary.BigEndian.AppendUint32(nil, 1)); err != nil {
		t.Fatalf("empty set: %v", err)
	}
}
