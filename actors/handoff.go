package actors

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/macula-io/macula/event"
	"github.com/macula-io/macula/ring"
	"github.com/macula-io/macula/rpc"
	"github.com/macula-io/macula/ucan"
)

// handoffChunk bounds the bytes of one handoff message, below rpc's payload
// limit; bigger sets of actors go in several messages.
const handoffChunk = 512 << 10

// handOff moves the actors of shards (marked leaving to target) to target:
// each finishes the messages it has, is snapshotted if it can be, stopped
// and sent; the last message releases the shards. With no target (nobody
// serves the capability now) the actors just stop.
func (r *router) handOff(ctx context.Context, cs *capState, target peer.ID, shards []int) {
	s := r.s
	var items []handoffActor
	var kinds []*kindTable
	for k, kt := range *s.local.kinds.Load() {
		if k.capability == cs.name {
			kinds = append(kinds, kt)
		}
	}
	var moved []int
	for _, shard := range shards {
		cs.mu.Lock()
		t, still := cs.leaving[shard]
		cs.mu.Unlock()
		if !still || t != target {
			continue // the shard came back, or goes elsewhere now
		}
		moved = append(moved, shard)
		for _, kt := range kinds {
			for _, a := range takeShard(kt, shard) {
				if a.impl == nil {
					if a.restored && target != "" {
						// Handed here and not started since: its
						// state goes on as it came (it was never
						// active here, so no stop and no event).
						items = append(items, handoffActor{kind: kt.key.kind, id: a.id, snapshot: a.snapshot})
					}
					s.local.retire(a, shard)
					continue
				}
				inc := a.inc
				var snap []byte
				sn, snaps := a.impl.(Snapshotter)
				if snaps && target != "" {
					sctx, cancel := context.WithTimeout(ctx, s.cfg.StopTimeout)
					b, err := snapshot(sctx, sn)
					cancel()
					if err != nil {
						snaps = false
						s.log.Error("actor snapshot failed; it moves without its state", "capability", cs.name, "kind", kt.key.kind, "id", a.id, "err", err)
					}
					snap = b
				}
				s.local.stop(a, Moved)
				s.local.retire(a, shard)
				if target == "" {
					continue
				}
				r.movedOut.Add(1)
				s.bus.Emit(event.Event{Kind: event.ActorMoved, Capability: cs.name, ActorKind: kt.key.kind, Actor: a.id, Incarnation: inc, Peer: target.String()})
				if snaps {
					if snap == nil {
						snap = []byte{}
					}
					items = append(items, handoffActor{kind: kt.key.kind, id: a.id, snapshot: snap})
				}
			}
		}
	}
	if target == "" || len(moved) == 0 {
		r.finishLeaving(cs, target, moved)
		return
	}
	if err := r.send2(ctx, cs.name, target, moved, items); err != nil {
		if r.leavingAll.Load() {
			s.log.Error("handoff failed while this node leaves; the actors' state is lost", "capability", cs.name, "peer", target, "shards", len(moved), "actors", len(items), "err", err)
		} else {
			// The new owner died or went away before it took them (a
			// node that joined and left at once): keep the state here,
			// where it is restored if the shards come back to this node
			// (a view without that node), and passivated otherwise.
			kept := r.keep(cs.name, items)
			s.log.Error("handoff failed; the actors' state stays here, and is used if their shards come back to this node", "capability", cs.name, "peer", target, "shards", len(moved), "actors", len(items), "kept", kept, "err", err)
		}
	}
	r.finishLeaving(cs, target, moved)
}

// keep installs handed actors whose handoff failed back on this node, to be
// restored on their next message here. It returns how many it kept.
func (r *router) keep(capability string, items []handoffActor) int {
	n := 0
	for _, it := range items {
		if kt := r.s.local.kind(capability, it.kind); kt != nil && r.install(kt, ring.ShardOf(it.id), it.id, it.snapshot) {
			n++
		}
	}
	return n
}

// finishLeaving drops the leaving marks of shards handed to target, unless
// the system is closing (then messages keep being sent on to the new
// owners until the node is gone).
func (r *router) finishLeaving(cs *capState, target peer.ID, shards []int) {
	if r.leavingAll.Load() {
		return
	}
	cs.mu.Lock()
	for _, sh := range shards {
		if t, ok := cs.leaving[sh]; ok && t == target {
			delete(cs.leaving, sh)
			cs.setFlagLocked(sh)
		}
	}
	cs.mu.Unlock()
}

func snapshot(ctx context.Context, sn Snapshotter) (b []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("Snapshot panicked: %v", p)
		}
	}()
	return sn.Snapshot(ctx)
}

// send2 sends the actors and the release of shards to target, in chunks,
// retrying while target stays live and the time allows.
func (r *router) send2(ctx context.Context, capability string, target peer.ID, shards []int, items []handoffActor) error {
	var chunks []handoffRequest
	cur := handoffRequest{capability: capability}
	size := 0
	for _, it := range items {
		if n := it.size(); size+n > handoffChunk && len(cur.actors) > 0 {
			chunks = append(chunks, cur)
			cur = handoffRequest{capability: capability}
			size = 0
		}
		cur.actors = append(cur.actors, it)
		size += it.size()
	}
	cur.final, cur.shards = true, shards
	chunks = append(chunks, cur)
	deadline := time.Now().Add(2 * r.s.cfg.HandoffTimeout)
	for _, ch := range chunks {
		body := appendHandoff(nil, &ch)
		if len(body) > r.s.tr.MaxPayload() {
			return fmt.Errorf("%w: a snapshot of %d bytes is over the limit of %d", ErrTooLarge, len(body), r.s.tr.MaxPayload())
		}
		backoff := 20 * time.Millisecond
		for {
			cctx, cancel := context.WithDeadline(ctx, deadline)
			_, err := r.s.tr.CallPeer(cctx, target, procHandoff, body)
			cancel()
			if err == nil {
				break
			}
			if time.Now().Add(backoff).After(deadline) || ctx.Err() != nil || errors.Is(err, rpc.ErrClosed) {
				return err
			}
			var re *rpc.RemoteError
			// While this node leaves, a node that does not serve is
			// most likely closing too (macula-node dev stops all its
			// nodes): waiting for it would only hold the leave up.
			if errors.As(err, &re) && re.Code != rpc.CodeOverloaded && !(re.Code == rpc.CodeNotAdvertised && !r.leavingAll.Load()) {
				// Refused, or its system is closing: retrying changes
				// nothing. Not advertised is worth the wait: a node
				// that has just started is a member (and so the owner)
				// a moment before its actor system serves.
				return err
			}
			time.Sleep(backoff)
			backoff = min(2*backoff, 500*time.Millisecond)
		}
	}
	return nil
}

