package actors

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unsafe"
)

// The actors protocol runs on rpc's internal procedures (rpc.Handle,
// rpc.CallPeer), so its messages share the long-lived stream of each pair of
// nodes with rpc calls. Bodies (all integers big endian):
//
//	message request  (procMessage): version 1 | flags uint8 (bit 0: cast) |
//	                  capability len uint8 | capability | kind len uint8 | kind |
//	                  id len uint16 | id | init arg len uint32 | init arg | payload (the rest)
//	message reply:    version 1 | incarnation uint64 | reply (the rest)
//	handoff request  (procHandoff): version 1 | flags uint8 (bit 0: final) |
//	                  capability len uint8 | capability | shard count uint16 | shards (uint16 each) |
//	                  actor count uint32 | actors: kind len uint8 | kind | id len uint16 | id |
//	                  snapshot len uint32 | snapshot
//	handoff reply:    empty
//	query request and reply (procQuery): version 1 | capability len uint8 | capability |
//	                  shard count uint16 | shards (uint16 each): the shards asked about, and
//	                  those of them the answering node still holds
//
// Errors travel as rpc remote errors with the codes in errors.go; a node that
// does not own the shard answers codeWrongOwner with the owner it knows
// (its peer ID's bytes) as the error's data. A decoder refuses any length
// that runs past the body, and a version it does not know.
const (
	procMessage = "/macula/actors/msg/1"
	procHandoff = "/macula/actors/handoff/1"
	procQuery   = "/macula/actors/query/1"

	wireVersion = 1

	flagCast  = 1 << 0
	flagFinal = 1 << 0

	// msgOverhead bounds the bytes a message request adds to its id,
	// payload and init argument.
	msgOverhead = 1 + 1 + 1 + 63 + 1 + 63 + 2 + 4
)

var errMalformed = errors.New("actors: malformed message")

type msgRequest struct {
	cast       bool
	capability string
	kind       string
	id         string
	initArg    []byte
	payload    []byte
}

func appendMsgRequest(b []byte, m *msgRequest) []byte {
	var flags byte
	if m.cast {
		flags |= flagCast
	}
	b = append(b, wireVersion, flags, byte(len(m.capability)))
	b = append(b, m.capability...)
	b = append(b, byte(len(m.kind)))
	b = append(b, m.kind...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.id)))
	b = append(b, m.id...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(m.initArg)))
	b = append(b, m.initArg...)
	return append(b, m.payload...)
}

// reader walks a body; the first error sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", errMalformed, what)
	}
}

func (r *reader) bytes(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.fail(what + " runs past the end")
		return nil
	}
	out := r.b[:n:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) u8(what string) int {
	b := r.bytes(1, what)
	if b == nil {
		return 0
	}
	return int(b[0])
}

func (r *reader) u16(what string) int {
	b := r.bytes(2, what)
	if b == nil {
		return 0
	}
	return int(binary.BigEndian.Uint16(b))
}

func (r *reader) u32(what string) int {
	b := r.bytes(4, what)
	if b == nil {
		return 0
	}
	return int(binary.BigEndian.Uint32(b))
}

func (r *reader) version() {
	if v := r.u8("version"); r.err == nil && v != wireVersion {
		r.err = fmt.Errorf("%w: version %d, want %d", errMalformed, v, wireVersion)
	}
}

func parseMsgRequest(body []byte) (msgRequest, error) {
	r := reader{b: body}
	var m msgRequest
	r.version()
	flags := r.u8("flags")
	m.cast = flags&flagCast != 0
	// The names and the id are views of body (unsafeString), not copies:
	// the caller interns the names (System.intern) before anything keeps
	// them, and an actor's entry keeps a copy of its id (shardTable.lookup).
	// body stays unchanged while the message is handled (rpc copies each
	// request's payload).
	m.capability = unsafeString(r.bytes(r.u8("capability length"), "capability"))
	m.kind = unsafeString(r.bytes(r.u8("kind length"), "kind"))
	m.id = unsafeString(r.bytes(r.u16("id length"), "id"))
	m.initArg = r.bytes(r.u32("init argument length"), "init argument")
	if r.err != nil {
		return m, r.err
	}
	if len(m.initArg) == 0 {
		m.initArg = nil
	}
	m.payload = r.b
	return m, nil
}

