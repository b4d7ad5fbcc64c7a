package actors

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/macula-io/macula/event"
	"github.com/macula-io/macula/member"
	"github.com/macula-io/macula/ring"
	"github.com/macula-io/macula/rpc"
	"github.com/macula-io/macula/ucan"
)

// This file decides where a message goes: the owner of its shard in this
// node's view of the membership, and what a node does while shards move.
//
// Ownership of a shard changes in three steps on the node that loses it:
// the shard is marked leaving (its admission lock makes the mark take
// effect between two messages), so new messages are sent on to the new
// owner; its actors finish the messages they already have, then are
// snapshotted, stopped and sent; last, a final handoff message releases the
// shard. The node that gains a shard from a live previous owner holds its
// messages at a gate until that release (or HandoffTimeout). Since the old
// owner answers every message it has accepted before it hands over, and the
// new owner answers none before the release, each sender's messages are
// handled in order and an actor runs on one node at a time, as long as both
// nodes' views agree on who the previous owner was.

// view is one membership view and the placements computed from it.
type view struct {
	version uint64
	live    map[peer.ID]bool
	caps    map[string]*ring.Placement // capabilities some live node serves
}

// owner returns the owner of shard of capability in v.
func (v *view) owner(capability string, shard int) (peer.ID, bool) {
	p := v.caps[capability]
	if p == nil {
		return "", false
	}
	o, ok := p.Owner(shard)
	return peer.ID(o), ok
}

// capState is what a node knows about the shards of one capability beyond
// its view: which are moving in or out.
type capState struct {
	name string
	// locks: admission (RLock) against ownership changes (Lock), per shard.
	locks [ring.Shards]sync.RWMutex
	// flags[shard] is nonzero while the shard has an entry in gates,
	// leaving or adopted: only then does admission take mu.
	flags [ring.Shards]atomic.Uint32

	// mu guards the maps.
	mu sync.Mutex
	// gates: shards gained from a live previous owner, waiting for its
	// handoff.
	gates map[int]*gate
	// leaving: shards being handed to another node (the value), whose
	// messages are sent on to it.
	leaving map[int]peer.ID
	// adopted: shards that their owner in this node's view (the value)
	// handed to this node before the view said so.
	adopted map[int]peer.ID
}

func (cs *capState) setFlagLocked(shard int) {
	_, g := cs.gates[shard]
	_, l := cs.leaving[shard]
	_, a := cs.adopted[shard]
	if g || l || a {
		cs.flags[shard].Store(1)
	} else {
		cs.flags[shard].Store(0)
	}
}

// gate holds the messages of a gained shard until the previous owner's
// handoff arrives, the previous owner says it does not hold the shard, or
// its batch's timer fires. Then the messages that waited pass one at a
// time, in the order they came: a sender whose call timed out while it
// waited sends its next message to the same gate, and that one must not
// overtake it.
type gate struct {
	from peer.ID
	ch   chan struct{}
	once sync.Once

	// mu guards the turns of the messages that wait.
	mu      sync.Mutex
	tickets uint64          // handed out
	turn    uint64          // the ticket that may pass now
	gone    map[uint64]bool // tickets given up before their turn
	next    chan struct{}   // closed when turn advances; nil until needed
}

func (g *gate) open() { g.once.Do(func() { close(g.ch) }) }

// ticket returns a message's place in the line at g.
func (g *gate) ticket() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.tickets++
	return g.tickets - 1
}

// wait waits for the gate to open and for the messages with earlier
// tickets to pass; t is to be given back (done) once the message has been
// admitted or turned away. On error, t has been given back.
func (g *gate) wait(ctx context.Context, t uint64) error {
	select {
	case <-g.ch:
	case <-ctx.Done():
		g.done(t)
		return ctxErr(ctx)
	}
	for {
		g.mu.Lock()
		if g.turn == t {
			g.mu.Unlock()
			if ctx.Err() != nil {
				// Its sender has given up: do not deliver it late.
				g.done(t)
				return ctxErr(ctx)
			}
			return nil
		}
		if g.next == nil {
			g.next = make(chan struct{})
		}
		next := g.next
		g.mu.Unlock()
		select {
		case <-next:
		case <-ctx.Done():
			g.done(t)
			return ctxErr(ctx)
		}
	}
}

