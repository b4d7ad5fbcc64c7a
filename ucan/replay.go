package ucan

import (
	"container/heap"
	"math"
	"sync"
	"time"
)

// forever is the "until" of an entry or a quarantine that never ends.
const forever = math.MaxInt64

// replayCache remembers accepted invocations until they expire, in memory
// and, with a replayFile, on disk (see the package doc, "Used invocations").
// It never forgets a live entry to make room: when it is full of live
// entries it refuses (ErrBusy), because forgetting one would let it be
// replayed.
type replayCache struct {
	// mu guards every field below; the file's methods run under it.
	mu    sync.Mutex
	max   int
	seen  map[contentID]int64 // id -> kept until, Unix ns (0: for ever)
	queue expiryHeap          // the same entries, soonest expiry first
	// A quarantine refuses, until qUntil (Unix ns; forever), every
	// invocation issued at or before qFloor (Unix ns) or without iat: set
	// when the node cannot vouch that it knows every invocation it accepted
	// before it started. 0, 0: none.
	qFloor, qUntil int64
	file           *replayFile // nil: memory only
	closed         bool        // Close ran: nothing more is recorded
}

func newReplayCache(max int) *replayCache {
	return &replayCache{max: max, seen: make(map[contentID]int64)}
}

// add records id until the time given (zero: for ever), or reports that it
// was seen before, or may have been (a quarantine). iat is the invocation's
// issue time (zero when absent).
func (r *replayCache) add(id contentID, until, iat, now time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := now.UnixNano()
	if r.closed {
		return refuse(ErrBusy, "the validator is closed")
	}
	r.pruneLocked(n)
	if r.quarantinedLocked(n) && (iat.IsZero() || iat.UnixNano() <= r.qFloor) {
		return refuse(ErrReplay, "this node cannot tell whether the invocation was used before it started "+
			"(its record of used invocations was incomplete); until %v it accepts only invocations issued after %v: make a new one",
			quarantineEnd(r.qUntil), time.Unix(0, r.qFloor).UTC())
	}
	if _, ok := r.seen[id]; ok {
		return ErrReplay
	}
	if len(r.seen) >= r.max {
		return refuse(ErrBusy, "replay cache holds %d live invocations", len(r.seen))
	}
	u := int64(0)
	if !until.IsZero() {
		u = until.UnixNano()
	}
	if r.file != nil {
		// Written before the invocation counts: one that could not be
		// recorded is refused, never accepted unrecorded.
		if err := r.file.appendLocked(r, id, u, n); err != nil {
			return refuse(ErrBusy, "cannot record the invocation: %v", err)
		}
	}
	r.seen[id] = u
	heap.Push(&r.queue, expiry{id: id, until: u})
	if r.file != nil {
		r.file.compactLocked(r, n)
	}
	return nil
}

// pruneLocked forgets the entries expired at n.
func (r *replayCache) pruneLocked(n int64) {
	for len(r.queue) > 0 && r.queue[0].until != 0 && r.queue[0].until < n {
		e := heap.Pop(&r.queue).(expiry)
		delete(r.seen, e.id)
	}
}

func (r *replayCache) quarantinedLocked(n int64) bool {
	return r.qUntil != 0 && n <= r.qUntil
}

// quarantine adds a quarantine refusing what was issued at or before floor
// until until; an overlapping one is widened, never shortened.
func (r *replayCache) quarantineLocked(floor, until int64) {
	r.qFloor = max(r.qFloor, floor)
	r.qUntil = max(r.qUntil, until)
}

// live returns the entries not expired at n, soonest expiry first.
func (r *replayCache) liveLocked(n int64) []expiry {
	r.pruneLocked(n)
	out := make([]expiry, len(r.queue))
	copy(out, r.queue)
	return out
}

// close writes the file one last time, marked clean, and stops recording.
func (r *replayCache) close(now time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	if r.file == nil {
		return nil
	}
	return r.file.closeLocked(r, now.UnixNano())
}

func quarantineEnd(until int64) string {
	if until == forever {
		return "further notice (invocations without expiry are allowed)"
	}
	return time.Unix(0, until).UTC().String()
}

type expiry struct {
	id    contentID
	until int64 // Unix ns; 0: for ever
}

// expiryHeap orders entries by expiry; entries that never expire sort last.
type expiryHeap []expiry

func (h expiryHeap) Len() int { return len(h) }
func (h expiryHeap) Less(i, j int) bool {
	a, b := h[i].until, h[j].until
	switch {
	case a == 0:
		return false
	case b == 0:
		return true
	}
	return a < b
}
func (h expiryHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)   { *h = append(*h, x.(expiry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
