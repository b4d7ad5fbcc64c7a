package registry

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"hash/maphash"
	"maps"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/macula-io/macula/ucan"
)

func errMalformedf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errMalformed}, args...)...)
}

const dispatchCmd = ucan.Dispatch

// peerMay checks, in a secure realm, that peer p's grant allows cmd on a
// key or prefix.
func (r *Registry) peerMay(p peer.ID, cmd ucan.Command, key string) error {
	if !r.secure {
		return nil
	}
	if key == "" || key[len(key)-1] == '/' {
		return ucan.CheckPattern(r.access.Peer(p), cmd, ResourcePattern(r.cfg.Realm, key))
	}
	return ucan.Check(r.access.Peer(p), cmd, Resource(r.cfg.Realm, key))
}

// --- liveness -------------------------------------------------------------

func (r *Registry) setLive(p peer.ID, live bool) {
	r.repl.mu.Lock()
	if live {
		r.repl.live[p] = true
	} else {
		delete(r.repl.live, p)
	}
	r.repl.mu.Unlock()
	r.kickAntiEntropy()
}

// mayRelay reports whether this node accepts origin's entries from a peer
// other than origin: only in an open realm (an entry from origin is only
// checked against origin's grant on origin's own link), and only while
// the membership says origin is alive (without a membership, this node
// cannot tell when to drop them).
func (r *Registry) mayRelay(origin peer.ID) bool {
	if r.secure || r.members == nil {
		return false
	}
	r.repl.mu.Lock()
	defer r.repl.mu.Unlock()
	return r.repl.live[origin]
}

// relayable returns the origins whose entries this node may relay (see
// mayRelay), as a copy: onDigest holds a cluster's and a link's locks,
// and the lock order puts the replication's lock between those two.
func (r *Registry) relayable() map[peer.ID]bool {
	if r.secure || r.members == nil {
		return nil
	}
	r.repl.mu.Lock()
	defer r.repl.mu.Unlock()
	return maps.Clone(r.repl.live)
}

// purgeNode drops a node's streams: in every cluster, or only in the named
// cluster when only is not "".
func (r *Registry) purgeNode(p peer.ID, reason Reason, detail, only string) {
	var cs []*cluster
	if only != "" {
		if c := r.connected(only); c != nil {
			cs = append(cs, c)
		}
	} else {
		r.mu.RLock()
		cs = r.clusterList()
		r.mu.RUnlock()
	}
	for _, c := range cs {
		c.mu.Lock()
		st := c.streams[p]
		if st == nil {
			c.mu.Unlock()
			continue
		}
		var b batch
		c.dropStreamLocked(&b, st, reason, detail)
		c.flushLocked(&b)
		c.mu.Unlock()
		c.notify(&b)
		r.kickAntiEntropy()
	}
}

// --- digests ----------------------------------------------------------------

// digestOf returns what this node holds of a cluster.
func (c *cluster) digestLocked(resync bool) digest {
	d := digest{cluster: c.name, resync: resync, streams: make([]digestEntry, 0, len(c.streams))}
	for _, st := range c.streams {
		d.streams = append(d.streams, digestEntry{origin: st.origin, epoch: st.epoch, ver: st.ver})
	}
	slices.SortFunc(d.streams, func(a, b digestEntry) int {
		if a.origin < b.origin {
			return -1
		}
		return 1
	})
	return d
}

// queueDigest queues our digest of c to the peer.
func (l *peerLink) queueDigest(c *cluster, resync bool) {
	c.mu.Lock()
	d := c.digestLocked(resync)
	c.mu.Unlock()
	l.mu.Lock()
	if l.s != nil && !l.closed && !l.draining {
		l.ctrl = appendDigest(l.ctrl, d)
	}
	l.mu.Unlock()
	l.signal()
}