// done gives ticket t back: the next message may pass.
func (g *gate) done(t uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if t != g.turn {
		if g.gone == nil {
			g.gone = map[uint64]bool{}
		}
		g.gone[t] = true
		return
	}
	g.turn++
	for g.gone[g.turn] {
		delete(g.gone, g.turn)
		g.turn++
	}
	if g.next != nil {
		close(g.next)
		g.next = nil
	}
}

// gateTurn is a message's ticket at a gate, given back once (nil: none).
type gateTurn struct {
	g *gate
	t uint64
}

func (gt *gateTurn) release() {
	if gt != nil && gt.g != nil {
		gt.g.done(gt.t)
		gt.g = nil
	}
}

// gateBatch is the gates one view change set for shards of one capability
// gained from one previous owner: one timer and one query for all.
type gateBatch struct {
	cs     *capState
	from   peer.ID
	shards []int
	gates  []*gate
}

// expire opens the batch's gates that are still shut (HandoffTimeout
// passed), with one warning for all.
func (r *router) expire(b *gateBatch) {
	n := 0
	b.cs.mu.Lock()
	for i, sh := range b.shards {
		if g := b.gates[i]; b.cs.gates[sh] == g {
			delete(b.cs.gates, sh)
			b.cs.setFlagLocked(sh)
			g.open()
			n++
		}
	}
	b.cs.mu.Unlock()
	if n > 0 {
		r.handoffTimeouts.Add(uint64(n))
		r.s.log.Warn("no handoff from the previous owner within the handoff timeout; its shards start fresh here",
			"capability", b.cs.name, "shards", n, "peer", b.from, "timeout", r.s.cfg.HandoffTimeout)
	}
}

// release opens the gates of shards that from handed over or says it does
// not hold.
func (r *router) release(cs *capState, from peer.ID, shards []int) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for _, sh := range shards {
		if g := cs.gates[sh]; g != nil && g.from == from {
			delete(cs.gates, sh)
			g.open()
			cs.setFlagLocked(sh)
		}
	}
}

type router struct {
	s *System

	view atomic.Pointer[view]
	// changed is closed and replaced when the view changes.
	changed atomic.Pointer[chan struct{}]
	// ready is closed once the first view is in place.
	ready chan struct{}
	// kickCh asks the loop to compute the view again (alone: a kind was
	// registered); the loop closes the channel it receives when done.
	kickCh chan chan struct{}
	// loopDone is closed when the view loop has returned; stopLoop ends it.
	loopDone chan struct{}
	stopLoop context.CancelFunc
	loopCtx  context.Context

	// capsMu guards caps (copy on write).
	capsMu sync.Mutex
	caps   atomic.Pointer[map[string]*capState]

	// leaving: the system is closing and hands its shards over.
	leavingAll atomic.Bool

	movedOut, movedIn, handoffTimeouts, conflicts, redirects atomic.Uint64
}

func (r *router) init(s *System) {
	r.s = s
	r.ready = make(chan struct{})
	r.kickCh = make(chan chan struct{})
	r.loopDone = make(chan struct{})
	ch := make(chan struct{})
	r.changed.Store(&ch)
	r.caps.Store(&map[string]*capState{})
	r.view.Store(&view{live: map[peer.ID]bool{}, caps: map[string]*ring.Placement{}})
	r.loopCtx, r.stopLoop = context.WithCancel(context.Background())
}

func (r *router) start() {
	r.s.wg.Add(1)
	go r.loop()
}

// kick has the view computed again and waits for it.
func (r *router) kick() {
	done := make(chan struct{})
	select {
	case r.kickCh <- done:
		<-done
	case <-r.loopDone:
	}
}

