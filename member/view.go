package member

import (
	"crypto/sha256"
	"encoding/binary"
	"math"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// view is the membership as this node sees it: its own record and an entry
// per other node, alive, suspected, failed or departed. It applies the
// merge rules of the package doc and says what changed; it does no I/O and
// is not safe for concurrent use (Members guards it with its mu).
type view struct {
	// Set in newView, read-only after.
	self         peer.ID
	rings        int
	maxEntries   int
	suspicionTTL time.Duration
	confirm      int

	selfKeys []uint64
	selfRec  *record
	selfWire []byte
	selfDH   [hashLen]byte

	entries map[peer.ID]*entry
	hash    [hashLen]byte // xor of the digest hashes of self and every entry
	live    int           // entries alive or suspected
	version uint64        // bumped on every public change
	// suspects are the entries under suspicion, so that the tick loop
	// does not walk every member.
	suspects map[peer.ID]*entry
}

// entry is what the view holds of another node.
type entry struct {
	id        peer.ID
	rec       *record // nil for a tombstone learnt without a record
	recWire   []byte  // rec, encoded and signed, to forward as it came
	st        state
	inc       uint64 // the incarnation st is about (at least rec.Incarnation)
	alertWire []byte // failed or left: the alert that said so
	since     time.Time
	keys      []uint64 // ring positions, one per ring
	dh        [hashLen]byte
	sus       *suspicion // st == stateSuspect
}

// suspicion is an open suspicion of an entry.
type suspicion struct {
	deadline time.Time
	// latest bounds deadline when this node's stalls push it back: a node
	// that stalls on every tick (a machine under heavy load) still
	// concludes its suspicions, within (1+maxHealth) * SuspicionTimeout.
	latest time.Time
	// authors maps each member that suspects the subject to its alert, to
	// forward it; confirmed counts those whose link to the subject went
	// silent (alertSuspect), which conclude the suspicion early.
	authors   map[peer.ID][]byte
	confirmed int
}

// maxAuthors bounds the suspicion alerts kept per suspect.
const maxAuthors = 16

func newView(self peer.ID, rings, maxEntries int, suspicionTTL time.Duration, confirm int) *view {
	return &view{
		self: self, rings: rings, maxEntries: maxEntries, suspicionTTL: suspicionTTL, confirm: confirm,
		selfKeys: ringKeys(self, rings),
		entries:  make(map[peer.ID]*entry),
		suspects: make(map[peer.ID]*entry),
	}
}

// ringKeys returns a node's position on each ring.
func ringKeys(id peer.ID, rings int) []uint64 {
	out := make([]uint64, rings)
	for r := range out {
		h := sha256.Sum256(append([]byte{byte(r)}, id...))
		out[r] = binary.BigEndian.Uint64(h[:8])
	}
	return out
}

// digestState is what a digest says of a state: suspicion is transient,
// so it reads as alive.
func digestState(s state) state {
	if s == stateSuspect {
		return stateAlive
	}
	return s
}

func digestHash(id peer.ID, inc uint64, s state) (h [hashLen]byte) {
	b := appendDigestEntry(nil, digestEntry{ID: id, Incarnation: inc, State: digestState(s)})
	sum := sha256.Sum256(b)
	copy(h[:], sum[:])
	return h
}

func xorInto(dst *[hashLen]byte, h [hashLen]byte) {
	for i := range dst {
		dst[i] ^= h[i]
	}
}

// rehash sets e's digest hash after a change of its state or incarnation.
func (v *view) rehash(e *entry) {
	xorInto(&v.hash, e.dh)
	e.dh = digestHash(e.id, e.inc, e.st)
	xorInto(&v.hash, e.dh)
}

// setSelf installs the node's own record (signed, encoded).
func (v *view) setSelf(r *record, wire []byte) {
	xorInto(&v.hash, v.selfDH)
	v.selfRec, v.selfWire = r, wire
	v.selfDH = digestHash(v.self, r.Incarnation, stateAlive)
	xorInto(&v.hash, v.selfDH)
}

func (v *view) summary() summary {
	return summary{Hash: v.hash, Members: uint64(v.live + 1)}
}

// isLive reports whether e counts as a member.
func (e *entry) isLive() bool { return e.st == stateAlive || e.st == stateSuspect }

// member returns e as a Member; e must hold a record.
func (e *entry) member() Member { return memberOf(e.rec) }

func memberOf(r *record) Member {
	return Member{
		ID:           r.ID,
		Name:         r.Name,
		Capabilities: slices.Clone(r.Capabilities),
		Clusters:     slices.Clone(r.Clusters),
		Incarnation:  r.Incarnation,
	}
}

// result is what applying news did.
type result struct {
	// accepted: the news changed the view; forward it.
	accepted bool
	// refute: the news was about this node, which must bump its
	// incarnation and send its record.
	refute bool
	// conclude: the subject's suspicion has enough confirmations; declare
	// it failed now.
	conclude bool
	// full: refused because the view holds MaxMembers entries.
	full bool
	// changes for watchers and the event bus, in order.
	changes []Change
}

func (v *view) change(res *result, kind ChangeKind, m, prev Member, reason string) {
	v.version++
	res.changes = append(res.changes, Change{Kind: kind, Member: m, Previous: prev, Version: v.version, Reason: reason})
}

// knows reports whether the view already has news of id at incarnation inc
// or later, so that a frame carrying inc can be dropped before its
// signature is checked.
func (v *view) knows(id peer.ID, inc uint64) bool {
	if id == v.self {
		return v.selfRec != nil && inc <= v.selfRec.Incarnation && inc != 0
	}
	e := v.entries[id]
	return e != nil && inc <= e.inc
}

// applyRecord merges a member's record (already verified).
func (v *view) applyRecord(r *record, wire []byte, now time.Time) (res result) {
	if r.ID == v.self {
		// News of ourselves at our incarnation or later, which we did not
		// make in this run: refute it with a later one.
		if r.Incarnation >= v.selfRec.Incarnation && string(wire) != string(v.selfWire) {
			res.refute = true
		}
		return res
	}
	e := v.entries[r.ID]
	if e == nil {
		if len(v.entries) >= v.maxEntries && !v.reapOne() {
			res.full = true
			return res
		}
		e = &entry{id: r.ID, keys: ringKeys(r.ID, v.rings)}
		v.entries[r.ID] = e
		v.install(e, r, wire, now)
		v.live++
		res.accepted = true
		v.change(&res, Joined, e.member(), Member{}, "")
		return res
	}
	if r.Incarnation <= e.inc {
		return res // old news, or a tombstone at this incarnation
	}
	wasLive := e.isLive()
	var prev Member
	restarted, changed := false, false
	if e.rec != nil {
		prev = e.member()
		restarted = e.rec.Boot != r.Boot
		changed = !sameMember(prev, memberOf(r))
	}
	v.install(e, r, wire, now)
	res.accepted = true
	switch {
	case !wasLive:
		v.live++
		v.change(&res, Joined, e.member(), Member{}, "")
	case changed || restarted:
		reason := "changed"
		if restarted {
			reason = "restarted"
		}
		v.change(&res, Updated, e.member(), prev, reason)
	}
	return res
}

// install makes r the entry's record, alive.
func (v *view) install(e *entry, r *record, wire []byte, now time.Time) {
	e.rec, e.recWire = r, wire
	e.st, e.inc, e.alertWire, e.since = stateAlive, r.Incarnation, nil, now
	if e.sus != nil {
		e.sus = nil
		delete(v.suspects, e.id)
	}
	v.rehash(e)
}

// sameMember compares what watchers see of a member, but the incarnation.
func sameMember(a, b Member) bool {
	return a.Name == b.Name && slices.Equal(a.Capabilities, b.Capabilities) && slices.Equal(a.Clusters, b.Clusters)
}

// applyAlert merges a suspicion, failure or departure (already verified).
func (v *view) applyAlert(a *alert, wire []byte, now time.Time) (res result) {
	if a.Subject == v.self {
		if a.Incarnation >= v.selfRec.Incarnation {
			res.refute = true
		}
		return res
	}
	e := v.entries[a.Subject]
	if e == nil {
		if a.Kind.suspicion() {
			return res // of a member we do not know
		}
		if len(v.entries) >= v.maxEntries && !v.reapOne() {
			res.full = true
			return res
		}
		// A tombstone without a record: a late record of this
		// incarnation is refused.
		e = &entry{id: a.Subject, keys: ringKeys(a.Subject, v.rings)}
		v.entries[a.Subject] = e
		v.bury(e, a, wire, now)
		res.accepted = true
		return res
	}
	if a.Incarnation < e.inc || (a.Incarnation > e.inc && a.Kind.suspicion()) {
		// Old news; or a suspicion of a record we have not seen yet.
		return res
	}
	switch a.Kind {
	case alertLeft:
		if e.st == stateLeft && a.Incarnation == e.inc {
			if e.alertWire == nil {
				// We knew from its goodbye (departed); now we hold its
				// word, to pass on.
				e.alertWire = wire
				res.accepted = true
			}
			return res
		}
		v.end(&res, e, a, wire, now, Left, "left")
	case alertFailed:
		if e.st == stateLeft || (e.st == stateFailed && a.Incarnation == e.inc) {
			return res
		}
		if a.Incarnation == e.inc {
			if e.st == stateAlive {
				// We saw no sign of it: give it the time to refute (this is
				// how a split realm merges without every member on one side
				// failing and coming back on the other).
				v.suspect(e, now)
				res.accepted = true
				return res
			}
			if len(e.sus.authors) == 0 && a.Author != v.self {
				// Our suspicion rests on news of its failure alone (this
				// alert, by another way, or another's): it ends by its
				// timeout (our own alert, declareFailedLocked) or its
				// refutation, not by hearsay.
				return res
			}
		}
		v.end(&res, e, a, wire, now, Failed, "failed")
	case alertSuspect, alertUnreachable:
		if !e.isLive() {
			return res
		}
		if e.st == stateAlive {
			v.suspect(e, now)
		}
		if _, ok := e.sus.authors[a.Author]; ok || len(e.sus.authors) >= maxAuthors {
			return res
		}
		e.sus.authors[a.Author] = wire
		if a.Kind == alertSuspect {
			e.sus.confirmed++
		}
		res.accepted = true
		res.conclude = e.sus.confirmed >= v.needed(e)
	}
	return res
}

// departed records that a live member left, on the word of the node's
// goodbye rather than the member's own signed departure (which may follow:
// see applyAlert). Nothing is forwarded: only the member's word travels.
func (v *view) departed(id peer.ID, now time.Time) (res result) {
	e := v.entries[id]
	if e == nil || !e.isLive() || e.rec == nil {
		return res
	}
	v.end(&res, e, &alert{Kind: alertLeft, Subject: id, Incarnation: e.inc, Author: id}, nil, now, Left, "said goodbye")
	res.accepted = false
	return res
}

// suspicionFor is how long a suspicion waits for a refutation when it is
// not confirmed: SuspicionTimeout in a realm of up to 10 live members,
// growing with log10 of their number above that (twice at 100, three times
// at 1,000), as memberlist's does. The suspected member's refutation
// crosses the overlay in O(log N) hops, and in a starved realm it comes
// late: of 22,824 failures logged in a run of 100 nodes on two cores,
// 21,271 were such lone suspicions left unrefuted for 4 s. A member that
// really died is suspected by its watchers (Confirmations of them) and
// declared failed at once, whatever this timeout.
func (v *view) suspicionFor() time.Duration {
	return time.Duration(float64(v.suspicionTTL) * max(1, math.Log10(float64(v.live))))
}

// suspect opens a suspicion of a live entry.
func (v *view) suspect(e *entry, now time.Time) {
	if e.sus != nil {
		return
	}
	e.st = stateSuspect
	ttl := v.suspicionFor()
	e.sus = &suspicion{deadline: now.Add(ttl), latest: now.Add(time.Duration(1+maxHealth) * ttl),
		authors: make(map[peer.ID][]byte)}
	v.suspects[e.id] = e
	// The digest state does not change: suspicion reads as alive.
}

// end turns a live or dead entry into a tombstone of a's kind.
func (v *view) end(res *result, e *entry, a *alert, wire []byte, now time.Time, kind ChangeKind, reason string) {
	wasLive := e.isLive() && e.rec != nil
	var m Member
	if wasLive {
		m = e.member()
	}
	if e.isLive() {
		v.live--
	}
	v.bury(e, a, wire, now)
	res.accepted = true
	if wasLive {
		v.change(res, kind, m, m, reason)
	}
}

// bury makes e a tombstone of alert a.
func (v *view) bury(e *entry, a *alert, wire []byte, now time.Time) {
	e.st, e.inc, e.alertWire, e.since = a.Kind.state(), a.Incarnation, wire, now
	if e.sus != nil {
		e.sus = nil
		delete(v.suspects, e.id)
	}
	v.rehash(e)
}

// needed is how many suspicions declare e failed at once: Confirmations,
// but no more than the members that watch it (its predecessors on the
// rings), and at least one.
func (v *view) needed(e *entry) int {
	return max(1, min(v.confirm, len(v.watchersOf(e.id, e.keys))))
}

// watchersOf returns the distinct predecessors of a node (at positions
// keys) on the rings, among the live members and this node.
func (v *view) watchersOf(id peer.ID, keys []uint64) []peer.ID {
	var out []peer.ID
	for r := 0; r < v.rings; r++ {
		var best peer.ID
		var bestD uint64
		consider := func(cand peer.ID, k uint64) {
			if cand == id {
				return
			}
			d := keys[r] - k // distance going backwards, wrapping
			if best == "" || d < bestD || (d == bestD && cand < best) {
				best, bestD = cand, d
			}
		}
		consider(v.self, v.selfKeys[r])
		for _, e := range v.entries {
			if e.isLive() {
				consider(e.id, e.keys[r])
			}
		}
		if best != "" && !slices.Contains(out, best) {
			out = append(out, best)
		}
	}
	return out
}

// neighbours returns the live members this node links to: its successor
// and predecessor on each ring.
func (v *view) neighbours() []peer.ID {
	sk := v.selfKeys
	var out []peer.ID
	for r := 0; r < v.rings; r++ {
		var succ, pred peer.ID
		var sd, pd uint64
		for _, e := range v.entries {
			if !e.isLive() {
				continue
			}
			fwd := e.keys[r] - sk[r]  // distance going forwards
			back := sk[r] - e.keys[r] // going backwards
			if succ == "" || fwd < sd || (fwd == sd && e.id < succ) {
				succ, sd = e.id, fwd
			}
			if pred == "" || back < pd || (back == pd && e.id < pred) {
				pred, pd = e.id, back
			}
		}
		for _, p := range []peer.ID{succ, pred} {
			if p != "" && !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	return out
}

// expired returns the suspects whose time to refute is over.
func (v *view) expired(now time.Time) []*entry {
	var out []*entry
	for _, e := range v.suspects {
		if !now.Before(e.sus.deadline) {
			out = append(out, e)
		}
	}
	return out
}

// reap drops tombstones older than ttl.
func (v *view) reap(now time.Time, ttl time.Duration) {
	for id, e := range v.entries {
		if !e.isLive() && now.Sub(e.since) >= ttl {
			xorInto(&v.hash, e.dh)
			delete(v.entries, id)
		}
	}
}

// reapOne drops the oldest tombstone to make room, and reports whether
// there was one.
func (v *view) reapOne() bool {
	var old *entry
	for _, e := range v.entries {
		if !e.isLive() && (old == nil || e.since.Before(old.since)) {
			old = e
		}
	}
	if old == nil {
		return false
	}
	xorInto(&v.hash, old.dh)
	delete(v.entries, old.id)
	return true
}

// members returns the live members with a record, and this node, sorted by
// ID.
func (v *view) members() []Member {
	out := make([]Member, 0, v.live+1)
	out = append(out, memberOf(v.selfRec))
	for _, e := range v.entries {
		if e.isLive() && e.rec != nil {
			out = append(out, e.member())
		}
	}
	slices.SortFunc(out, func(a, b Member) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return out
}

// digestEntries returns the digest of the whole view.
func (v *view) digestEntries() []digestEntry {
	out := make([]digestEntry, 0, len(v.entries)+1)
	out = append(out, digestEntry{ID: v.self, Incarnation: v.selfRec.Incarnation, State: stateAlive})
	for _, e := range v.entries {
		out = append(out, digestEntry{ID: e.id, Incarnation: e.inc, State: digestState(e.st)})
	}
	return out
}

// newer reports whether this view knows more of d's member than d says.
func (v *view) newer(d digestEntry) bool {
	if d.ID == v.self {
		return v.selfRec.Incarnation > d.Incarnation
	}
	e := v.entries[d.ID]
	if e == nil {
		return false
	}
	s := digestState(e.st)
	return e.inc > d.Incarnation || (e.inc == d.Incarnation && s > d.State)
}

// fact returns what to send a peer that lacks news of id: a record or an
// alert frame, or nothing.
func (v *view) fact(id peer.ID) (typ uint8, wire []byte) {
	if id == v.self {
		return typeRecord, v.selfWire
	}
	e := v.entries[id]
	switch {
	case e == nil:
		return 0, nil
	case e.isLive():
		return typeRecord, e.recWire
	default:
		return typeAlert, e.alertWire
	}
}