// Quiet digests. A digest a second to every linked peer is most of what an
// idle realm does (the registry's reads were the largest part of a node's
// CPU in a 50-node realm, every node linked to 30 others), and it says
// nothing while nothing changes. So a link gets our digests on a tick only
// when (a) what this node holds changed since the last digests it got
// (a fingerprint of every stream's epoch and version), (b) the peer's last
// digest differed from what we hold, within eagerTicks ticks of it (a peer
// behind on a stream it cannot get from the stream's node stays behind on
// consecutive digests, and that is what makes a linked node relay the
// stream: onDigest), or (c) quietTicks ticks passed (the repair of
// anything lost, at a pace that does not grow with activity). A change
// still reaches every linked peer at once (pushes do not wait for
// digests), and a new session starts with digests both ways. Nothing on a
// live link is lost (a stream of QUIC; replicated state is sent from the
// current state, never dropped), so (c) is a safety net: every 30 ticks
// it was, with the QUIC keep-alives, most of an idle 50-node realm's
// packets (a node linked to 20 peers got and sent a digest every 1.5 s).
const (
	eagerTicks = 3
	quietTicks = 300
)

// askDigests sends our digests to the linked peers that are due (see
// above) at now, and reports whether any was.
func (r *Registry) askDigests(now time.Time) (sent bool) {
	fp := r.fingerprint()
	quiet := quietTicks * r.cfg.AntiEntropy
	for _, l := range r.allLinks() {
		l.mu.Lock()
		due := l.digestFP != fp || now.Before(l.eagerUntil) || now.Sub(l.digestAt) >= quiet
		l.mu.Unlock()
		if due && r.sendDigests(l) {
			sent = true
			l.mu.Lock()
			l.digestFP, l.digestAt = fp, now
			l.mu.Unlock()
		}
	}
	return sent
}

// eagerDigests sends our digests to every linked peer now and on the
// next eagerTicks ticks.
func (r *Registry) eagerDigests() {
	now := time.Now()
	for _, l := range r.allLinks() {
		l.mu.Lock()
		l.eagerUntil = now.Add(eagerTicks * r.cfg.AntiEntropy)
		l.mu.Unlock()
	}
	r.askDigests(now)
}

// fingerprintSeed keys the fingerprints; they are compared within this
// process only.
var fingerprintSeed = maphash.MakeSeed()

// fingerprint sums a hash of every stream's cluster, origin, epoch and
// version: any change of what this node holds changes it (all but
// certainly), whatever the order of the streams. It runs on every tick and
// allocates nothing.
func (r *Registry) fingerprint() uint64 {
	r.mu.RLock()
	cs := r.clusterList()
	r.mu.RUnlock()
	var fp uint64
	for _, c := range cs {
		name := maphash.String(fingerprintSeed, c.name)
		c.mu.Lock()
		for _, st := range c.streams {
			origin := maphash.String(fingerprintSeed, string(st.origin))
			fp += mix64(name^mix64(origin)) ^ mix64(st.epoch) ^ mix64(st.ver+0x9e3779b97f4a7c15)
		}
		c.mu.Unlock()
	}
	return fp
}

// mix64 is splitmix64's finalizer: a bijection that spreads every bit.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// sendDigests queues our digests of the clusters shared with the peer,
// and reports whether it queued any.
func (r *Registry) sendDigests(l *peerLink) bool {
	r.mu.RLock()
	cs := r.clusterList()
	r.mu.RUnlock()
	sent := false
	for _, c := range cs {
		l.mu.Lock()
		ok := l.helloSeen && l.s != nil && (c.name == "" || l.clusters[c.name])
		l.mu.Unlock()
		if ok {
			l.queueDigest(c, false)
			sent = true
		}
	}
	return sent
}