// stop ends the view loop and opens every gate.
func (r *router) stop() {
	r.stopLoop()
	<-r.loopDone
	for _, cs := range *r.caps.Load() {
		cs.mu.Lock()
		for _, g := range cs.gates {
			g.open()
		}
		cs.mu.Unlock()
	}
}

func (r *router) capState(name string) *capState {
	if cs := (*r.caps.Load())[name]; cs != nil {
		return cs
	}
	r.capsMu.Lock()
	defer r.capsMu.Unlock()
	old := *r.caps.Load()
	if cs := old[name]; cs != nil {
		return cs
	}
	cs := &capState{name: name, gates: map[int]*gate{}, leaving: map[int]peer.ID{}, adopted: map[int]peer.ID{}}
	m := make(map[string]*capState, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[name] = cs
	r.caps.Store(&m)
	return cs
}

// loop keeps the view up to date.
func (r *router) loop() {
	defer r.s.wg.Done()
	defer close(r.loopDone)
	ctx := r.loopCtx
	var changes <-chan member.Change
	if r.s.members != nil {
		changes = r.s.members.Watch(ctx)
		r.settle(ctx, changes)
	}
	r.apply(r.compute(), true)
	close(r.ready)
	for {
		var done chan struct{}
		select {
		case <-ctx.Done():
			return
		case _, ok := <-changes:
			if !ok {
				return
			}
			// Changes come in bursts (a member's join, the first Watch):
			// one view for all that are here already.
			for drained := false; !drained; {
				select {
				case _, ok := <-changes:
					if !ok {
						return
					}
				default:
					drained = true
				}
			}
		case done = <-r.kickCh:
		}
		r.apply(r.compute(), false)
		if done != nil {
			close(done)
		}
	}
}

// settle waits until the membership has not changed for Settle, at most
// SettleMax: a node that has just started knows few members yet.
func (r *router) settle(ctx context.Context, changes <-chan member.Change) {
	if r.s.cfg.Settle < 0 {
		return
	}
	limit := time.NewTimer(r.s.cfg.SettleMax)
	defer limit.Stop()
	quiet := time.NewTimer(r.s.cfg.Settle)
	defer quiet.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-limit.C:
			return
		case <-quiet.C:
			return
		case _, ok := <-changes:
			if !ok {
				return
			}
			quiet.Reset(r.s.cfg.Settle)
		}
	}
}

// compute makes the view of the current membership.
func (r *router) compute() *view {
	old := r.view.Load()
	v := &view{version: old.version + 1, live: map[peer.ID]bool{}, caps: map[string]*ring.Placement{}}
	nodes := map[string][]string{}
	if r.s.members == nil {
		v.live[r.s.self] = true
		for k := range *r.s.local.kinds.Load() {
			nodes[k.capability] = []string{string(r.s.self)}
		}
	} else {
		for _, m := range r.s.members.List() {
			v.live[m.ID] = true
			for _, c := range m.Capabilities {
				nodes[c] = append(nodes[c], string(m.ID))
			}
		}
	}
	for c, ns := range nodes {
		slices.Sort(ns)
		ns = slices.Compact(ns)
		if p := old.caps[c]; p != nil && slices.Equal(p.Nodes(), ns) {
			v.caps[c] = p // unchanged: no need to place again
			continue
		}
		v.caps[c] = ring.Place(c, ns)
	}
	return v
}

