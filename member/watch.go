package member

import (
	"context"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Watch returns a channel of membership changes. Its first changes are a
// Joined for every live member at the time of the call (this node
// included), in ID order; then every change as this node sees it. The
// channel is closed when ctx ends or Members closes.
//
// The channel holds WatchBuffer changes. A watcher that falls behind does
// not slow anything down and loses no outcome: what it has not received
// yet is kept per member and folded together (a join then an update is
// one Joined with the latest record; a join then a departure is nothing;
// an update then a failure is the failure), so what waits is bounded by
// the number of members, and the changes it gets still lead from what it
// saw to the current view. Change.Version tells how far it is.
func (m *Members) Watch(ctx context.Context) <-chan Change {
	w := &watcher{
		m: m, ctx: ctx,
		ch:      make(chan Change, m.cfg.WatchBuffer),
		wake:    make(chan struct{}, 1),
		quit:    make(chan struct{}),
		pending: make(map[peer.ID][]Change),
		inOrder: make(map[peer.ID]bool),
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closing {
		close(w.ch)
		return w.ch
	}
	for _, x := range m.v.members() {
		w.push(Change{Kind: Joined, Member: x, Version: m.v.version})
	}
	m.watchers[w] = struct{}{}
	m.wg.Add(1)
	go w.run()
	return w.ch
}

// watcher is one Watch: changes wait in pending, per member, until run
// hands them to ch.
type watcher struct {
	m    *Members
	ctx  context.Context // the caller's: ends the watch
	ch   chan Change
	wake chan struct{} // cap 1: pending grew
	quit chan struct{} // closed by stop

	quitOnce sync.Once

	// mu guards the fields below it.
	mu      sync.Mutex
	order   []peer.ID // members with pending changes, first come first
	inOrder map[peer.ID]bool
	pending map[peer.ID][]Change // at most two per member: see merge
}

// push adds a change; it never blocks.
func (w *watcher) push(c Change) {
	id := c.Member.ID
	w.mu.Lock()
	w.pending[id] = merge(w.pending[id], c)
	if !w.inOrder[id] {
		w.inOrder[id] = true
		w.order = append(w.order, id)
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// merge folds change c into the changes of one member that the watcher has
// not received yet. The list stays one change, or a departure followed by
// a join.
func merge(list []Change, c Change) []Change {
	if len(list) == 0 {
		return []Change{c}
	}
	last := &list[len(list)-1]
	gone := c.Kind == Left || c.Kind == Failed
	switch {
	case last.Kind == Joined && c.Kind == Updated:
		last.Member, last.Version = c.Member, c.Version
	case last.Kind == Updated && c.Kind == Updated:
		last.Member, last.Version, last.Reason = c.Member, c.Version, c.Reason
	case last.Kind == Joined && gone:
		// The watcher never saw it come: nothing happened.
		list = list[:len(list)-1]
	case last.Kind == Updated && gone:
		*last = c
	default:
		list = append(list, c)
	}
	return list
}

// pop takes the next change to hand over.
func (w *watcher) pop() (Change, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(w.order) > 0 {
		id := w.order[0]
		list := w.pending[id]
		if len(list) == 0 {
			w.order = w.order[1:]
			delete(w.inOrder, id)
			delete(w.pending, id)
			continue
		}
		c := list[0]
		if len(list) == 1 {
			w.order = w.order[1:]
			delete(w.inOrder, id)
			delete(w.pending, id)
		} else {
			w.pending[id] = list[1:]
		}
		return c, true
	}
	return Change{}, false
}

func (w *watcher) run() {
	defer w.m.wg.Done()
	defer close(w.ch)
	defer func() {
		w.m.mu.Lock()
		delete(w.m.watchers, w)
		w.m.mu.Unlock()
	}()
	for {
		c, ok := w.pop()
		if !ok {
			select {
			case <-w.wake:
				continue
			case <-w.ctx.Done():
				return
			case <-w.quit:
				return
			}
		}
		select {
		case w.ch <- c:
		case <-w.ctx.Done():
			return
		case <-w.quit:
			return
		}
	}
}

// stop ends the watch (Members is closing).
func (w *watcher) stop() { w.quitOnce.Do(func() { close(w.quit) }) }
