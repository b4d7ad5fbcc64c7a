package registry

import (
	"bytes"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Entry is a registered name as Lookup and Names return it. Meta is shared
// with the registry: do not modify it.
type Entry struct {
	Key     string
	Cluster string
	Addr    Addr
	Meta    []byte
	// Registered is when the name was registered (kept when it is
	// re-registered with new metadata), on its node's hybrid clock.
	Registered Stamp
}

// Member is a member of a group as Members returns it. Meta is shared with
// the registry: do not modify it.
type Member struct {
	Key  string
	Addr Addr
	Meta []byte
}

// cluster is the default cluster ("") or a named one that this node has
// connected to: its streams (one per node whose entries it holds) and the
// tables that readers use.
//
// Lock order: cluster.mu, then a table shard's mu or a prefix index's mu
// (never two of those at once), then monitors.mu.
type cluster struct {
	name string
	r    *Registry // read-only

	names       table[nameSlot]  // read-only after init; shards have their own locks
	groups      table[groupSlot] // ditto
	namePrefix  prefixIndex
	groupPrefix prefixIndex
	mon         monitors
	// links are the peer links that replicate this cluster; replaced
	// whole (copy on write), read without a lock on every write.
	links atomic.Pointer[[]*peerLink]

	// mu guards the fields below, and every change to the tables.
	mu      sync.Mutex
	streams map[peer.ID]*stream
	own     *stream
	byProc  map[uint64]map[entryID]struct{} // this node's entries by process
	gone    bool                            // disconnected: no more writes
}

func newCluster(r *Registry, name string, epoch uint64) *cluster {
	c := &cluster{name: name, r: r, streams: make(map[peer.ID]*stream), byProc: make(map[uint64]map[entryID]struct{})}
	c.names.init()
	c.groups.init()
	c.namePrefix.m = make(map[string]map[string]struct{})
	c.groupPrefix.m = make(map[string]map[string]struct{})
	c.mon.init()
	c.own = newStream(r.self, epoch)
	c.own.direct = true
	c.streams[r.self] = c.own
	return c
}

// batch collects what a change under mu produced: the events for monitors
// and the notices for this node's processes that lost a name.
type batch struct {
	events []Event
	lost   []lostNote
}

// emit adds events, unless the cluster has no monitor (then nobody could
// see them: building them would only cost).
func (c *cluster) emit(b *batch, evs ...Event) {
	if c.mon.n.Load() > 0 {
		b.events = append(b.events, evs...)
	}
}

type lostNote struct {
	proc   uint64
	key    string
	winner Addr
	detail string
}

// flushLocked hands a batch's events to the monitors, in order, while mu
// is held so that batches reach monitors in the order of the changes.
func (c *cluster) flushLocked(b *batch) {
	if len(b.events) > 0 {
		c.mon.deliver(c.r, b.events)
	}
}

// notify tells processes that lost a name. Called without locks.
func (c *cluster) notify(b *batch) {
	for _, l := range b.lost {
		p := c.r.process(l.proc)
		if p == nil {
			continue
		}
		// A notice that finds the mailbox full is dropped like any other
		// message; the process's monitors still see the unregistered
		// event with the reason.
		_ = p.deliver(Message{Kind: MessageLost, Key: l.key, Cluster: c.name, Winner: l.winner, Reason: l.detail})
	}
}

// --- the changes --------------------------------------------------------

// putLocked stores e in st (replacing the entry with the same id) and
// updates the tables.
func (c *cluster) putLocked(b *batch, st *stream, e *entry) {
	old := st.entries[e.id]
	st.entries[e.id] = e
	if st == c.own && old == nil {
		set := c.byProc[e.id.proc]
		if set == nil {
			set = make(map[entryID]struct{}, 1)
			c.byProc[e.id.proc] = set
		}
		set[e.id] = struct{}{}
		c.r.localEntries.Add(1)
	}
	if e.id.kind == kindName {
		c.namePutLocked(b, old, e)
	} else {
		c.memberPutLocked(b, e)
	}
}

// delLocked removes the entry id from st, if there, and updates the
// tables. It reports whether there was one.
func (c *cluster) delLocked(b *batch, st *stream, id entryID, reason Reason, detail string) bool {
	old := st.entries[id]
	if old == nil {
		return false
	}
	delete(st.entries, id)
	if st == c.own {
		if set := c.byProc[id.proc]; set != nil {
			delete(set, id)
			if len(set) == 0 {
				delete(c.byProc, id.proc)
			}
		}
		c.r.localEntries.Add(-1)
	}
	if id.kind == kindName {
		c.nameDelLocked(b, old, reason, detail)
	} else {
		c.memberDelLocked(b, old, reason, detail)
	}
	return true
}

// ownPutLocked writes an entry of this node's own stream: a new version,
// logged for replication.
func (c *cluster) ownPutLocked(b *batch, id entryID, meta []byte, since Stamp) {
	st := c.own
	st.ver++
	st.log.add(op{ver: st.ver, id: id}, c.r.cfg.ReplicationLog)
	c.putLocked(b, st, &entry{id: id, node: c.r.self, meta: meta, ver: st.ver, since: since})
	c.r.wakeLinks(c)
}

// ownDelLocked removes an entry of this node's own stream, logged for
// replication with its reason.
func (c *cluster) ownDelLocked(b *batch, id entryID, reason Reason, detail string) bool {
	st := c.own
	if st.entries[id] == nil {
		return false
	}
	st.ver++
	st.log.add(op{ver: st.ver, id: id, del: true, reason: reason, detail: detail}, c.r.cfg.ReplicationLog)
	c.delLocked(b, st, id, reason, detail)
	c.r.wakeLinks(c)
	return true
}

// --- names --------------------------------------------------------------

func (c *cluster) namePutLocked(b *batch, old, e *entry) {
	key := e.id.key
	sh := c.names.shard(key)
	sh.mu.Lock()
	slot := sh.m[key]
	fresh := slot == nil
	if fresh {
		slot = &nameSlot{}
		sh.m[key] = slot
	}
	before := slot.win
	if old != nil {
		slot.cands = removeEntry(slot.cands, old)
	}
	slot.cands = insertSorted(slot.cands, e)
	after := c.resolve(key, slot.cands)
	slot.win = after
	cands := contested(slot.cands)
	sh.mu.Unlock()
	if fresh {
		c.namePrefix.add(key)
	}
	// A put never removes the winner's entry: if the winner changes, the
	// old one lost to the new (a conflict), or the resolver prefers
	// another candidate after a re-registration.
	detail := ""
	if after != nil && before != nil && before.addr() != after.addr() {
		detail = c.conflictDetail(after)
	}
	c.nameDiff(b, before, after, ReasonConflict, detail)
	c.withdrawLosersLocked(b, key, cands, after)
}

func (c *cluster) nameDelLocked(b *batch, old *entry, reason Reason, detail string) {
	key := old.id.key
	sh := c.names.shard(key)
	sh.mu.Lock()
	slot := sh.m[key]
	if slot == nil {
		sh.mu.Unlock()
		return
	}
	before := slot.win
	slot.cands = removeEntry(slot.cands, old)
	after := c.resolve(key, slot.cands)
	slot.win = after
	cands := contested(slot.cands)
	empty := len(slot.cands) == 0
	if empty {
		delete(sh.m, key)
	}
	sh.mu.Unlock()
	if empty {
		c.namePrefix.remove(key)
	}
	if before != old {
		// The removed entry was not the visible one (a loser being
		// withdrawn): nothing visible changes unless the resolver
		// changes its mind.
		reason, detail = ReasonConflict, ""
		if after != nil {
			detail = c.conflictDetail(after)
		}
	}
	c.nameDiff(b, before, after, reason, detail)
	c.withdrawLosersLocked(b, key, cands, after)
}

// nameDiff turns a change of a name's winner into events. reason and
// detail explain the old winner's departure when there is one.
func (c *cluster) nameDiff(b *batch, before, after *entry, reason Reason, detail string) {
	switch {
	case before == after:
	case before == nil:
		c.emit(b, c.event(Registered, after))
	case after == nil:
		ev := c.event(Unregistered, before)
		ev.Reason, ev.Detail = reason, detail
		c.emit(b, ev)
	case before.addr() == after.addr():
		if !bytes.Equal(before.meta, after.meta) {
			ev := c.event(Registered, after)
			ev.Update, ev.PreviousMeta = true, before.meta
			c.emit(b, ev)
		}
	default:
		ev := c.event(Unregistered, before)
		ev.Reason, ev.Detail = reason, detail
		c.emit(b, ev, c.event(Registered, after))
	}
}

// withdrawLosersLocked removes this node's own candidates of a name that
// did not win: the name stays with one owner once the views agree, and
// the loser's process is told why.
func (c *cluster) withdrawLosersLocked(b *batch, key string, cands []*entry, win *entry) {
	if win == nil || len(cands) < 2 {
		return
	}
	for _, e := range cands {
		if e == win || e.node != c.r.self {
			continue
		}
		detail := c.conflictDetail(win)
		c.r.stats.conflicts.Add(1)
		c.r.log.info("registry: name lost in a conflict", "cluster", c.name, "key", key, "loser", e.addr(), "winner", win.addr(), "rule", c.r.resolverName())
		b.lost = append(b.lost, lostNote{proc: e.id.proc, key: key, winner: win.addr(), detail: detail})
		c.ownDelLocked(b, e.id, ReasonConflict, detail)
	}
}

func (c *cluster) conflictDetail(win *entry) string {
	return fmt.Sprintf("won by %s (%s)", win.addr(), c.r.resolverName())
}

// resolve picks the winner among a name's candidates (sorted by before).
func (c *cluster) resolve(key string, cands []*entry) *entry {
	switch len(cands) {
	case 0:
		return nil
	case 1:
		return cands[0]
	}
	if c.r.cfg.Resolve == nil {
		return cands[0]
	}
	w := cands[0]
	for _, x := range cands[1:] {
		w = c.r.callResolver(c.name, key, w, x)
	}
	return w
}

// contested returns a copy of a name's candidates when there are several
// (withdrawing a loser changes the slot's slice), else nil.
func contested(cands []*entry) []*entry {
	if len(cands) < 2 {
		return nil
	}
	return slices.Clone(cands)
}

func insertSorted(s []*entry, e *entry) []*entry {
	i, _ := slices.BinarySearchFunc(s, e, func(a, b *entry) int {
		if a.before(b) {
			return -1
		}
		if b.before(a) {
			return 1
		}
		return 0
	})
	return slices.Insert(s, i, e)
}

func removeEntry(s []*entry, e *entry) []*entry {
	if i := slices.Index(s, e); i >= 0 {
		return slices.Delete(s, i, i+1)
	}
	return s
}

// --- groups -------------------------------------------------------------

func (c *cluster) memberPutLocked(b *batch, e *entry) {
	key := e.id.key
	sh := c.groups.shard(key)
	sh.mu.Lock()
	slot := sh.m[key]
	fresh := slot == nil
	if fresh {
		slot = &groupSlot{members: make(map[Addr]*entry)}
		sh.m[key] = slot
	}
	a := e.addr()
	prev := slot.members[a]
	slot.members[a] = e
	slot.snap.Store(nil)
	sh.mu.Unlock()
	if fresh {
		c.groupPrefix.add(key)
	}
	switch {
	case prev == nil:
		c.emit(b, c.event(Joined, e))
	case !bytes.Equal(prev.meta, e.meta):
		ev := c.event(Joined, e)
		ev.Update, ev.PreviousMeta = true, prev.meta
		c.emit(b, ev)
	}
}

func (c *cluster) memberDelLocked(b *batch, old *entry, reason Reason, detail string) {
	key := old.id.key
	sh := c.groups.shard(key)
	sh.mu.Lock()
	slot := sh.m[key]
	if slot == nil || slot.members[old.addr()] != old {
		sh.mu.Unlock()
		return
	}
	delete(slot.members, old.addr())
	slot.snap.Store(nil)
	empty := len(slot.members) == 0
	if empty {
		delete(sh.m, key)
	}
	sh.mu.Unlock()
	if empty {
		c.groupPrefix.remove(key)
	}
	ev := c.event(Left, old)
	ev.Reason, ev.Detail = reason, detail
	c.emit(b, ev)
}

func (c *cluster) event(k EventKind, e *entry) Event {
	return Event{Kind: k, Cluster: c.name, Key: e.id.key, Addr: e.addr(), Meta: e.meta}
}

// --- whole streams ------------------------------------------------------

// dropStreamLocked removes every entry of a stream and the stream itself,
// as one batch of events.
func (c *cluster) dropStreamLocked(b *batch, st *stream, reason Reason, detail string) {
	ids := make([]entryID, 0, len(st.entries))
	for id := range st.entries {
		ids = append(ids, id)
	}
	sortIDs(ids)
	for _, id := range ids {
		c.delLocked(b, st, id, reason, detail)
	}
	if st != c.own {
		delete(c.streams, st.origin)
	}
}

// sortIDs orders entry ids by key, then kind, then process, so that a
// batch's events come in a stable order.
func sortIDs(ids []entryID) {
	slices.SortFunc(ids, func(a, b entryID) int {
		switch {
		case a.key != b.key:
			if a.key < b.key {
				return -1
			}
			return 1
		case a.kind != b.kind:
			return int(a.kind) - int(b.kind)
		case a.proc < b.proc:
			return -1
		case a.proc > b.proc:
			return 1
		}
		return 0
	})
}