// apply installs v: it gates the shards gained from live previous owners,
// marks and hands over the shards lost, then publishes v.
func (r *router) apply(v *view, first bool) {
	old := r.view.Load()
	self := r.s.self
	type handoff struct {
		cs     *capState
		target peer.ID
		shards []int
	}
	var handoffs []handoff
	var batches []*gateBatch
	names := map[string]bool{}
	for c := range old.caps {
		names[c] = true
	}
	for c := range v.caps {
		names[c] = true
	}
	for c := range names {
		oldP, newP := old.caps[c], v.caps[c]
		if first && newP != nil && r.s.members != nil {
			// The previous owners of a node that has just started are the
			// owners without it.
			oldP = ring.Place(c, slices.DeleteFunc(newP.Nodes(), func(n string) bool { return n == string(self) }))
		}
		if oldP == newP {
			continue
		}
		cs := r.capState(c)
		lost := map[peer.ID][]int{}
		gated := map[peer.ID]*gateBatch{}
		var gained, gatedN, owned int
		cs.mu.Lock()
		for shard := range ring.Shards {
			oldOwner, _ := ownerOf(oldP, shard)
			newOwner, hasNew := ownerOf(newP, shard)
			by, adopted := cs.adopted[shard]
			wasServing := oldOwner == self || (adopted && by == oldOwner)
			nowServing := hasNew && (newOwner == self || (adopted && by == newOwner))
			if newOwner == self {
				owned++
			}
			if adopted && (newOwner == self || by != newOwner) {
				delete(cs.adopted, shard)
			}
			switch {
			case wasServing && !nowServing:
				if t, moving := cs.leaving[shard]; moving && t == newOwner {
					break
				}
				cs.leaving[shard] = newOwner // "" when nobody serves it now
				lost[newOwner] = append(lost[newOwner], shard)
			case !wasServing && nowServing && newOwner == self:
				gained++
				delete(cs.leaving, shard)
				if !hasOwner(oldP, shard) || oldOwner == self || !v.live[oldOwner] || r.s.members == nil {
					break // nobody to wait for: its state, if any, is gone
				}
				if g := cs.gates[shard]; g != nil && g.from == oldOwner {
					break
				}
				gatedN++
				g := &gate{from: oldOwner, ch: make(chan struct{})}
				if old := cs.gates[shard]; old != nil {
					old.open()
				}
				cs.gates[shard] = g
				b := gated[oldOwner]
				if b == nil {
					b = &gateBatch{cs: cs, from: oldOwner}
					gated[oldOwner] = b
					batches = append(batches, b)
				}
				b.shards = append(b.shards, shard)
				b.gates = append(b.gates, g)
			}
			cs.setFlagLocked(shard)
		}
		cs.mu.Unlock()
		nLost := 0
		for t, shards := range lost {
			nLost += len(shards)
			// The mark takes effect between two admissions: messages
			// admitted before it are in mailboxes, which drain before the
			// actors move.
			for _, sh := range shards {
				cs.locks[sh].Lock()
				cs.locks[sh].Unlock()
			}
			handoffs = append(handoffs, handoff{cs: cs, target: t, shards: shards})
		}
		if gained > 0 || nLost > 0 {
			r.s.bus.Emit(event.Event{Kind: event.ShardsChanged, Capability: c, Shards: owned, Gained: gained, Lost: nLost})
			r.s.log.Info("shards changed", "capability", c, "owned", owned, "gained", gained, "waiting", gatedN, "lost", nLost)
		}
	}
	r.view.Store(v)
	ch := make(chan struct{})
	close(*r.changed.Swap(&ch))
	for _, h := range handoffs {
		r.s.wg.Add(1)
		go func() {
			defer r.s.wg.Done()
			r.handOff(r.s.ctx, h.cs, h.target, h.shards)
		}()
	}
	for _, b := range batches {
		r.s.wg.Add(1)
		go func() {
			defer r.s.wg.Done()
			r.await(b)
		}()
	}
}

