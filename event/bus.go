package event

import (
	"sync"
	"sync/atomic"
	"time"
)

// DefaultBuffer is the buffer of a subscription made with a size <= 0.
const DefaultBuffer = 256

// Bus fans events out to subscriptions. The zero value is not usable; call
// NewBus. A Bus is safe for concurrent use.
type Bus struct {
	// mu guards the fields below it.
	mu     sync.RWMutex
	subs   map[*Subscription]struct{}
	closed bool
}

// NewBus returns an empty bus.
func NewBus() *Bus {
	return &Bus{subs: make(map[*Subscription]struct{})}
}

// Emit sends e to every subscription that wants its kind. It never blocks:
// a subscription whose buffer is full misses e, and its Dropped count grows.
// A zero Time is set to now.
func (b *Bus) Emit(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	for s := range b.subs {
		if !s.wants(e.Kind) {
			continue
		}
		select {
		case s.ch <- e:
		default:
			s.dropped.Add(1)
		}
	}
}

// Subscribe returns a subscription with a buffer of the given size that
// receives events of the given kinds (all kinds when none are given). After
// the bus is closed it returns a subscription whose channel is closed.
func (b *Bus) Subscribe(buffer int, kinds ...Kind) *Subscription {
	if buffer <= 0 {
		buffer = DefaultBuffer
	}
	s := &Subscription{bus: b, ch: make(chan Event, buffer)}
	if len(kinds) > 0 {
		s.kinds = make(map[Kind]bool, len(kinds))
		for _, k := range kinds {
			s.kinds[k] = true
		}
	}
	s.C = s.ch
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		close(s.ch)
		return s
	}
	b.subs[s] = struct{}{}
	return s
}

// Close closes every subscription's channel. Emit after Close does nothing.
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
}

func (b *Bus) remove(s *Subscription) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.subs[s]; ok {
		delete(b.subs, s)
		close(s.ch)
	}
}

// Subscription receives events on C until it or its bus is closed; then C is
// closed.
type Subscription struct {
	// C delivers the events.
	C <-chan Event

	bus     *Bus
	ch      chan Event
	kinds   map[Kind]bool // nil means all; read-only after Subscribe
	dropped atomic.Uint64
}

func (s *Subscription) wants(k Kind) bool { return s.kinds == nil || s.kinds[k] }

// Dropped returns how many events this subscription missed because its
// buffer was full.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Close stops delivery and closes C. It is safe to call more than once.
func (s *Subscription) Close() { s.bus.remove(s) }
