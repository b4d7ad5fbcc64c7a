package event

import (
	"sync"
	"sync/atomic"
	"time"
)

// DefaultBuffer is the buffer of a subscription made with a size <= 0.
const DefaultBuffer = 256

// Handler is a function attached to a Bus (Attach). It runs on the
// goroutine that emits the event, before Emit returns, so it must be quick
// and must never block: count, add to a histogram, hand the event to a
// channel with a select/default. It must not keep e's slices (Capabilities,
// Clusters) beyond the call unless it copies them, and must not call Attach
// or Detach. A handler that panics is detached (as :telemetry does), and
// the bus counts it (HandlerFailures).
type Handler func(e Event)

// Bus fans events out to attached handlers and to subscriptions. The zero
// value is not usable; call NewBus. A Bus is safe for concurrent use.
type Bus struct {
	// handlers is the list of attached handlers, replaced whole by Attach
	// and Detach (copy on write) so that Emit reads it without a lock.
	handlers atomic.Pointer[[]*Attachment]
	// wanted has bit k set when some handler or subscription wants kind k:
	// Wants and Emit read it without a lock, so an event nobody listens to
	// costs one atomic load.
	wanted kindSet
	// failures counts handlers detached because they panicked.
	failures atomic.Uint64

	// mu guards the fields below it, and serializes changes of handlers
	// and wanted.
	mu     sync.RWMutex
	subs   map[*Subscription]struct{}
	closed bool
}

// NewBus returns an empty bus.
func NewBus() *Bus {
	b := &Bus{subs: make(map[*Subscription]struct{})}
	b.handlers.Store(&[]*Attachment{})
	return b
}

// Wants reports whether any handler or subscription would receive an event
// of kind k now. Emitters use it to skip building events nobody listens
// to (and measuring what would go in them); it costs one atomic load.
func (b *Bus) Wants(k Kind) bool { return b.wanted.has(k) }

// Emit hands e to every attached handler that wants its kind, in the
// order they were attached, then sends it to every subscription that wants
// it. It never blocks on a subscription: one whose buffer is full misses e,
// and its Dropped count grows. A zero Time is set to now.
func (b *Bus) Emit(e Event) {
	if !b.wanted.has(e.Kind) {
		return
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	for _, a := range *b.handlers.Load() {
		if a.kinds.has(e.Kind) && !a.detached.Load() {
			b.call(a, e)
		}
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	for s := range b.subs {
		if !s.kinds.has(e.Kind) {
			continue
		}
		select {
		case s.ch <- e:
		default:
			s.dropped.Add(1)
		}
	}
}

// call runs one handler, detaching it if it panics.
func (b *Bus) call(a *Attachment, e Event) {
	defer func() {
		if r := recover(); r != nil {
			b.failures.Add(1)
			a.Detach() // Emit holds no lock while handlers run
		}
	}()
	a.h(e)
}

// Attach calls h with every event of the given kinds (all kinds when none
// are given) from now until the returned Attachment is detached or the bus
// is closed. Handlers run synchronously in Emit: see Handler for their
// contract. It is the Go form of the Elixir original's
// :telemetry.attach(id, event, fun, config): the config is whatever h
// closes over. Attach on a closed bus returns a detached Attachment.
func (b *Bus) Attach(h Handler, kinds ...Kind) *Attachment {
	a := &Attachment{bus: b, h: h, kinds: setOf(kinds)}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || h == nil {
		a.detached.Store(true)
		return a
	}
	old := *b.handlers.Load()
	hs := make([]*Attachment, 0, len(old)+1)
	hs = append(append(hs, old...), a)
	b.handlers.Store(&hs)
	b.recomputeLocked()
	return a
}

// HandlerFailures returns how many handlers were detached because they
// panicked.
func (b *Bus) HandlerFailures() uint64 { return b.failures.Load() }

// Subscribe returns a subscription with a buffer of the given size that
// receives events of the given kinds (all kinds when none are given). After
// the bus is closed it returns a subscription whose channel is closed.
func (b *Bus) Subscribe(buffer int, kinds ...Kind) *Subscription {
	if buffer <= 0 {
		buffer = DefaultBuffer
	}
	s := &Subscription{bus: b, ch: make(chan Event, buffer), kinds: setOf(kinds)}
	s.C = s.ch
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		close(s.ch)
		return s
	}
	b.subs[s] = struct{}{}
	b.recomputeLocked()
	return s
}

// Close closes every subscription's channel and detaches every handler.
// Emit after Close does nothing.
func (b *Bus) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.closed = true
	for s := range b.subs {
		close(s.ch)
		delete(b.subs, s)
	}
	for _, a := range *b.handlers.Load() {
		a.detached.Store(true)
	}
	b.handlers.Store(&[]*Attachment{})
	b.recomputeLocked()
}

func (b *Bus) remove(s *Subscription) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.subs[s]; ok {
		delete(b.subs, s)
		close(s.ch)
		b.recomputeLocked()
	}
}

func (b *Bus) detach(a *Attachment) {
	b.mu.Lock()
	defer b.mu.Unlock()
	old := *b.handlers.Load()
	hs := make([]*Attachment, 0, len(old))
	for _, x := range old {
		if x != a {
			hs = append(hs, x)
		}
	}
	b.handlers.Store(&hs)
	b.recomputeLocked()
}

// recomputeLocked sets wanted to the union of what the handlers and the
// subscriptions want.
func (b *Bus) recomputeLocked() {
	var w [4]uint64
	for _, a := range *b.handlers.Load() {
		for i := range w {
			w[i] |= a.kinds.bits[i].Load()
		}
	}
	for s := range b.subs {
		for i := range w {
			w[i] |= s.kinds.bits[i].Load()
		}
	}
	for i := range w {
		b.wanted.bits[i].Store(w[i])
	}
}

// Attachment is a handler attached to a bus.
type Attachment struct {
	bus      *Bus
	h        Handler
	kinds    *kindSet // read-only after Attach
	detached atomic.Bool
}

// Detach stops calls to the handler: once it returns, only Emits already
// under way may still call it. It is safe to call more than once, also from
// the handler itself.
func (a *Attachment) Detach() {
	if a.detached.Swap(true) {
		return
	}
	a.bus.detach(a)
}

// Subscription receives events on C until it or its bus is closed; then C is
// closed.
type Subscription struct {
	// C delivers the events.
	C <-chan Event

	bus     *Bus
	ch      chan Event
	kinds   *kindSet // read-only after Subscribe
	dropped atomic.Uint64
}

// Dropped returns how many events this subscription missed because its
// buffer was full.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Close stops delivery and closes C. It is safe to call more than once.
func (s *Subscription) Close() { s.bus.remove(s) }

// kindSet is a set of kinds, one bit per Kind value; read without locks.
type kindSet struct{ bits [4]atomic.Uint64 }

// setOf returns the set of kinds, or of every kind when kinds is empty.
func setOf(kinds []Kind) *kindSet {
	s := &kindSet{}
	if len(kinds) == 0 {
		for i := range s.bits {
			s.bits[i].Store(^uint64(0))
		}
		return s
	}
	for _, k := range kinds {
		s.bits[k>>6].Or(1 << (k & 63))
	}
	return s
}

func (s *kindSet) has(k Kind) bool { return s.bits[k>>6].Load()&(1<<(k&63)) != 0 }
