package registry

import (
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/libp2p/go-libp2p/core/peer"
)

// kind is what an entry is: a name (one process per key) or a group
// membership (many per key). The values are part of the wire format.
type kind uint8

const (
	kindName   kind = 1
	kindMember kind = 2
)

// entryID names an entry within its node's stream: a process holds at
// most one name and one membership per key.
type entryID struct {
	kind kind
	key  string
	proc uint64
}

// entry is one name or membership. It is immutable once it is in a
// stream: a change makes a new entry, so readers and snapshots may keep a
// pointer without a lock.
type entry struct {
	id    entryID
	node  peer.ID // the node that owns it (its process's node)
	meta  []byte
	ver   uint64 // the owning stream's version at the entry's last change
	since Stamp  // when the name was registered or the group joined (kept on updates)
}

func (e *entry) addr() Addr { return Addr{Node: e.node, ID: e.id.proc} }

// before orders names by the default resolution: earlier stamp, then node,
// then process number. It is a total order, the same on every node.
func (e *entry) before(o *entry) bool {
	if e.since != o.since {
		return e.since < o.since
	}
	if e.node != o.node {
		return e.node < o.node
	}
	return e.id.proc < o.id.proc
}

// op is one change in a stream's log: an entry put (its current state is
// in the stream) or removed (with why).
type op struct {
	ver    uint64
	id     entryID
	del    bool
	reason Reason
	detail string
}

// opLog is a ring of a stream's latest changes, in increasing version
// order. It covers every change with a version in (base, the stream's
// version]. A peer at a version v >= base gets a delta from the log alone.
// A peer further behind gets the entries changed since v from the
// stream's state, and the removals since v from the log, as long as no
// removal newer than v has left the log (v >= delBase); otherwise it gets
// a full copy.
type opLog struct {
	ops     []op
	head    int // index of the oldest op
	n       int
	base    uint64
	delBase uint64 // the newest removal that left the log
	last    uint64 // the version of the newest op (or base)
}

// add appends an op; an op not newer than the newest is already in the
// log (a delta received again after an interrupted one) and is skipped,
// so the log stays sorted.
func (l *opLog) add(o op, limit int) {
	if o.ver <= l.last {
		return
	}
	l.last = o.ver
	if l.ops == nil {
		l.ops = make([]op, 0, min(limit, 64))
	}
	if l.n < limit {
		if len(l.ops) < limit && l.head == 0 && l.n == len(l.ops) {
			l.ops = append(l.ops, o)
		} else {
			l.ops[(l.head+l.n)%len(l.ops)] = o
		}
		l.n++
		return
	}
	// Full: the oldest op goes, and with it the log's coverage of its
	// version.
	old := l.ops[l.head]
	l.base = old.ver
	if old.del {
		l.delBase = old.ver
	}
	l.ops[l.head] = o
	l.head = (l.head + 1) % len(l.ops)
}

// reset empties the log; it then covers nothing before base.
func (l *opLog) reset(base uint64) {
	l.ops, l.head, l.n, l.base, l.delBase, l.last = nil, 0, 0, base, base, base
}

// since calls f for each op with a version > v, oldest first.
func (l *opLog) since(v uint64, f func(op)) {
	at := func(i int) op { return l.ops[(l.head+i)%len(l.ops)] }
	lo, hi := 0, l.n // the first op newer than v, by binary search
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if at(mid).ver <= v {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	for i := lo; i < l.n; i++ {
		f(at(i))
	}
}

// stream is one node's entries in one cluster, as this node knows them:
// the node's own stream, which this node writes, or a copy of another
// node's, kept by replication. Guarded by its cluster's mu.
type stream struct {
	origin peer.ID
	// epoch identifies one life of the stream: its origin's clock when
	// the stream was created (the node started, or connected to the
	// cluster). A greater epoch replaces every entry of a smaller one.
	epoch   uint64
	ver     uint64
	entries map[entryID]*entry
	log     opLog
	// direct is true while the stream's data comes from its origin on a
	// link of its own (not relayed).
	direct bool
}

func newStream(origin peer.ID, epoch uint64) *stream {
	return &stream{origin: origin, epoch: epoch, entries: make(map[entryID]*entry)}
}

// --- read tables -------------------------------------------------------

const numShards = 64 // a power of two

// shard is one part of a table. The padding keeps shards on separate cache
// lines, so that readers on different cores do not contend.
type shard[T any] struct {
	mu sync.RWMutex
	m  map[string]*T
	_  [32]byte
}

// table maps keys to slots, sharded so that reads from many goroutines
// rarely touch the same lock. Writers hold the cluster's mu as well.
type table[T any] struct {
	seed   maphash.Seed
	shards [numShards]shard[T]
}

func (t *table[T]) init() {
	t.seed = maphash.MakeSeed()
	for i := range t.shards {
		t.shards[i].m = make(map[string]*T)
	}
}

func (t *table[T]) shard(key string) *shard[T] {
	return &t.shards[maphash.String(t.seed, key)&(numShards-1)]
}

// nameSlot is a key of the names table: the candidates registered under
// it (normally one; more after a partition or a race, until the losers'
// nodes withdraw them) and the one that wins.
type nameSlot struct {
	win   *entry
	cands []*entry // sorted by entry.before
}

// groupSlot is a key of the groups table.
type groupSlot struct {
	members map[Addr]*entry
	// snap is the members as a sorted slice, built by the first reader
	// after a change (under the shard's read lock; writers, who hold the
	// write lock, clear it).
	snap atomic.Pointer[[]Member]
}

// prefixIndex maps each "/"-terminated prefix of the keys in a table to
// those keys, for prefix queries without a scan.
type prefixIndex struct {
	mu sync.RWMutex
	m  map[string]map[string]struct{}
}

func (x *prefixIndex) add(key string) {
	x.mu.Lock()
	prefixesOf(key, func(p string) {
		set := x.m[p]
		if set == nil {
			set = make(map[string]struct{})
			x.m[p] = set
		}
		set[key] = struct{}{}
	})
	x.mu.Unlock()
}

func (x *prefixIndex) remove(key string) {
	x.mu.Lock()
	prefixesOf(key, func(p string) {
		if set := x.m[p]; set != nil {
			delete(set, key)
			if len(set) == 0 {
				delete(x.m, p)
			}
		}
	})
	x.mu.Unlock()
}

// keys returns the keys under prefix, sorted.
func (x *prefixIndex) keys(prefix string) []string {
	x.mu.RLock()
	set := x.m[prefix]
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	x.mu.RUnlock()
	slices.Sort(out)
	return out
}

// membersOf returns the members of a group slot in address order, from
// the cached snapshot when there is one. The caller holds the slot's shard
// read lock.
func membersOf(g *groupSlot) []Member {
	if s := g.snap.Load(); s != nil {
		return *s
	}
	s := make([]Member, 0, len(g.members))
	for _, e := range g.members {
		s = append(s, Member{Key: e.id.key, Addr: e.addr(), Meta: e.meta})
	}
	slices.SortFunc(s, func(a, b Member) int {
		switch {
		case a.Addr.less(b.Addr):
			return -1
		case b.Addr.less(a.Addr):
			return 1
		}
		return 0
	})
	g.snap.Store(&s)
	return s
}