// await asks the previous owner of a batch of gained shards which of them it
// still holds (two nodes that started together each take the other for the
// previous owner: neither has anything to hand over), opens the gates of
// the others at once, and the rest when HandoffTimeout passes without their
// handoff.
func (r *router) await(b *gateBatch) {
	t := time.NewTimer(r.s.cfg.HandoffTimeout)
	defer t.Stop()
	ctx, cancel := context.WithTimeout(r.s.ctx, r.s.cfg.HandoffTimeout)
	defer cancel()
	// The previous owner may not serve the protocol yet (its system is
	// starting too): ask again, a little later each time.
	var held []int
	var err error
	for backoff := 20 * time.Millisecond; ; backoff = min(2*backoff, 500*time.Millisecond) {
		if held, err = r.query(ctx, b.cs.name, b.from, b.shards); err == nil || ctx.Err() != nil {
			break
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
		}
	}
	if err == nil {
		free := make([]int, 0, len(b.shards))
		for _, sh := range b.shards {
			if _, ok := slices.BinarySearch(held, sh); !ok {
				free = append(free, sh)
			}
		}
		r.release(b.cs, b.from, free)
		if len(held) == 0 {
			return
		}
	} else {
		r.s.log.Debug("cannot ask the previous owner about its shards", "capability", b.cs.name, "peer", b.from, "err", err)
	}
	for _, g := range b.gates {
		select {
		case <-g.ch:
		case <-t.C:
			r.expire(b)
			return
		case <-r.s.ctx.Done():
			return
		}
	}
}

// query asks p which of shards of capability it still holds (serves, or is
// handing over), sorted.
func (r *router) query(ctx context.Context, capability string, p peer.ID, shards []int) ([]int, error) {
	body := appendShards(nil, capability, shards)
	out, err := r.s.tr.CallPeer(ctx, p, procQuery, body)
	if err != nil {
		return nil, err
	}
	c, held, err := parseShards(out)
	if err != nil {
		return nil, err
	}
	if c != capability {
		return nil, fmt.Errorf("%w: answer about %q, asked about %q", errMalformed, c, capability)
	}
	slices.Sort(held)
	return held, nil
}

// handleQuery serves procQuery: which of the shards asked about this node
// still holds.
func (s *System) handleQuery(ctx context.Context, req *rpc.Request) ([]byte, error) {
	capability, shards, err := parseShards(req.Payload)
	if err != nil {
		return nil, toRemote(fmt.Errorf("%w: %v", ErrInvalid, err))
	}
	if err := ValidateName("capability", capability); err != nil {
		return nil, toRemote(err)
	}
	if !s.open {
		if err := ucan.Check(req.Verdict, ucan.Serve, ucan.ServeResource(s.cfg.Realm, capability)); err != nil {
			return nil, toRemote(fmt.Errorf("%w: %s may not serve %s: %v", ErrUnauthorized, req.Caller.PeerID, capability, err))
		}
	}
	select {
	case <-s.route.ready:
	default:
		// Still settling: this node has served nothing yet.
		return appendShards(nil, capability, nil), nil
	}
	r := &s.route
	v := r.view.Load()
	cs := r.capState(capability)
	var held []int
	cs.mu.Lock()
	for _, sh := range shards {
		_, leaving := cs.leaving[sh]
		o, ok := v.owner(capability, sh)
		by, adopted := cs.adopted[sh]
		if leaving || (ok && (o == s.self || (adopted && by == o))) {
			held = append(held, sh)
		}
	}
	cs.mu.Unlock()
	return appendShards(nil, capability, held), nil
}

func ownerOf(p *ring.Placement, shard int) (peer.ID, bool) {
	if p == nil {
		return "", false
	}
	o, ok := p.Owner(shard)
	return peer.ID(o), ok
}

func hasOwner(p *ring.Placement, shard int) bool {
	_, ok := ownerOf(p, shard)
	return ok
}

// decision is where a message to a shard goes, as this node sees it.
type decision struct {
	serve    bool
	wait     *gate
	redirect peer.ID
	err      error
}

