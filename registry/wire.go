package registry

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/macula-io/macula/frame"
)

// Frame types of the registry protocol. WARNING: append only; the numbers
// are part of the protocol.
const (
	typeHello    uint8 = 1
	typeClusters uint8 = 2
	typeDigest   uint8 = 3
	typeDelta    uint8 = 4
	typeSend     uint8 = 5
	typeBye      uint8 = 6
)

// wireVersion is the body encoding of every frame type above.
const wireVersion = 1

// Limits of the wire.
const (
	// maxClusters bounds the clusters a node announces.
	maxClusters = 1024
	// maxDigest bounds the streams of one digest (nodes of a cluster).
	maxDigest = 1 << 16
	// maxItems bounds the items of one delta frame.
	maxItems = 1 << 16
	// maxTargets bounds the processes one send frame addresses.
	maxTargets = 1 << 20
	// chunkBytes is the size at which a sender starts a new delta frame.
	chunkBytes = 256 << 10
	// minFrameLimit is the least frame limit of a reader: one delta item
	// with the largest metadata fits, and so does a digest.
	minFrameLimit = 1 << 20
)

var errMalformed = errors.New("registry: malformed frame")

// Delta flags.
const (
	flagFull = 1 // the items are the stream's whole state at To
	flagMore = 2 // more frames of this delta follow
)

// Item ops.
const (
	itemPut = 1
	itemDel = 2
)

// clustersOp of a clusters frame.
const (
	clustersJoin  = 1
	clustersLeave = 2
)

// item is one change in a delta: an entry's current state, or its
// removal.
type item struct {
	op     uint8
	kind   kind
	key    string
	proc   uint64
	ver    uint64
	since  Stamp  // put
	meta   []byte // put; aliases the frame
	reason Reason // del
	detail string // del
}

// delta is a decoded delta frame.
type delta struct {
	cluster  string
	origin   peer.ID
	epoch    uint64
	from, to uint64
	flags    uint8
	items    []item
}

// digestEntry is what a node holds of one stream.
type digestEntry struct {
	origin peer.ID
	epoch  uint64
	ver    uint64
}

// digest is a decoded digest frame. Resync asks the receiver to send
// everything the digest shows missing, even what it thinks is on its way.
type digest struct {
	cluster string
	resync  bool
	streams []digestEntry
}

// sendMsg is a decoded send frame: a message for processes of the
// receiver. Payload aliases the frame.
type sendMsg struct {
	targets []uint64
	from    uint64 // the sending process on the sender's node; 0 for none
	cluster string
	key     string // the dispatch key; "" for a Send
	payload []byte
}

// --- primitives ----------------------------------------------------------

func appendStr8(b []byte, s string) []byte { return append(append(b, byte(len(s))), s...) }

func appendBytes(b []byte, p []byte) []byte {
	return append(binary.AppendUvarint(b, uint64(len(p))), p...)
}

// reader decodes a body; the first error sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: "+format, append([]any{errMalformed}, args...)...)
	}
}

func (r *reader) byte1() uint8 {
	if r.err != nil {
		return 0
	}
	if len(r.b) < 1 {
		r.fail("truncated")
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

// uvarint reads a minimally encoded uvarint.
func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	x, n := binary.Uvarint(r.b)
	if n <= 0 || n != (bits.Len64(x|1)+6)/7 {
		r.fail("bad varint")
		return 0
	}
	r.b = r.b[n:]
	return x
}

func (r *reader) str8() string {
	n := int(r.byte1())
	if r.err != nil {
		return ""
	}
	if len(r.b) < n {
		r.fail("string of %d bytes cut short", n)
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// bytesN reads a uvarint-prefixed byte string of at most max bytes; the
// result aliases the body.
func (r *reader) bytesN(max int) []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(max) || n > uint64(len(r.b)) {
		r.fail("byte string of %d bytes (limit %d, %d left)", n, max, len(r.b))
		return nil
	}
	p := r.b[:n:n]
	r.b = r.b[n:]
	return p
}

func (r *reader) peerID() peer.ID {
	s := r.str8()
	if r.err != nil {
		return ""
	}
	id, err := peer.IDFromBytes([]byte(s))
	if err != nil {
		r.fail("bad peer ID: %v", err)
		return ""
	}
	return id
}

// count reads a count and checks it against max and against the bytes
// left (each element takes at least min bytes), before anything is
// allocated for it.
func (r *reader) count(max, min int) int {
	n := r.uvarint()
	if r.err != nil {
		return 0
	}
	if n > uint64(max) || n*uint64(min) > uint64(len(r.b)) {
		r.fail("count %d over the limit or the frame", n)
		return 0
	}
	return int(n)
}

func (r *reader) end() error {
	if r.err == nil && len(r.b) != 0 {
		r.fail("%d trailing bytes", len(r.b))
	}
	return r.err
}

// --- hello and clusters ---------------------------------------------------

func appendClusterList(b []byte, clusters []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(clusters)))
	for _, c := range clusters {
		b = appendStr8(b, c)
	}
	return b
}