// antiEntropy sends every linked peer our digests every AntiEntropy
// interval: a peer that is behind on a stream it cannot get from the
// stream's own node gets it from us, and anything lost is repaired.
//
// While a round finds nothing to do (no digest due, no session to open, no
// member to dial), the next waits twice as long, up to idleRounds rounds:
// a wake-up a second on every node of an idle realm did nothing but check.
// Whatever gives a round work kicks the loop (kickAntiEntropy): a change of
// what this node holds, a frame from a peer, a session that ends, a member
// that comes or goes; the loop then runs AntiEntropy after its last round
// (never more often, so a burst of changes costs one round). What a kick
// misses waits idleRounds intervals at most; what is time-based (the quiet
// digests, the eager digests after a differing one) is reckoned in time,
// not rounds.
func (r *Registry) antiEntropy() {
	defer r.wg.Done()
	every := r.cfg.AntiEntropy
	wait := every
	t := time.NewTimer(wait)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-r.repl.kick:
			if wait == every {
				continue // the next round is due within AntiEntropy anyway
			}
			wait = every
			t.Reset(max(time.Until(last.Add(every)), 0)) // a pending fire is dropped (Go 1.23 timers)
			continue
		case <-t.C:
		}
		last = time.Now()
		r.repl.rounds.Add(1)
		busy := r.askDigests(last)
		busy = r.dialMembers() || busy
		busy = r.relink() || busy
		if busy {
			wait = every
		} else {
			wait = min(2*wait, idleRounds*every)
		}
		t.Reset(wait)
	}
}

// idleRounds bounds the wait between two rounds of an idle anti-entropy
// loop, in AntiEntropy intervals.
const idleRounds = 8

// kickAntiEntropy wakes the anti-entropy loop if it sleeps long.
func (r *Registry) kickAntiEntropy() {
	select {
	case r.repl.kick <- struct{}{}:
	default:
	}
}

// relink opens a session with every connected peer that speaks the
// protocol and has none (one that ended while the connection stayed, an
// identify that came before we started, an open that failed), where this
// node is the one to open it. It reports whether any peer was without
// one.
func (r *Registry) relink() (busy bool) {
	for _, p := range r.h.Network().Peers() {
		if r.self > p {
			continue
		}
		r.repl.mu.Lock()
		l := r.repl.links[p]
		r.repl.mu.Unlock()
		if l != nil {
			l.mu.Lock()
			ok := l.s != nil || l.opening || l.closed
			l.mu.Unlock()
			if ok {
				continue
			}
		}
		if protos, _ := r.h.Peerstore().SupportsProtocols(p, r.proto); len(protos) > 0 {
			busy = true
			r.ensureLink(p)
		}
	}
	return busy
}

// dialMembers, in a secure realm, connects to live members this node is
// not connected to (at most maxDials at once, each with a backoff up to
// dialBackoffMax): a secure realm accepts a node's entries from that node
// only, and the membership's overlay alone does not connect every pair of
// nodes. An open realm does not dial: its nodes link over the connections
// they have (the overlay's, the DHT's, those in use) and relay each other's
// entries (mayRelay). Dialing every member made a full mesh of
// connections, whose keep-alives and digests were most of what an idle
// node of a large realm did: 100 nodes on two cores never settled.
func (r *Registry) dialMembers() (busy bool) {
	if r.members == nil || !r.secure {
		return false
	}
	now := time.Now()
	r.repl.mu.Lock()
	var todo []peer.ID
	for p := range r.repl.live {
		if r.repl.dialing+len(todo) >= maxDials {
			break
		}
		if r.h.Network().Connectedness(p) == network.Connected {
			delete(r.repl.dials, p)
			continue
		}
		d := r.repl.dials[p]
		if d == nil {
			d = &dialState{}
			r.repl.dials[p] = d
		}
		if now.Before(d.next) {
			continue
		}
		d.failures++
		d.next = now.Add(min(r.cfg.AntiEntropy<<min(d.failures, 10), dialBackoffMax))
		todo = append(todo, p)
	}
	for p := range r.repl.dials {
		if !r.repl.live[p] {
			delete(r.repl.dials, p)
		}
	}
	r.repl.dialing += len(todo)
	busy = len(r.repl.dials) > 0
	r.repl.mu.Unlock()
	for _, p := range todo {
		if !r.enter() {
			r.repl.mu.Lock()
			r.repl.dialing--
			r.repl.mu.Unlock()
			continue
		}
		go func() {
			defer r.wg.Done()
			ctx, cancel := context.WithTimeout(r.ctx, openTimeout)
			err := r.h.Connect(ctx, peer.AddrInfo{ID: p})
			cancel()
			r.repl.mu.Lock()
			r.repl.dialing--
			r.repl.mu.Unlock()
			if err != nil {
				r.log.debug("registry: cannot connect to a member", "peer", p, "err", err)
			}
		}()
	}
	return busy
}