// decide is called under the shard's admission lock.
func (r *router) decide(v *view, cs *capState, shard int) decision {
	owner, ok := v.owner(cs.name, shard)
	if cs.flags[shard].Load() == 0 {
		switch {
		case ok && owner == r.s.self:
			return decision{serve: true}
		case ok:
			return decision{redirect: owner}
		}
		return decision{err: fmt.Errorf("%w: %s", ErrNotServed, cs.name)}
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if t, moving := cs.leaving[shard]; moving {
		if t == "" {
			return decision{err: fmt.Errorf("%w: %s (this node stopped serving it)", ErrNotServed, cs.name)}
		}
		return decision{redirect: t}
	}
	if ok && owner == r.s.self {
		if g := cs.gates[shard]; g != nil {
			return decision{wait: g}
		}
		return decision{serve: true}
	}
	if by, adopted := cs.adopted[shard]; adopted && ok && by == owner {
		return decision{serve: true}
	}
	if ok {
		return decision{redirect: owner}
	}
	return decision{err: fmt.Errorf("%w: %s", ErrNotServed, cs.name)}
}

// serves reports whether this node serves shard of capability now.
func (r *router) serves(capability string, shard int) bool {
	cs := r.capState(capability)
	lk := &cs.locks[shard]
	lk.RLock()
	defer lk.RUnlock()
	return r.decide(r.view.Load(), cs, shard).serve
}

// deliverHere delivers req to its actor on this node if this node serves
// the shard; otherwise it returns the node to try instead.
func (r *router) deliverHere(cc *callCtx, req *Request, shard int, cast bool) (inc uint64, reply []byte, redirect peer.ID, err error) {
	cs := r.capState(req.Capability)
	// turn: the message waited at a gate and passes in its turn; given
	// back once it is admitted or turned away (nil on the fast path).
	var turn *gateTurn
	for {
		lk := &cs.locks[shard]
		lk.RLock()
		d := r.decide(r.view.Load(), cs, shard)
		switch {
		case d.wait != nil:
			lk.RUnlock()
			// In line at this gate before leaving the line of the last
			// (a gate replaced by another keeps its order).
			t := d.wait.ticket()
			turn.release()
			ctx := cc.bounded()
			if err := d.wait.wait(ctx, t); err != nil {
				return 0, nil, "", fmt.Errorf("%w: %s.%s %q: waiting for its shard to arrive from %s: %w",
					ErrUnavailable, req.Capability, req.Kind, req.ID, d.wait.from, err)
			}
			turn = &gateTurn{g: d.wait, t: t}
			continue
		case d.err != nil:
			lk.RUnlock()
			turn.release()
			return 0, nil, "", d.err
		case !d.serve:
			lk.RUnlock()
			turn.release()
			return 0, nil, d.redirect, nil
		}
		if r.s.closing.Load() {
			lk.RUnlock()
			turn.release()
			return 0, nil, "", ErrClosed
		}
		kt := r.s.local.kind(req.Capability, req.Kind)
		if kt == nil {
			lk.RUnlock()
			turn.release()
			return 0, nil, "", fmt.Errorf("%w: %s.%s on %s", ErrUnknownKind, req.Capability, req.Kind, r.s.self)
		}
		a, e, err := r.s.local.admit(cc, kt, shard, req.ID, cast, req.Payload, req.InitArg)
		lk.RUnlock()
		turn.release()
		if err != nil || cast {
			return 0, nil, "", err
		}
		var inc uint64
		var reply []byte
		if e == nil {
			// Inline: the caller's own context (its deadline, if any).
			inc, reply, err = r.s.local.complete(cc.ctx, a, nil, req.Payload, req.InitArg)
		} else {
			inc, reply, err = r.s.local.complete(cc.bounded(), a, e, req.Payload, req.InitArg)
		}
		return inc, reply, "", err
	}
}

// maxHops bounds how many owners one message is sent on to before the
// sender waits for its view to change.
const maxHops = 3

// send routes req to its owner and delivers it there.
func (r *router) send(cc *callCtx, req *Request, cast bool) (Ref, []byte, error) {
	ref := Ref{Capability: req.Capability, Kind: req.Kind, ID: req.ID}
	select {
	case <-r.ready:
	default:
		select {
		case <-r.ready:
		case <-cc.bounded().Done():
			return ref, nil, fmt.Errorf("%w: the node's membership view is not ready: %w", ErrUnavailable, ctxErr(cc.bounded()))
		}
	}
	shard := ring.ShardOf(req.ID)
	var target peer.ID
	hops := 0
	backoff := 5 * time.Millisecond
	var why error
	for {
		if target == "" {
			changed := *r.changed.Load()
			o, ok := r.view.Load().owner(req.Capability, shard)
			if !ok {
				if why == nil {
					return ref, nil, fmt.Errorf("%w: %s", ErrNotServed, req.Capability)
				}
				// It was served a moment ago: wait for it to come back.
				if err := r.pause(cc.bounded(), changed, &backoff); err != nil {
					return ref, nil, fmt.Errorf("%w: %s.%s %q: %v (and %w)", ErrUnavailable, req.Capability, req.Kind, req.ID, why, err)
				}
				continue
			}
			target = o
		}
		if hops >= maxHops {
			// Views disagree: let them settle.
			changed := *r.changed.Load()
			if err := r.pause(cc.bounded(), changed, &backoff); err != nil {
				return ref, nil, fmt.Errorf("%w: %s.%s %q: owners disagree (%v): %w", ErrUnavailable, req.Capability, req.Kind, req.ID, why, err)
			}
			hops, target = 0, ""
			continue
		}
		var (
			inc      uint64
			reply    []byte
			redirect peer.ID
			err      error
		)
		if target == r.s.self {
			inc, reply, redirect, err = r.deliverHere(cc, req, shard, cast)
		} else {
			inc, reply, redirect, err = r.remote(cc, target, req, cast)
		}
		switch {
		case redirect != "":
			r.redirects.Add(1)
			why = fmt.Errorf("%s sent it on to %s", target, redirect)
			hops++
			target = redirect
			continue
		case err == nil:
			ref.Node, ref.Incarnation = target, inc
			return ref, reply, nil
		case errors.Is(err, errNotSent):
			// Nothing ran: find the owner again once the view changes.
			why = err
			changed := *r.changed.Load()
			if perr := r.pause(cc.bounded(), changed, &backoff); perr != nil {
				return ref, nil, fmt.Errorf("%w: %s.%s %q: %v: %w", ErrUnavailable, req.Capability, req.Kind, req.ID, why, perr)
			}
			hops, target = 0, ""
			continue
		}
		ref.Node = target
		return ref, nil, err
	}
}

// pause waits for the view to change (changed is closed), for backoff
// (which doubles, up to 200 ms), or for ctx.
func (r *router) pause(ctx context.Context, changed chan struct{}, backoff *time.Duration) error {
	t := time.NewTimer(*backoff)
	defer t.Stop()
	*backoff = min(2**backoff, 200*time.Millisecond)
	select {
	case <-changed:
		return nil
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctxErr(ctx)
	case <-r.s.ctx.Done():
		return ErrClosed
	}
}

// errNotSent marks a remote attempt that certainly did not reach an actor.
var errNotSent = errors.New("not delivered")

// remote sends req to the node p.
func (r *router) remote(cc *callCtx, p peer.ID, req *Request, cast bool) (inc uint64, reply []byte, redirect peer.ID, err error) {
	ctx := cc.ctx
	if r.s.tr == nil {
		return 0, nil, "", fmt.Errorf("%w: %s is owned by %s, and this system has no transport", ErrUnavailable, req.Capability, p)
	}
	m := msgRequest{cast: cast, capability: req.Capability, kind: req.Kind, id: req.ID, initArg: req.InitArg, payload: req.Payload}
	buf := getBuf()
	*buf = appendMsgRequest((*buf)[:0], &m)
	opts := r.s.callOpts // the common case: no deadline yet; no allocation
	if !cc.dl.IsZero() {
		opts = []rpc.CallOption{rpc.WithTimeout(time.Until(cc.dl))}
	}
	out, err := r.s.tr.CallPeer(ctx, p, procMessage, *buf, opts...)
	putBuf(buf)
	if err == nil {
		inc, reply, err := parseMsgReply(out)
		if err != nil {
			return 0, nil, "", fmt.Errorf("%w: %s: %v", ErrLost, p, err)
		}
		return inc, reply, "", nil
	}
	var re *rpc.RemoteError
	switch {
	case errors.As(err, &re):
		switch re.Code {
		case codeWrongOwner:
			if id, perr := peer.IDFromBytes(re.Data); perr == nil {
				return 0, nil, id, nil
			}
			return 0, nil, "", fmt.Errorf("%w: %w: %s is not the owner", errNotSent, ErrUnavailable, p)
		case rpc.CodeNotAdvertised, codeClosed, rpc.CodeOverloaded:
			// Not served there (any more), or too busy: it did not run.
			return 0, nil, "", fmt.Errorf("%w: %w: %s: %s", errNotSent, ErrUnavailable, p, re.Message)
		}
		return 0, nil, "", fromRemote(re)
	case errors.Is(err, rpc.ErrUnreachable):
		return 0, nil, "", fmt.Errorf("%w: %w: %v", errNotSent, ErrUnavailable, err)
	case errors.Is(err, rpc.ErrTimeout):
		return 0, nil, "", fmt.Errorf("%w: %s.%s %q on %s", ErrTimeout, req.Capability, req.Kind, req.ID, p)
	case errors.Is(err, rpc.ErrDisconnected):
		return 0, nil, "", fmt.Errorf("%w: %s: %v", ErrLost, p, err)
	case errors.Is(err, rpc.ErrClosed):
		return 0, nil, "", ErrClosed
	}
	if ctx.Err() != nil {
		return 0, nil, "", ctxErr(ctx)
	}
	return 0, nil, "", fmt.Errorf("%w: %s: %v", ErrUnavailable, p, err)
}

var bufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

func getBuf() *[]byte { return bufs.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) <= 64<<10 {
		bufs.Put(b)
	}
}

