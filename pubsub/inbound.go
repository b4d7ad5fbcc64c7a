package pubsub

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/macula-io/macula/frame"
	"github.com/macula-io/macula/peerdid"
	"github.com/macula-io/macula/realm"
	"github.com/macula-io/macula/ucan"
)

const (
	// readBufSize is the read buffer of an inbound stream: many frames per
	// read from the stream.
	readBufSize = 64 << 10
	// slabSize is the block that small payloads are copied into, so that a
	// reader allocates once per many messages rather than once per message.
	slabSize = 32 << 10
)

// errReplaced ends the reader of a stream that a newer stream from the same
// peer replaced.
var errReplaced = errors.New("pubsub: stream replaced by a newer one")

// handleStream serves a peer's stream to us: it records the stream as the
// peer's, makes sure we have a stream to the peer as well (so it learns our
// interest), and reads the peer's frames until the stream ends.
func (ps *PubSub) handleStream(s network.Stream) {
	p := s.Conn().RemotePeer()
	in := &inbound{s: s, peer: p, done: make(chan struct{})}
	in.ctx, in.cancel = context.WithCancel(ps.ctx)
	defer close(in.done)
	defer in.cancel()
	ps.mu.Lock()
	if ps.closing {
		ps.mu.Unlock()
		_ = s.Reset()
		return
	}
	r := ps.remoteLocked(p)
	var before *inbound
	if old := r.in; old != nil {
		if old.s.Conn().Stat().Limited && !s.Conn().Stat().Limited && !old.s.Conn().IsClosed() {
			// The peer moved from a relayed connection to a direct one and
			// closes the old stream after what it holds: read that first.
			before = old
			old.handedOver.Store(true)
		} else {
			// The peer opened a new stream, so its previous one is gone,
			// maybe with its process. Ours may be dead too if it runs on
			// another connection: start over with a fresh one.
			old.reset()
			ps.dropInboundLocked(r)
			if r.out != nil && r.out.s.Conn() != s.Conn() {
				r.out.close()
				r.out = nil
			}
		}
	}
	r.in = in
	ps.gen.Add(1)
	if r.out != nil && before == nil {
		// The peer (re)started talking to us. It may have reset our
		// stream on its side meanwhile (it replaced our stream by a newer
		// one that then failed): our link would not notice before its
		// next write, and the peer would never learn our interest. Say it
		// again: a reset stream fails that write and the link reopens.
		r.out.sendControl(appendInterestSetFrames(nil, uint32(ps.cfg.MaxMessageSize), ps.patternsLocked()))
	}
	ps.openOnLocked(r, nil, s.Conn(), true)
	ps.wg.Add(1)
	ps.mu.Unlock()
	defer ps.wg.Done()

	if before != nil {
		t := time.NewTimer(handoverWait)
		select {
		case <-before.done:
		case <-t.C:
			before.reset()
			<-before.done
		case <-ps.ctx.Done():
		}
		t.Stop()
	}

	err := ps.readLoop(in)
	switch {
	case err == nil:
		_ = s.Close()
	case errors.Is(err, errReplaced):
	default:
		_ = s.Reset()
		if !ps.closed.Load() {
			ps.log.Debug("pubsub stream from peer closed", "peer", p, "err", err)
		}
	}
	ps.mu.Lock()
	if r := ps.remotes[p]; r != nil && r.in == in {
		ps.dropInboundLocked(r)
		ps.gcLocked(r)
	}
	ps.mu.Unlock()
}

// topicEntry is a topic defined on a stream, with the reader's cached
// view of the local subscriptions it matches.
type topicEntry struct {
	topic string
	gen   uint64          // PubSub.gen when subs was computed
	subs  []*Subscription // local subscriptions that match
}