// onDigest compares what the peer holds of a cluster with what we hold,
// and marks what the peer should get from us.
func (l *peerLink) onDigest(d digest) {
	r := l.r
	c := r.connected(d.cluster)
	if c == nil {
		return
	}
	l.mu.Lock()
	in := d.cluster == "" || l.clusters[d.cluster]
	l.mu.Unlock()
	if !in {
		return
	}
	has := make(map[peer.ID]mark, len(d.streams))
	for _, s := range d.streams {
		has[s.origin] = mark{s.epoch, s.ver}
	}
	relay := r.relayable()
	c.mu.Lock()
	l.mu.Lock()
	first := !l.synced[c.name]
	l.synced[c.name] = true
	if differs(c.streams, has, l.id, r.self, relay) {
		l.eagerUntil = time.Now().Add(eagerTicks * r.cfg.AntiEntropy)
	}
	for origin, st := range c.streams {
		if origin == l.id {
			continue // never send a node its own entries
		}
		k := skey{c.name, origin}
		ph, ok := has[origin]
		if ok && ph.epoch != st.epoch {
			ph = mark{} // another life of the stream: a full copy
		}
		if origin == r.self {
			sent, known := l.sent[k]
			switch {
			case first || !known || d.resync:
				l.sent[k] = ph
			case !ok || ph.epoch != st.epoch || ph.ver > sent.ver:
				// The peer dropped our stream (its membership thought us
				// gone) or holds more than we sent: start over from what
				// it says.
				l.sent[k] = ph
			}
			continue
		}
		if !relay[origin] {
			continue
		}
		behind := !ok || ph.ver < st.ver
		prev, seen := l.prev[k]
		l.prev[k] = ph
		// Relay only to a peer that stays behind for a whole interval (or
		// asks): a peer linked to the stream's node gets it from there,
		// and in a full mesh nothing is sent twice.
		if behind && (d.resync || seen && prev == ph) {
			l.sent[k] = ph
			l.need[k] = true
		}
	}
	l.mu.Unlock()
	c.mu.Unlock()
	l.signal()
}

// differs reports whether a peer's digest (has) differs from what this
// node holds (streams) on a stream that digests can bring across: ours,
// and those of the nodes whose entries may be relayed (relay; none in a
// secure realm). The peer's own stream only the peer sends, as it changes.
func differs(streams map[peer.ID]*stream, has map[peer.ID]mark, peerID, self peer.ID, relay map[peer.ID]bool) bool {
	counts := func(origin peer.ID) bool { return origin == self || origin != peerID && relay[origin] }
	for origin, st := range streams {
		if !counts(origin) {
			continue
		}
		if ph, ok := has[origin]; !ok || ph != (mark{st.epoch, st.ver}) {
			return true
		}
	}
	for origin := range has {
		if _, ok := streams[origin]; !ok && counts(origin) {
			return true
		}
	}
	return false
}

// --- pushes -----------------------------------------------------------------

// push is one stream's changes for a peer, taken under the cluster's lock
// and encoded after.
type push struct {
	hdr  delta
	puts []*entry
	dels []op
}