// handleMessage serves procMessage: a message for an actor this node owns.
func (s *System) handleMessage(ctx context.Context, req *rpc.Request) ([]byte, error) {
	m, err := parseMsgRequest(req.Payload)
	if err != nil {
		return nil, toRemote(fmt.Errorf("%w: %v", ErrInvalid, err))
	}
	m.capability, m.kind = s.intern(m.capability), s.intern(m.kind)
	r := Request{Capability: m.capability, Kind: m.kind, ID: m.id, Payload: m.payload, InitArg: m.initArg}
	if err := s.validate(&r); err != nil {
		return nil, toRemote(err)
	}
	if !s.open {
		if err := ucan.Check(req.Verdict, ucan.Actor, ActorResource(s.cfg.Realm, r.Capability, r.Kind)); err != nil {
			return nil, toRemote(fmt.Errorf("%w: %s may not call %s.%s: %v", ErrUnauthorized, req.Caller.PeerID, r.Capability, r.Kind, err))
		}
	}
	select {
	case <-s.route.ready:
	default:
		// Only now ask for ctx.Done: rpc's handler context makes its
		// channel and timer on demand.
		select {
		case <-s.route.ready:
		case <-ctx.Done():
			return nil, toRemote(ErrClosed)
		}
	}
	shard := ring.ShardOf(r.ID)
	cc := callCtx{ctx: ctx, timeout: s.cfg.CallTimeout, fromPeer: true}
	if dl, ok := ctx.Deadline(); ok {
		cc.dl, cc.bctx = dl, ctx
	} else {
		defer cc.release()
	}
	inc, reply, redirect, err := s.route.deliverHere(&cc, &r, shard, m.cast)
	if redirect != "" {
		return nil, &rpc.RemoteError{Code: codeWrongOwner, Message: fmt.Sprintf("%s is owned by %s", r.ID, redirect), Data: []byte(redirect)}
	}
	if err != nil {
		return nil, toRemote(err)
	}
	return appendMsgReply(make([]byte, 0, 9+len(reply)), inc, reply), nil
}
