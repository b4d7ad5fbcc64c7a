package pubsub

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"slices"

	"github.com/macula-io/macula/frame"
	"github.com/macula-io/macula/realm"
)

// Frame types of the pubsub protocol. WARNING: append only; the numbers are
// part of the protocol.
const (
	typeInterestSet    uint8 = 1
	typeInterestAdd    uint8 = 2
	typeInterestRemove uint8 = 3
	typeMessage        uint8 = 4
	typeTopic          uint8 = 5
	typeTopicReset     uint8 = 6
)

// wireVersion is the body encoding of every frame type above.
const wireVersion = 1

// Sizes on the wire.
const (
	// msgMaxOverhead is the most a message frame adds to its payload: the
	// header, the topic id and the seq and time deltas.
	msgMaxOverhead = frame.HeaderLen + binary.MaxVarintLen32 + 2*binary.MaxVarintLen64
	// msgOverhead is the most that queueing a message can cost beyond its
	// payload: its frame, and the frames that define its topic on the
	// stream (a table reset and the topic).
	msgOverhead = msgMaxOverhead + 2*frame.HeaderLen + realm.MaxNameLen
	// interestChunk bounds the pattern bytes of one interest frame; a
	// bigger set goes out as one set frame and then add frames.
	interestChunk = 16 << 10
	// minFrameLimit is the smallest frame limit of any reader, so that an
	// interest frame (at most interestChunk plus a few bytes) always fits,
	// whatever the receiver's MaxMessageSize.
	minFrameLimit = 64 << 10
	// MaxPatterns bounds the distinct patterns a node announces and that it
	// accepts from one peer; a peer announcing more is disconnected.
	MaxPatterns = 10000
	// maxStreamTopics bounds the topic table of a stream. A sender whose
	// table is full resets it and starts over.
	maxStreamTopics = 4096
)

// streamState is what the next message frame on a stream is encoded
// against: the previous message's seq and time (zero at the start).
type streamState struct {
	seq   uint64
	nanos int64
}

// message is a decoded message frame body. The payload aliases the frame.
type message struct {
	id      uint32 // topic id on the stream, from 1
	seq     uint64
	nanos   int64
	payload []byte
}

// appendMessageBody appends a message body: topic id (uvarint), seq minus
// the previous message's seq (zigzag varint), time minus the previous
// message's time (zigzag varint, ns), payload. It advances st.
func appendMessageBody(dst []byte, st *streamState, id uint32, seq uint64, nanos int64, payload []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(id))
	dst = binary.AppendVarint(dst, int64(seq-st.seq))
	dst = binary.AppendVarint(dst, nanos-st.nanos)
	st.seq, st.nanos = seq, nanos
	return append(dst, payload...)
}

// decodeMessage decodes a message body against st and advances st. It
// refuses non-minimal varints, so that every body has one encoding, and a
// topic id of 0 or over maxStreamTopics; whether the id is defined on the
// stream is the caller's to check.
func decodeMessage(b []byte, st *streamState) (message, error) {
	id, n := readUvarint(b)
	if n <= 0 || id == 0 || id > maxStreamTopics {
		return message{}, fmt.Errorf("%w: bad topic id in a message of %d bytes", errMalformed, len(b))
	}
	b = b[n:]
	dseq, n := readVarint(b)
	if n <= 0 {
		return message{}, fmt.Errorf("%w: bad seq", errMalformed)
	}
	b = b[n:]
	dt, n := readVarint(b)
	if n <= 0 {
		return message{}, fmt.Errorf("%w: bad time", errMalformed)
	}
	m := message{id: uint32(id), seq: st.seq + uint64(dseq), nanos: st.nanos + dt, payload: b[n:]}
	st.seq, st.nanos = m.seq, m.nanos
	return m, nil
}

// readUvarint reads a minimally encoded uvarint: n is its length, or <= 0
// if b does not start with one.
func readUvarint(b []byte) (uint64, int) {
	x, n := binary.Uvarint(b)
	if n <= 0 || n != uvarintLen(x) {
		return 0, -1
	}
	return x, n
}

// readVarint reads a minimally encoded zigzag varint.
func readVarint(b []byte) (int64, int) {
	ux, n := readUvarint(b)
	x := int64(ux >> 1)
	if ux&1 != 0 {
		x = ^x
	}
	return x, n
}

func uvarintLen(x uint64) int { return (bits.Len64(x|1) + 6) / 7 }