func (r *reader) clusterList() []string {
	n := r.count(maxClusters, 2)
	out := make([]string, 0, n)
	for i := 0; i < n && r.err == nil; i++ {
		c := r.str8()
		if r.err == nil {
			if c == "" {
				r.fail("the default cluster in a cluster list")
			} else if err := checkCluster(c); err != nil {
				r.fail("%v", err)
			}
		}
		out = append(out, c)
	}
	return out
}

// appendHello appends a hello frame: the sender's named clusters.
func appendHello(dst []byte, clusters []string) []byte {
	return frame.Append(dst, typeHello, wireVersion, appendClusterList(nil, clusters))
}

func decodeHello(b []byte) ([]string, error) {
	r := reader{b: b}
	cl := r.clusterList()
	return cl, r.end()
}

// appendClusters appends a clusters frame: op join or leave, and names.
func appendClusters(dst []byte, op uint8, clusters []string) []byte {
	return frame.Append(dst, typeClusters, wireVersion, appendClusterList([]byte{op}, clusters))
}

func decodeClusters(b []byte) (op uint8, clusters []string, err error) {
	r := reader{b: b}
	op = r.byte1()
	if r.err == nil && op != clustersJoin && op != clustersLeave {
		r.fail("clusters op %d", op)
	}
	clusters = r.clusterList()
	return op, clusters, r.end()
}

// --- digest -------------------------------------------------------------

func appendDigest(dst []byte, d digest) []byte {
	body := appendStr8(nil, d.cluster)
	flag := byte(0)
	if d.resync {
		flag = 1
	}
	body = append(body, flag)
	body = binary.AppendUvarint(body, uint64(len(d.streams)))
	for _, s := range d.streams {
		body = appendStr8(body, string(s.origin))
		body = binary.AppendUvarint(body, s.epoch)
		body = binary.AppendUvarint(body, s.ver)
	}
	return frame.Append(dst, typeDigest, wireVersion, body)
}

func decodeDigest(b []byte) (digest, error) {
	r := reader{b: b}
	var d digest
	d.cluster = r.str8()
	if r.err == nil {
		if err := checkCluster(d.cluster); err != nil {
			r.fail("%v", err)
		}
	}
	switch f := r.byte1(); {
	case r.err != nil:
	case f > 1:
		r.fail("digest flags %d", f)
	default:
		d.resync = f == 1
	}
	n := r.count(maxDigest, 4)
	d.streams = make([]digestEntry, 0, n)
	for i := 0; i < n && r.err == nil; i++ {
		var s digestEntry
		s.origin = r.peerID()
		s.epoch = r.uvarint()
		s.ver = r.uvarint()
		d.streams = append(d.streams, s)
	}
	return d, r.end()
}

// --- delta --------------------------------------------------------------

// appendDeltaHeader appends the fixed part of a delta body.
func appendDeltaHeader(b []byte, d *delta, n int) []byte {
	b = appendStr8(b, d.cluster)
	b = appendStr8(b, string(d.origin))
	b = binary.AppendUvarint(b, d.epoch)
	b = binary.AppendUvarint(b, d.from)
	b = binary.AppendUvarint(b, d.to)
	b = append(b, d.flags)
	return binary.AppendUvarint(b, uint64(n))
}

func appendItem(b []byte, it *item) []byte {
	b = append(b, it.op, byte(it.kind))
	b = appendStr8(b, it.key)
	b = binary.AppendUvarint(b, it.proc)
	b = binary.AppendUvarint(b, it.ver)
	if it.op == itemPut {
		b = binary.AppendUvarint(b, uint64(it.since))
		return appendBytes(b, it.meta)
	}
	b = appendStr8(b, string(it.reason))
	return appendStr8(b, it.detail)
}

// itemSize is an upper bound of an item's encoding.
func itemSize(it *item) int {
	return 2 + 1 + len(it.key) + 4*binary.MaxVarintLen64 + len(it.meta) + 2 + len(it.reason) + len(it.detail)
}

// appendDelta appends a delta frame with the given items.
func appendDelta(dst []byte, d *delta, items []item) []byte {
	start := len(dst)
	dst = frame.AppendHeader(dst, typeDelta, wireVersion, 0)
	dst = appendDeltaHeader(dst, d, len(items))
	for i := range items {
		dst = appendItem(dst, &items[i])
	}
	binary.BigEndian.PutUint32(dst[start+2:], uint32(len(dst)-start-frame.HeaderLen))
	return dst
}