// readLoop reads frames until the stream ends (nil at a clean end between
// frames) or a frame is bad (an error; the caller resets the stream).
func (ps *PubSub) readLoop(in *inbound) error {
	br := bufio.NewReaderSize(in.s, readBufSize)
	fr := frame.NewReader(br, ps.readLimit)
	did := peerdid.Of(in.peer)
	var (
		topics []*topicEntry // the stream's topic table: id i+1 is topics[i]
		prev   streamState
		slab   []byte
		gotSet bool
		// refusalLogged is when a refused message was last logged.
		refusalLogged time.Time
	)
	for {
		h, body, err := fr.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if h.Version != wireVersion {
			return fmt.Errorf("%w: frame type %d has version %d, want %d", errMalformed, h.Type, h.Version, wireVersion)
		}
		if !gotSet && h.Type != typeInterestSet {
			return fmt.Errorf("%w: first frame is of type %d, want the interest set (%d)", errMalformed, h.Type, typeInterestSet)
		}
		switch h.Type {
		case typeMessage:
			ps.frames.Add(1)
			m, err := decodeMessage(body, &prev)
			if err != nil {
				return err
			}
			if int(m.id) > len(topics) {
				return fmt.Errorf("%w: message for topic id %d; the stream defined %d", errMalformed, m.id, len(topics))
			}
			if len(m.payload) > ps.cfg.MaxMessageSize {
				return fmt.Errorf("%w: payload of %d bytes, over our limit of %d", errMalformed, len(m.payload), ps.cfg.MaxMessageSize)
			}
			e := topics[m.id-1]
			if ps.secure {
				// The peer's verdict is looked up for every message: the
				// node replaces it when the peer presents new chains and
				// drops it when the peer leaves.
				if err := ucan.Check(ps.access.Peer(in.peer), ucan.Publish, e.topic); err != nil {
					ps.refusedIn.Add(1)
					if now := time.Now(); now.Sub(refusalLogged) >= refusalLogEvery {
						refusalLogged = now
						ps.log.Debug("pubsub: dropping messages from a peer that may not publish them", "peer", in.peer, "topic", e.topic, "err", err)
					}
					continue
				}
			}
			if g := ps.gen.Load(); e.gen != g {
				e.subs = ps.matchLocal(e.topic, e.subs[:0])
				e.gen = g
			}
			if len(e.subs) == 0 || !ps.mayDeliverLocally(e.topic) {
				continue
			}
			var payload []byte
			payload, slab = copyPayload(slab, m.payload)
			msg := Message{Topic: e.topic, Payload: payload, Publisher: did, PublisherPeer: in.peer, Time: time.Unix(0, m.nanos), Seq: m.seq}
			pressed := false
			for _, s := range e.subs {
				// A Backpressure subscription holds up the stream while
				// it is full; the wait ends with the stream (in.ctx).
				var wait context.Context
				if s.backpressure {
					wait = in.ctx
				}
				p, _ := s.deliver(wait, msg)
				pressed = p || pressed
			}
			if pressed {
				// A handler is falling behind, likely queued behind this
				// goroutine on the same P: let it run.
				runtime.Gosched()
			}
		case typeTopic:
			topic := string(body)
			if !realm.Under(ps.cfg.Realm, topic) {
				return fmt.Errorf("%w: topic %.80q is not a topic of realm %s", errMalformed, topic, ps.cfg.Realm)
			}
			if len(topics) >= maxStreamTopics {
				return fmt.Errorf("%w: more than %d topics defined without a reset", errMalformed, maxStreamTopics)
			}
			topics = append(topics, &topicEntry{topic: topic, gen: ps.gen.Load() - 1})
		case typeTopicReset:
			if len(body) != 0 {
				return fmt.Errorf("%w: topic reset with a body", errMalformed)
			}
			clear(topics)
			topics = topics[:0]
		case typeInterestSet:
			limit, pats, err := decodeInterestSet(body)
			if err != nil {
				return err
			}
			if err := ps.applyInterest(in, typeInterestSet, limit, pats); err != nil {
				return err
			}
			gotSet = true
		case typeInterestAdd, typeInterestRemove:
			pats, err := decodePatterns(body)
			if err != nil {
				return err
			}
			if err := ps.applyInterest(in, h.Type, 0, pats); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: unknown frame type %d", errMalformed, h.Type)
		}
	}
}

// copyPayload copies p into the free tail of slab, starting a new slab when
// it is full, and returns the copy (whose capacity ends with it, so an
// append by the receiver cannot run into a neighbour) and the rest of the
// slab. Big payloads get their own allocation.
func copyPayload(slab, p []byte) (cp, rest []byte) {
	switch {
	case len(p) == 0:
		return emptyPayload, slab
	case len(p) > slabSize/8:
		return append([]byte(nil), p...), slab
	case len(slab) < len(p):
		slab = make([]byte, slabSize)
	}
	n := copy(slab, p)
	return slab[:n:n], slab[n:]
}

// applyInterest applies an interest frame from in's peer. Patterns must be
// valid for our realm; a set replaces the peer's interest and gives its
// payload limit.
func (ps *PubSub) applyInterest(in *inbound, typ uint8, limit uint32, pats []string) error {
	for _, p := range pats {
		if err := realm.ValidatePattern(ps.cfg.Realm, p); err != nil {
			return fmt.Errorf("%w: %w", errMalformed, err)
		}
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	r := ps.remotes[in.peer]
	if r == nil || r.in != in {
		if in.handedOver.Load() {
			return nil // the new stream's interest set counts; read on
		}
		return errReplaced
	}
	before := len(r.patterns)
	switch typ {
	case typeInterestSet:
		r.patterns = make(map[string]struct{}, len(pats))
		r.limit = limit
		if r.out != nil {
			r.out.limit.Store(limit)
		}
		fallthrough
	case typeInterestAdd:
		if r.patterns == nil {
			r.patterns = make(map[string]struct{}, len(pats))
		}
		for _, p := range pats {
			r.patterns[p] = struct{}{}
		}
		if len(r.patterns) > MaxPatterns {
			return fmt.Errorf("%w: peer announced more than %d patterns", errMalformed, MaxPatterns)
		}
	case typeInterestRemove:
		for _, p := range pats {
			delete(r.patterns, p)
		}
	}
	switch after := len(r.patterns); {
	case before == 0 && after > 0:
		ps.h.ConnManager().TagPeer(r.id, connTag, connTagValue)
	case before > 0 && after == 0:
		ps.h.ConnManager().UntagPeer(r.id, connTag)
	}
	ps.gen.Add(1)
	if len(r.patterns) > 0 {
		ps.openLocked(r, nil, false)
	}
	return nil
}