// push sends the next stream the peer lacks, if any, and reports whether
// it sent one.
func (l *peerLink) push(s network.Stream) (bool, error) {
	r := l.r
	r.mu.RLock()
	cs := r.clusterList()
	r.mu.RUnlock()
	for _, c := range cs {
		p := l.nextPush(c)
		if p == nil {
			continue
		}
		if err := l.writePush(s, p); err != nil {
			return false, err
		}
		return true, nil
	}
	return false, nil
}

// nextPush returns the next push of cluster c for the peer, or nil.
func (l *peerLink) nextPush(c *cluster) *push {
	c.mu.Lock()
	defer c.mu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.synced[c.name] || c.gone || (c.name != "" && !l.clusters[c.name]) {
		return nil
	}
	k := skey{c.name, l.r.self}
	if m := l.sent[k]; m.epoch != c.own.epoch || m.ver < c.own.ver {
		return l.takeLocked(c, c.own, k)
	}
	for k := range l.need {
		if k.cluster != c.name {
			continue
		}
		delete(l.need, k)
		st := c.streams[k.origin]
		if st == nil || st.origin == l.id {
			continue
		}
		if m := l.sent[k]; m.epoch == st.epoch && m.ver >= st.ver {
			continue
		}
		return l.takeLocked(c, st, k)
	}
	return nil
}

// takeLocked builds the push of stream st from what the peer holds. The
// caller holds c.mu and l.mu.
func (l *peerLink) takeLocked(c *cluster, st *stream, k skey) *push {
	m := l.sent[k]
	p := &push{hdr: delta{cluster: c.name, origin: st.origin, epoch: st.epoch, to: st.ver}}
	switch {
	case m.epoch != st.epoch || m.ver < st.log.delBase:
		// Another life of the stream, or a removal the peer needs has
		// left the log: a full copy.
		p.hdr.flags = flagFull
		p.puts = make([]*entry, 0, len(st.entries))
		for _, e := range st.entries {
			p.puts = append(p.puts, e)
		}
	default:
		p.hdr.from = m.ver
		// The log is in version order; an entry changed several times
		// goes once, as it is now (a put), or as its last removal.
		var ops []op
		st.log.since(m.ver, func(o op) { ops = append(ops, o) })
		fromState := m.ver < st.log.base
		if fromState {
			// The log does not reach back to the peer's version: the
			// entries changed since come from the state.
			for _, e := range st.entries {
				if e.ver > m.ver {
					p.puts = append(p.puts, e)
				}
			}
		}
		seen := make(map[entryID]bool, len(ops))
		for i := len(ops) - 1; i >= 0; i-- {
			o := ops[i]
			if seen[o.id] {
				continue
			}
			seen[o.id] = true
			if e := st.entries[o.id]; e != nil {
				if e.ver > m.ver && !fromState {
					p.puts = append(p.puts, e)
				}
			} else if o.del {
				p.dels = append(p.dels, o)
			}
		}
	}
	l.sent[k] = mark{st.epoch, st.ver}
	return p
}

// writePush encodes a push in frames of about chunkBytes and writes them.
func (l *peerLink) writePush(s network.Stream, p *push) error {
	r := l.r
	var items []item
	size := 0
	var buf []byte
	total := len(p.puts) + len(p.dels)
	done := 0
	flush := func(last bool) error {
		hdr := p.hdr
		if !last {
			hdr.flags |= flagMore
		}
		buf = appendDelta(buf[:0], &hdr, items)
		items, size = items[:0], 0
		return l.write(s, buf)
	}
	add := func(it item) error {
		items = append(items, it)
		size += itemSize(&it)
		done++
		if (size >= chunkBytes || len(items) >= maxItems) && done < total {
			return flush(false)
		}
		return nil
	}
	// In version order, puts and removals merged, so that the receiver's
	// log stays sorted.
	slices.SortFunc(p.puts, func(a, b *entry) int { return cmp.Compare(a.ver, b.ver) })
	slices.SortFunc(p.dels, func(a, b op) int { return cmp.Compare(a.ver, b.ver) })
	pi, di := 0, 0
	for pi < len(p.puts) || di < len(p.dels) {
		var it item
		if di == len(p.dels) || pi < len(p.puts) && p.puts[pi].ver < p.dels[di].ver {
			e := p.puts[pi]
			pi++
			it = item{op: itemPut, kind: e.id.kind, key: e.id.key, proc: e.id.proc, ver: e.ver, since: e.since, meta: e.meta}
		} else {
			o := p.dels[di]
			di++
			it = item{op: itemDel, kind: o.id.kind, key: o.id.key, proc: o.id.proc, ver: o.ver, reason: o.reason, detail: o.detail}
		}
		if err := add(it); err != nil {
			return err
		}
	}
	if r.log.on() {
		r.log.verbose("registry: sent changes", "peer", l.id, "cluster", p.hdr.cluster, "origin", p.hdr.origin,
			"from", p.hdr.from, "to", p.hdr.to, "full", p.hdr.flags&flagFull != 0, "items", total)
	}
	return flush(true)
}

