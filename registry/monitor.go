package registry

import (
	"sync"
	"sync/atomic"
)

// Batch is what a monitor receives: the events of one change, in order. A
// change of many entries at once (a process ending, a node leaving, a state
// exchange) is one batch.
type Batch struct {
	Events []Event
	// Missed counts the events this monitor lost since the previous batch
	// it received because its queue was full; after a loss, Lookup and
	// Members give the current state.
	Missed uint64
}

// Monitor receives the events of the keys its pattern matches, anywhere in
// the realm or the cluster: an exact key, a prefix ending in "/", or ""
// for every key.
type Monitor struct {
	c       *cluster // read-only
	pattern string   // read-only
	prefix  bool     // read-only
	ch      chan Batch

	// mu guards the fields below, and sending on ch.
	mu     sync.Mutex
	closed bool
	missed uint64
}

// C returns the channel of batches. It is closed when the monitor is
// closed, when its cluster is disconnected, or when the registry closes.
func (m *Monitor) C() <-chan Batch { return m.ch }

// Pattern returns what the monitor watches.
func (m *Monitor) Pattern() string { return m.pattern }

// Close stops the monitor and closes its channel. Safe to call more than
// once.
func (m *Monitor) Close() {
	m.c.mon.remove(m)
	m.end()
}

func (m *Monitor) end() {
	m.mu.Lock()
	if !m.closed {
		m.closed = true
		close(m.ch)
	}
	m.mu.Unlock()
}

// send queues a batch without blocking.
func (m *Monitor) send(r *Registry, events []Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	select {
	case m.ch <- Batch{Events: events, Missed: m.missed}:
		m.missed = 0
	default:
		m.missed += uint64(len(events))
		r.stats.droppedEvents.Add(uint64(len(events)))
	}
}

// monitors are a cluster's monitors by pattern.
type monitors struct {
	n atomic.Int32 // monitors registered: delivery skips everything when 0

	mu     sync.RWMutex // guards the fields below
	all    []*Monitor
	exact  map[string][]*Monitor
	prefix map[string][]*Monitor
}

func (ms *monitors) init() {
	ms.exact = make(map[string][]*Monitor)
	ms.prefix = make(map[string][]*Monitor)
}

func (ms *monitors) add(m *Monitor) {
	ms.mu.Lock()
	switch {
	case m.pattern == "":
		ms.all = append(ms.all, m)
	case m.prefix:
		ms.prefix[m.pattern] = append(ms.prefix[m.pattern], m)
	default:
		ms.exact[m.pattern] = append(ms.exact[m.pattern], m)
	}
	ms.n.Add(1)
	ms.mu.Unlock()
}

func (ms *monitors) remove(m *Monitor) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	del := func(s []*Monitor) ([]*Monitor, bool) {
		for i, x := range s {
			if x == m {
				return append(s[:i:i], s[i+1:]...), true
			}
		}
		return s, false
	}
	var ok bool
	switch {
	case m.pattern == "":
		ms.all, ok = del(ms.all)
	case m.prefix:
		var s []*Monitor
		if s, ok = del(ms.prefix[m.pattern]); len(s) == 0 {
			delete(ms.prefix, m.pattern)
		} else {
			ms.prefix[m.pattern] = s
		}
	default:
		var s []*Monitor
		if s, ok = del(ms.exact[m.pattern]); len(s) == 0 {
			delete(ms.exact, m.pattern)
		} else {
			ms.exact[m.pattern] = s
		}
	}
	if ok {
		ms.n.Add(-1)
	}
}

// endAll closes every monitor (the cluster is gone).
func (ms *monitors) endAll() {
	ms.mu.Lock()
	var out []*Monitor
	out = append(out, ms.all...)
	for _, s := range ms.exact {
		out = append(out, s...)
	}
	for _, s := range ms.prefix {
		out = append(out, s...)
	}
	ms.all = nil
	ms.init()
	ms.n.Store(0)
	ms.mu.Unlock()
	for _, m := range out {
		m.end()
	}
}

// deliver gives each monitor the events its pattern matches, as one batch.
func (ms *monitors) deliver(r *Registry, events []Event) {
	if ms.n.Load() == 0 {
		return
	}
	ms.mu.RLock()
	defer ms.mu.RUnlock()
	// The common case: one monitor of everything.
	if len(ms.all) > 0 && len(ms.exact) == 0 && len(ms.prefix) == 0 {
		for _, m := range ms.all {
			m.send(r, events)
		}
		return
	}
	var order []*Monitor
	per := make(map[*Monitor][]Event)
	add := func(m *Monitor, e Event) {
		s, ok := per[m]
		if !ok {
			order = append(order, m)
		}
		per[m] = append(s, e)
	}
	for _, e := range events {
		for _, m := range ms.all {
			add(m, e)
		}
		for _, m := range ms.exact[e.Key] {
			add(m, e)
		}
		if len(ms.prefix) > 0 {
			prefixesOf(e.Key, func(p string) {
				for _, m := range ms.prefix[p] {
					add(m, e)
				}
			})
		}
	}
	for _, m := range order {
		m.send(r, per[m])
	}
}