// handleHandoff serves procHandoff: actors and shards that their previous
// owner hands to this node.
func (s *System) handleHandoff(ctx context.Context, req *rpc.Request) ([]byte, error) {
	h, err := parseHandoff(req.Payload)
	if err != nil {
		return nil, toRemote(fmt.Errorf("%w: %v", ErrInvalid, err))
	}
	if err := ValidateName("capability", h.capability); err != nil {
		return nil, toRemote(err)
	}
	from := req.Caller.PeerID
	if !s.open {
		// Only a node that may serve the capability hands its actors over.
		if err := ucan.Check(req.Verdict, ucan.Serve, ucan.ServeResource(s.cfg.Realm, h.capability)); err != nil {
			return nil, toRemote(fmt.Errorf("%w: %s may not serve %s: %v", ErrUnauthorized, from, h.capability, err))
		}
	}
	r := &s.route
	select {
	case <-r.ready:
	case <-ctx.Done():
		return nil, toRemote(fmt.Errorf("%w: this node's actor system is still settling", ErrUnavailable))
	case <-s.ctx.Done():
		return nil, toRemote(ErrClosed)
	}
	// Ready: the program has registered its kinds (it does so right after
	// New, within Config.Settle), and the view says which shards this node
	// gained from whom.
	for _, a := range h.actors {
		if ValidateName("kind", a.kind) != nil || a.id == "" {
			continue
		}
		kt := s.local.kind(h.capability, a.kind)
		if kt == nil {
			s.log.Warn("handed an actor of a kind not registered here; its state is dropped", "capability", h.capability, "kind", a.kind, "id", a.id, "peer", from)
			continue
		}
		if !r.install(kt, ring.ShardOf(a.id), a.id, a.snapshot) {
			r.conflicts.Add(1)
			s.log.Warn("handed an actor that is already active here; its handed state is dropped", "capability", h.capability, "kind", a.kind, "id", a.id, "peer", from)
			continue
		}
		r.movedIn.Add(1)
	}
	if h.final {
		cs := r.capState(h.capability)
		v := r.view.Load()
		cs.mu.Lock()
		for _, sh := range h.shards {
			if g := cs.gates[sh]; g != nil && g.from == from {
				delete(cs.gates, sh)
				g.open()
			} else if o, ok := v.owner(h.capability, sh); !ok || o != s.self {
				// Our view has not caught up yet: the node that owns
				// the shard in it handed it to us.
				cs.adopted[sh] = from
			}
			cs.setFlagLocked(sh)
		}
		cs.mu.Unlock()
	}
	return nil, nil
}

// install puts a handed-over actor into its table, to be restored on its
// next message. False when the id is already active here.
func (r *router) install(kt *kindTable, shard int, id string, snap []byte) bool {
	st := &kt.shards[shard]
	st.mu.Lock()
	defer st.mu.Unlock()
	if a := st.m[id]; a != nil {
		a.mu.Lock()
		busy := a.state != idle || a.box.len() > 0
		a.mu.Unlock()
		if busy || a.pub.Load() != 0 {
			return false
		}
		a.mu.Lock()
		a.state = dead
		a.mu.Unlock()
	}
	if st.m == nil {
		st.m = make(map[string]*actor)
	}
	// Not yet published: the entry is ours to fill.
	a := &actor{kt: kt, id: id, snapshot: slices.Clone(snap), restored: true, last: r.s.clock.Load()}
	if a.snapshot == nil {
		a.snapshot = []byte{}
	}
	st.m[id] = a
	return true
}

// leave hands every shard this node serves to its owner without this node,
// before the system closes.
func (r *router) leave() {
	s := r.s
	if s.members == nil {
		return
	}
	r.stop() // no more view changes: this node is going
	r.leavingAll.Store(true)
	v := r.view.Load()
	var wg sync.WaitGroup
	for c, p := range v.caps {
		without := ring.Place(c, slices.DeleteFunc(p.Nodes(), func(n string) bool { return n == string(s.self) }))
		cs := r.capState(c)
		lost := map[peer.ID][]int{}
		cs.mu.Lock()
		for shard := range ring.Shards {
			o, _ := ownerOf(p, shard)
			by, adopted := cs.adopted[shard]
			if o != s.self && !(adopted && by == o) {
				continue
			}
			t, _ := ownerOf(without, shard)
			cs.leaving[shard] = t
			delete(cs.gates, shard)
			cs.setFlagLocked(shard)
			lost[t] = append(lost[t], shard)
		}
		cs.mu.Unlock()
		for t, shards := range lost {
			for _, sh := range shards {
				cs.locks[sh].Lock()
				cs.locks[sh].Unlock()
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				r.handOff(s.ctx, cs, t, shards)
			}()
		}
	}
	wg.Wait()
}