// --- deltas -----------------------------------------------------------------

// onDelta applies a delta frame from the peer. It returns an error only
// for a protocol violation, which closes the stream.
func (l *peerLink) onDelta(d *delta) error {
	r := l.r
	k := skey{d.cluster, d.origin}
	// Full deltas are applied whole, once their last frame is in.
	if d.flags&flagFull != 0 {
		sg := l.staging[k]
		if sg != nil && (sg.epoch != d.epoch || sg.to != d.to) {
			return errMalformedf("a full delta of %s interrupted by another", d.origin)
		}
		if sg == nil {
			sg = &staged{epoch: d.epoch, to: d.to}
			l.staging[k] = sg
		}
		if len(sg.items)+len(d.items) > r.cfg.MaxOriginEntries {
			delete(l.staging, k)
			r.stats.droppedOverLimit.Add(uint64(len(sg.items) + len(d.items)))
			r.log.warn("registry: a node sent more entries than Config.MaxOriginEntries; dropped", "peer", l.id, "origin", d.origin, "cluster", d.cluster)
			return nil
		}
		for _, it := range d.items {
			it.meta = bytes.Clone(it.meta)
			sg.items = append(sg.items, it)
		}
		if d.flags&flagMore != 0 {
			return nil
		}
		delete(l.staging, k)
		d.items = sg.items
	} else if _, ok := l.staging[k]; ok {
		return errMalformedf("a delta of %s inside a full one", d.origin)
	}
	c := r.connected(d.cluster)
	if c == nil {
		return nil // we left the cluster meanwhile
	}
	l.mu.Lock()
	in := d.cluster == "" || l.clusters[d.cluster]
	l.mu.Unlock()
	if !in {
		return errMalformedf("a delta of cluster %q, which the peer is not in", d.cluster)
	}
	if d.origin == r.self {
		return nil // our own entries, from a previous life: ours are newer
	}
	if d.origin != l.id && !r.mayRelay(d.origin) {
		r.stats.droppedRelayed.Add(uint64(len(d.items)))
		return nil
	}
	var b batch
	c.mu.Lock()
	gap := c.applyLocked(&b, l, d)
	c.flushLocked(&b)
	c.mu.Unlock()
	c.notify(&b)
	if gap {
		r.stats.gaps.Add(1)
		r.stats.resyncAsked.Add(1)
		l.queueDigest(c, true)
	}
	return nil
}