func appendMsgReply(b []byte, inc uint64, reply []byte) []byte {
	b = append(b, wireVersion)
	b = binary.BigEndian.AppendUint64(b, inc)
	return append(b, reply...)
}

func parseMsgReply(body []byte) (inc uint64, reply []byte, err error) {
	r := reader{b: body}
	r.version()
	b := r.bytes(8, "incarnation")
	if r.err != nil {
		return 0, nil, r.err
	}
	return binary.BigEndian.Uint64(b), r.b, nil
}

type handoffActor struct {
	kind     string
	id       string
	snapshot []byte
}

type handoffRequest struct {
	final      bool
	capability string
	shards     []int
	actors     []handoffActor
}

func (h *handoffActor) size() int { return 1 + len(h.kind) + 2 + len(h.id) + 4 + len(h.snapshot) }

func appendHandoff(b []byte, h *handoffRequest) []byte {
	var flags byte
	if h.final {
		flags |= flagFinal
	}
	b = append(b, wireVersion, flags, byte(len(h.capability)))
	b = append(b, h.capability...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(h.shards)))
	for _, s := range h.shards {
		b = binary.BigEndian.AppendUint16(b, uint16(s))
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(h.actors)))
	for _, a := range h.actors {
		b = append(b, byte(len(a.kind)))
		b = append(b, a.kind...)
		b = binary.BigEndian.AppendUint16(b, uint16(len(a.id)))
		b = append(b, a.id...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(a.snapshot)))
		b = append(b, a.snapshot...)
	}
	return b
}

func parseHandoff(body []byte) (handoffRequest, error) {
	r := reader{b: body}
	var h handoffRequest
	r.version()
	h.final = r.u8("flags")&flagFinal != 0
	h.capability = string(r.bytes(r.u8("capability length"), "capability"))
	n := r.u16("shard count")
	if r.err == nil && 2*n > len(r.b) {
		r.fail("shards run past the end")
	}
	for range n {
		if s := r.u16("shard"); r.err == nil {
			if s >= 4096 {
				r.fail(fmt.Sprintf("shard %d out of range", s))
			}
			h.shards = append(h.shards, s)
		}
	}
	na := r.u32("actor count")
	// Each actor takes at least 7 bytes: refuse a count the body cannot
	// hold before allocating for it.
	if r.err == nil && na > len(r.b)/7 {
		r.fail(fmt.Sprintf("%d actors cannot fit in %d bytes", na, len(r.b)))
	}
	if r.err == nil {
		h.actors = make([]handoffActor, 0, na)
	}
	for i := 0; i < na && r.err == nil; i++ {
		var a handoffActor
		a.kind = string(r.bytes(r.u8("kind length"), "kind"))
		a.id = string(r.bytes(r.u16("id length"), "id"))
		a.snapshot = r.bytes(r.u32("snapshot length"), "snapshot")
		h.actors = append(h.actors, a)
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail(fmt.Sprintf("%d bytes after the last actor", len(r.b)))
	}
	return h, r.err
}

func appendShards(b []byte, capability string, shards []int) []byte {
	b = append(b, wireVersion, byte(len(capability)))
	b = append(b, capability...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(shards)))
	for _, s := range shards {
		b = binary.BigEndian.AppendUint16(b, uint16(s))
	}
	return b
}

func parseShards(body []byte) (capability string, shards []int, err error) {
	r := reader{b: body}
	r.version()
	capability = string(r.bytes(r.u8("capability length"), "capability"))
	n := r.u16("shard count")
	if r.err == nil && 2*n != len(r.b) {
		r.fail(fmt.Sprintf("%d shards in %d bytes", n, len(r.b)))
	}
	for range n {
		if s := r.u16("shard"); r.err == nil {
			if s >= 4096 {
				r.fail(fmt.Sprintf("shard %d out of range", s))
			}
			shards = append(shards, s)
		}
	}
	return capability, shards, r.err
}

// unsafeString returns b as a string without copying it: b must not change
// while the string is in use.
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