// encoder writes the message frames of one stream: it keeps the stream's
// topic table (a topic goes out once, in a topic frame that gives it the
// next id, and messages carry the id) and the previous message's seq and
// time. The zero value is ready; it is not safe for concurrent use.
type encoder struct {
	topics    map[string]uint32
	lastTopic string // fast path: the topic of the previous message
	lastID    uint32
	prev      streamState
}

// appendMessage appends a message frame, preceded by the frames that
// define its topic on the stream if needed.
func (e *encoder) appendMessage(dst []byte, seq uint64, nanos int64, topic string, payload []byte) []byte {
	dst = slices.Grow(dst, msgOverhead+len(payload))
	var id uint32
	if e.lastID != 0 && topic == e.lastTopic {
		id = e.lastID
	} else {
		dst, id = e.define(dst, topic)
		e.lastTopic, e.lastID = topic, id
	}
	start := len(dst)
	dst = frame.AppendHeader(dst, typeMessage, wireVersion, 0)
	dst = appendMessageBody(dst, &e.prev, id, seq, nanos, payload)
	binary.BigEndian.PutUint32(dst[start+2:], uint32(len(dst)-start-frame.HeaderLen))
	return dst
}

// define returns the id of topic, appending the frames that define it if
// it has none yet.
func (e *encoder) define(dst []byte, topic string) ([]byte, uint32) {
	if id, ok := e.topics[topic]; ok {
		return dst, id
	}
	if e.topics == nil {
		e.topics = make(map[string]uint32)
	}
	if len(e.topics) >= maxStreamTopics {
		dst = frame.Append(dst, typeTopicReset, wireVersion, nil)
		clear(e.topics)
	}
	id := uint32(len(e.topics) + 1)
	e.topics[topic] = id
	dst = frame.AppendHeader(dst, typeTopic, wireVersion, len(topic))
	return append(dst, topic...), id
}

// appendInterestSetFrames appends the frames that announce a whole interest
// set: one set frame (limit, then as many patterns as fit in interestChunk),
// then add frames for the rest. limit is the largest payload the sender
// accepts.
func appendInterestSetFrames(dst []byte, limit uint32, patterns []string) []byte {
	i := 0
	body := binary.BigEndian.AppendUint32(nil, limit)
	body, i = appendPatternChunk(body, patterns, i)
	dst = frame.Append(dst, typeInterestSet, wireVersion, body)
	for i < len(patterns) {
		body, i = appendPatternChunk(body[:0], patterns, i)
		dst = frame.Append(dst, typeInterestAdd, wireVersion, body)
	}
	return dst
}

// appendInterestFrames appends add or remove frames for patterns.
func appendInterestFrames(dst []byte, typ uint8, patterns []string) []byte {
	var body []byte
	for i := 0; i < len(patterns); {
		body, i = appendPatternChunk(body[:0], patterns, i)
		dst = frame.Append(dst, typ, wireVersion, body)
	}
	return dst
}

// appendPatternChunk appends patterns from i on, each as length | bytes,
// until the chunk is full, and returns where it stopped. It always takes at
// least one pattern.
func appendPatternChunk(dst []byte, patterns []string, i int) ([]byte, int) {
	start := len(dst)
	for ; i < len(patterns); i++ {
		p := patterns[i]
		if len(dst) > start && len(dst)-start+1+len(p) > interestChunk {
			break
		}
		dst = append(dst, byte(len(p)))
		dst = append(dst, p...)
	}
	return dst, i
}

// decodeInterestSet splits a set body into the sender's payload limit and
// its patterns.
func decodeInterestSet(b []byte) (limit uint32, patterns []string, err error) {
	if len(b) < 4 {
		return 0, nil, fmt.Errorf("%w: interest set of %d bytes", errMalformed, len(b))
	}
	patterns, err = decodePatterns(b[4:])
	return binary.BigEndian.Uint32(b), patterns, err
}

// decodePatterns decodes a sequence of length-prefixed patterns. It checks
// lengths only; the caller validates each pattern against the realm.
func decodePatterns(b []byte) ([]string, error) {
	var out []string
	for len(b) > 0 {
		n := int(b[0])
		if n == 0 || n > realm.MaxNameLen {
			return nil, fmt.Errorf("%w: pattern length %d", errMalformed, n)
		}
		if len(b) < 1+n {
			return nil, fmt.Errorf("%w: pattern of %d bytes cut short", errMalformed, n)
		}
		out = append(out, string(b[1:1+n]))
		b = b[1+n:]
	}
	return out, nil
}