// applyLocked applies a delta (whole) to the stream of d.origin, and
// reports a gap: a delta that starts after what we hold.
func (c *cluster) applyLocked(b *batch, l *peerLink, d *delta) (gap bool) {
	r := c.r
	st := c.streams[d.origin]
	full := d.flags&flagFull != 0
	switch {
	case st != nil && d.epoch < st.epoch:
		return false // an older life of the stream, relayed late
	case st != nil && d.epoch > st.epoch:
		if !full && d.from != 0 {
			return true
		}
		c.dropStreamLocked(b, st, ReasonNodeRestarted, "the node started again")
		st = nil
	case st != nil && !full && d.from > st.ver:
		return true
	case st == nil && !full && d.from != 0:
		return true
	}
	if st == nil {
		st = newStream(d.origin, d.epoch)
		c.streams[d.origin] = st
	}
	// Items the origin may not have written (secure realm) are dropped;
	// so are entries over the local metadata limit.
	keep := func(it *item) bool {
		if it.op != itemPut {
			return true
		}
		if len(it.meta) > r.cfg.MaxMetaSize {
			r.stats.droppedOverLimit.Add(1)
			return false
		}
		if r.secure {
			if err := r.peerMay(d.origin, commandOf[it.kind], it.key); err != nil {
				r.stats.droppedUnauthorized.Add(1)
				return false
			}
		}
		return true
	}
	if full {
		c.applyFullLocked(b, st, d, keep)
		r.stats.snapshotsApplied.Add(1)
	} else {
		added := 0
		for i := range d.items {
			if it := &d.items[i]; it.op == itemPut && st.entries[entryID{it.kind, it.key, it.proc}] == nil {
				added++
			}
		}
		if len(st.entries)+added > r.cfg.MaxOriginEntries {
			r.stats.droppedOverLimit.Add(uint64(len(d.items)))
			return false
		}
		for i := range d.items {
			it := &d.items[i]
			if it.ver <= st.ver || !keep(it) {
				continue
			}
			c.applyItemLocked(b, st, it)
		}
		if d.flags&flagMore == 0 {
			st.ver = max(st.ver, d.to)
		}
		r.stats.deltasApplied.Add(1)
	}
	if l != nil && d.origin == l.id {
		st.direct = true
	}
	for i := range d.items {
		if d.items[i].op == itemPut {
			r.clock.observe(d.items[i].since)
		}
	}
	if r.log.on() {
		r.log.verbose("registry: applied changes", "peer", l.id, "cluster", c.name, "origin", d.origin,
			"from", d.from, "to", d.to, "full", full, "items", len(d.items))
	}
	return false
}

// applyItemLocked applies one item of a delta, and logs it so that this
// node can pass it on.
func (c *cluster) applyItemLocked(b *batch, st *stream, it *item) {
	id := entryID{it.kind, it.key, it.proc}
	cur := st.entries[id]
	if it.op == itemPut {
		if cur != nil && cur.ver >= it.ver {
			return
		}
		st.log.add(op{ver: it.ver, id: id}, c.r.cfg.ReplicationLog)
		c.putLocked(b, st, &entry{id: id, node: st.origin, meta: bytes.Clone(it.meta), ver: it.ver, since: it.since})
		return
	}
	st.log.add(op{ver: it.ver, id: id, del: true, reason: it.reason, detail: it.detail}, c.r.cfg.ReplicationLog)
	if cur != nil && cur.ver < it.ver {
		c.delLocked(b, st, id, it.reason, it.detail)
	}
}

// applyFullLocked replaces a stream's entries with a full copy.
func (c *cluster) applyFullLocked(b *batch, st *stream, d *delta, keep func(*item) bool) {
	in := make(map[entryID]bool, len(d.items))
	for i := range d.items {
		it := &d.items[i]
		in[entryID{it.kind, it.key, it.proc}] = true
	}
	var gone []entryID
	for id := range st.entries {
		if !in[id] {
			gone = append(gone, id)
		}
	}
	sortIDs(gone)
	for _, id := range gone {
		c.delLocked(b, st, id, ReasonRemoved, "absent from the node's current state")
	}
	for i := range d.items {
		it := &d.items[i]
		if !keep(it) {
			continue
		}
		id := entryID{it.kind, it.key, it.proc}
		if cur := st.entries[id]; cur != nil && cur.ver >= it.ver {
			continue
		}
		c.putLocked(b, st, &entry{id: id, node: st.origin, meta: it.meta, ver: it.ver, since: it.since})
	}
	st.ver = d.to
	st.log.reset(d.to)
}
