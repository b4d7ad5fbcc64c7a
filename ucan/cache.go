package ucan

import (
	"container/heap"
	"container/list"
	"sync"
	"time"
)

// lru is a mutex-guarded least-recently-used map of bounded size.
type lru[K comparable, V any] struct {
	mu    sync.Mutex // guards the fields below
	max   int
	order *list.List // front: most recently used; values are *lruItem
	items map[K]*list.Element
}

type lruItem[K comparable, V any] struct {
	key K
	val V
}

func newLRU[K comparable, V any](max int) *lru[K, V] {
	return &lru[K, V]{max: max, order: list.New(), items: make(map[K]*list.Element)}
}

func (c *lru[K, V]) get(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		c.order.MoveToFront(e)
		return e.Value.(*lruItem[K, V]).val, true
	}
	var zero V
	return zero, false
}

func (c *lru[K, V]) put(k K, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		e.Value.(*lruItem[K, V]).val = v
		c.order.MoveToFront(e)
		return
	}
	c.items[k] = c.order.PushFront(&lruItem[K, V]{key: k, val: v})
	for c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.items, last.Value.(*lruItem[K, V]).key)
	}
}

// replayCache remembers accepted invocations until they expire. It never
// forgets a live entry to make room: when it is full of live entries it
// refuses (ErrBusy), because forgetting one would let it be replayed.
type replayCache struct {
	mu    sync.Mutex // guards the fields below
	max   int
	seen  map[contentID]time.Time // id -> kept until (zero: for ever)
	queue expiryHeap              // the same entries, soonest expiry first
}

func newReplayCache(max int) *replayCache {
	return &replayCache{max: max, seen: make(map[contentID]time.Time)}
}

// add records id until the time given (zero: for ever), or reports that it
// was seen before.
func (r *replayCache) add(id contentID, until, now time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(r.queue) > 0 && !r.queue[0].until.IsZero() && r.queue[0].until.Before(now) {
		e := heap.Pop(&r.queue).(expiry)
		delete(r.seen, e.id)
	}
	if _, ok := r.seen[id]; ok {
		return ErrReplay
	}
	if len(r.seen) >= r.max {
		return refuse(ErrBusy, "replay cache holds %d live invocations", len(r.seen))
	}
	r.seen[id] = until
	heap.Push(&r.queue, expiry{id: id, until: until})
	return nil
}

type expiry struct {
	id    contentID
	until time.Time
}

// expiryHeap orders entries by expiry; entries that never expire sort last.
type expiryHeap []expiry

func (h expiryHeap) Len() int { return len(h) }
func (h expiryHeap) Less(i, j int) bool {
	a, b := h[i].until, h[j].until
	switch {
	case a.IsZero():
		return false
	case b.IsZero():
		return true
	}
	return a.Before(b)
}
func (h expiryHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)   { *h = append(*h, x.(expiry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