// decodeDelta decodes a delta body. kr checks the keys; maxMeta bounds
// metadata. Items alias the body.
func decodeDelta(b []byte, kr *keyRules, maxMeta int) (delta, error) {
	r := reader{b: b}
	var d delta
	d.cluster = r.str8()
	if r.err == nil {
		if err := checkCluster(d.cluster); err != nil {
			r.fail("%v", err)
		}
	}
	d.origin = r.peerID()
	d.epoch = r.uvarint()
	d.from = r.uvarint()
	d.to = r.uvarint()
	d.flags = r.byte1()
	if r.err == nil {
		switch {
		case d.flags&^(flagFull|flagMore) != 0:
			r.fail("delta flags %d", d.flags)
		case d.flags&flagFull != 0 && d.from != 0:
			r.fail("a full delta from %d", d.from)
		case d.from > d.to:
			r.fail("delta from %d to %d", d.from, d.to)
		}
	}
	n := r.count(maxItems, 6)
	d.items = make([]item, 0, n)
	for i := 0; i < n && r.err == nil; i++ {
		var it item
		it.op = r.byte1()
		it.kind = kind(r.byte1())
		it.key = r.str8()
		it.proc = r.uvarint()
		it.ver = r.uvarint()
		if r.err != nil {
			break
		}
		switch {
		case it.op != itemPut && it.op != itemDel:
			r.fail("item op %d", it.op)
		case it.kind != kindName && it.kind != kindMember:
			r.fail("item kind %d", it.kind)
		case it.proc == 0:
			r.fail("process number 0")
		case it.ver == 0 || it.ver > d.to:
			r.fail("item version %d outside (0, %d]", it.ver, d.to)
		}
		if r.err == nil {
			if err := kr.checkKey(it.key); err != nil {
				r.fail("%v", err)
			}
		}
		if it.op == itemPut {
			it.since = Stamp(r.uvarint())
			it.meta = r.bytesN(maxMeta)
		} else {
			it.reason = Reason(r.str8())
			it.detail = r.str8()
			if r.err == nil && (len(it.detail) > maxDetail || len(it.reason) > 32) {
				r.fail("removal reason of %d+%d bytes", len(it.reason), len(it.detail))
			}
		}
		if d.flags&flagFull != 0 && it.op == itemDel {
			r.fail("a removal in a full delta")
		}
		d.items = append(d.items, it)
	}
	return d, r.end()
}

// --- send ---------------------------------------------------------------

func appendSend(dst []byte, m *sendMsg) []byte {
	start := len(dst)
	dst = frame.AppendHeader(dst, typeSend, wireVersion, 0)
	dst = binary.AppendUvarint(dst, uint64(len(m.targets)))
	for _, t := range m.targets {
		dst = binary.AppendUvarint(dst, t)
	}
	dst = binary.AppendUvarint(dst, m.from)
	dst = appendStr8(dst, m.cluster)
	dst = appendStr8(dst, m.key)
	dst = append(dst, m.payload...)
	binary.BigEndian.PutUint32(dst[start+2:], uint32(len(dst)-start-frame.HeaderLen))
	return dst
}

// sendSize is an upper bound of a send frame's size.
func sendSize(m *sendMsg) int {
	return frame.HeaderLen + (len(m.targets)+2)*binary.MaxVarintLen64 + 2 + len(m.cluster) + len(m.key) + len(m.payload)
}

// decodeSend decodes a send body; kr checks the key (which may be a
// prefix). The payload aliases the body.
func decodeSend(b []byte, kr *keyRules, maxPayload int) (sendMsg, error) {
	r := reader{b: b}
	var m sendMsg
	n := r.count(maxTargets, 1)
	if r.err == nil && n == 0 {
		r.fail("no target")
	}
	m.targets = make([]uint64, 0, n)
	for i := 0; i < n && r.err == nil; i++ {
		t := r.uvarint()
		if r.err == nil && t == 0 {
			r.fail("process number 0")
		}
		m.targets = append(m.targets, t)
	}
	m.from = r.uvarint()
	m.cluster = r.str8()
	if r.err == nil {
		if err := checkCluster(m.cluster); err != nil {
			r.fail("%v", err)
		}
	}
	m.key = r.str8()
	if r.err == nil && m.key != "" {
		if _, err := kr.checkQuery(m.key); err != nil {
			r.fail("%v", err)
		}
	}
	if r.err == nil {
		if len(r.b) > maxPayload {
			r.fail("payload of %d bytes (limit %d)", len(r.b), maxPayload)
		}
		m.payload = r.b
		r.b = nil
	}
	return m, r.end()
}
