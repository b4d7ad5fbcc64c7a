package pubsub

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/macula-io/macula/event"
	"github.com/macula-io/macula/realm"
	"github.com/macula-io/macula/ucan"
)

// Message is one message delivered to a subscription.
type Message struct {
	// Topic is the concrete topic it was published to.
	Topic string
	// Payload is the message body. It belongs to the receiver, but it may
	// share its backing memory with other messages' payloads (read-only to
	// them), so keeping one small payload can keep up to 32 KiB alive.
	Payload []byte
	// Publisher is the did:key of the publishing node ("" if its key is
	// not Ed25519, which a Macula node's always is).
	Publisher string
	// PublisherPeer is the publishing node's peer ID.
	PublisherPeer peer.ID
	// Time is the publish time, on the publisher's clock.
	Time time.Time
	// Seq is the publisher's sequence number for the message: it counts
	// every message the publishing node published (on any topic) since it
	// started, so it increases along the messages one goroutine publishes,
	// and the same message carries the same Seq at every subscriber.
	Seq uint64
}

// topicRoute is a publisher's cached route for one topic.
type topicRoute struct {
	topic string
	keys  []string              // DHT keys of its possible subscribers; read-only
	used  atomic.Bool           // set by Publish, cleared by the refresh loop
	snap  atomic.Pointer[route] // the current route
	// lastEvent is when the last publish event for the topic was emitted
	// (unix ns).
	lastEvent atomic.Int64
	// published counts the successful Publish calls to the topic.
	published atomic.Uint64
	idle      int // refreshes without a Publish; guarded by PubSub.mu
}

// route says where a topic's messages go. Immutable once stored.
type route struct {
	gen   uint64
	links []*link         // remote subscriber nodes
	local []*Subscription // local subscriptions
}

// emptyPayload is the payload of an empty message; it has no room to write
// into, so every empty message can share it.
var emptyPayload = []byte{}

// Publish sends payload to every subscription, local or on other nodes,
// whose pattern matches topic. topic must be a concrete topic of the realm:
// otherwise the error wraps realm.ErrInvalid (realm.ErrOutsideRealm for a
// topic of another realm). A payload over MaxMessageSize is ErrTooLarge.
//
// By default Publish never blocks on the network or on subscribers (it
// sheds): it queues the message for each subscriber node and local
// subscription and returns. A node or subscription whose queue is full
// misses the message (Stats.DroppedSend, DroppedLocal). When a queue is
// more than half full, Publish yields the processor once (runtime.Gosched)
// so that the queue's consumer gets to run; it never waits for it.
//
// With WaitForRoom, Publish waits instead, until ctx ends, for room in
// each full queue, one after the other. If ctx ends first the message is
// still queued where there is room, and the error is a *NoRoomError (it
// matches ErrNoRoom and ctx's error) that says for how many destinations
// it was queued and for how many it was dropped. See the package doc,
// "Flow control".
//
// The caller may reuse payload when Publish returns. Delivery is at most
// once, in order per publisher and subscriber; subscriber nodes this node
// has not learnt of yet (see the package doc) miss the message.
//
// In a secure realm (Config.Access), Publish fails with ErrUnauthorized
// unless the node may publish to topic, and sends the message only to the
// subscriber nodes that may subscribe to it.
func (ps *PubSub) Publish(ctx context.Context, topic string, payload []byte, opts ...PublishOption) error {
	if ps.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(payload) > ps.cfg.MaxMessageSize {
		return fmt.Errorf("%w: %d bytes; the limit is %d", ErrTooLarge, len(payload), ps.cfg.MaxMessageSize)
	}
	if ps.secure {
		if err := ucan.Check(ps.access.Self(), ucan.Publish, topic); err != nil {
			if verr := realm.ValidateTopic(ps.cfg.Realm, topic); verr != nil {
				return fmt.Errorf("pubsub: publish: %w", verr)
			}
			return fmt.Errorf("%w: publish to %s: %w", ErrUnauthorized, topic, err)
		}
	}
	rt, tr, err := ps.route(topic)
	if err != nil {
		return err
	}
	// wait is nil for a shedding Publish: the queues drop rather than wait.
	var wait context.Context
	for _, o := range opts {
		if o.wait {
			wait = ctx
		}
	}
	seq := ps.seq.Add(1)
	now := time.Now().UnixNano()
	pressed := false
	queued, missed := 0, 0
	count := func(p bool, err error) {
		pressed = p || pressed
		switch {
		case err == nil:
			queued++
		case !errors.Is(err, errNotSent):
			missed++
		}
	}
	for _, l := range rt.links {
		if ps.secure && !l.maySubscribe(topic, now) {
			continue
		}
		count(l.sendMessage(wait, seq, now, topic, payload))
	}
	if len(rt.local) > 0 && ps.mayDeliverLocally(topic) {
		p := emptyPayload
		if len(payload) > 0 {
			p = append([]byte(nil), payload...)
		}
		m := Message{Topic: topic, Payload: p, Publisher: ps.did, PublisherPeer: ps.self, Time: time.Unix(0, now), Seq: seq}
		for _, s := range rt.local {
			count(s.deliver(wait, m))
		}
	}
	if pressed {
		// A queue is more than half full: its consumer (a writer or a
		// handler) is likely queued behind this goroutine on the same P.
		// Let it run; this does not wait for it.
		runtime.Gosched()
	}
	if tr != nil {
		tr.published.Add(1)
	}
	if ps.bus != nil && (tr == nil || tr.eventDue(now)) {
		ps.bus.Emit(event.Event{Kind: event.Publish, Topic: topic, Time: time.Unix(0, now)})
	}
	if missed > 0 {
		return &NoRoomError{Topic: topic, Queued: queued, Missed: missed, Err: ctx.Err()}
	}
	return nil
}

// publishEventEvery is the sampling of publish events: one per topic per
// this interval. Bus.Emit takes a lock and copies a 200-byte event, about
// 60 ns, which would make Publish (about 100 ns) 60% slower if it ran for
// every message.
const publishEventEvery = 100 * time.Millisecond

// eventDue reports whether a publish event for the topic is due at now
// (unix ns), and claims it.
func (tr *topicRoute) eventDue(now int64) bool {
	last := tr.lastEvent.Load()
	return now-last >= int64(publishEventEvery) && tr.lastEvent.CompareAndSwap(last, now)
}

// route returns the current route of topic, validating the topic the first
// time it is seen, and the topic's cache entry (nil if the cache is full).
func (ps *PubSub) route(topic string) (*route, *topicRoute, error) {
	ps.routesMu.RLock()
	tr := ps.routes[topic]
	ps.routesMu.RUnlock()
	if tr == nil {
		if err := realm.ValidateTopic(ps.cfg.Realm, topic); err != nil {
			return nil, nil, fmt.Errorf("pubsub: publish: %w", err)
		}
		return ps.addRoute(topic)
	}
	if !tr.used.Load() {
		tr.used.Store(true)
	}
	if rt := tr.snap.Load(); rt.gen == ps.gen.Load() {
		return rt, tr, nil
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.refreshLocked(tr), tr, nil
}

// refreshLocked returns tr's route, recomputed if it is stale.
func (ps *PubSub) refreshLocked(tr *topicRoute) *route {
	rt := tr.snap.Load()
	if rt.gen != ps.gen.Load() {
		rt = ps.computeRouteLocked(tr.topic)
		tr.snap.Store(rt)
	}
	return rt
}

// addRoute caches the route of a new, valid topic and registers its DHT
// keys for lookup.
func (ps *PubSub) addRoute(topic string) (*route, *topicRoute, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.closing {
		return nil, nil, ErrClosed
	}
	if tr := ps.routes[topic]; tr != nil {
		// Another Publish added it meanwhile.
		return ps.refreshLocked(tr), tr, nil
	}
	rt := ps.computeRouteLocked(topic)
	if len(ps.routes) >= maxRoutes {
		return rt, nil, nil
	}
	tr := &topicRoute{topic: topic, keys: topicKeys(ps.cfg.Realm, topic)}
	tr.used.Store(true)
	tr.snap.Store(rt)
	ps.routesMu.Lock()
	ps.routes[topic] = tr
	ps.routesMu.Unlock()
	if ps.addKeysLocked(tr.keys) {
		select {
		case ps.wakeLookup <- struct{}{}:
		default:
		}
	}
	return rt, tr, nil
}

// computeRouteLocked matches topic against every peer's interest and every
// local subscription.
func (ps *PubSub) computeRouteLocked(topic string) *route {
	rt := &route{gen: ps.gen.Load()}
	for _, r := range ps.remotes {
		if r.out == nil {
			continue
		}
		for p := range r.patterns {
			if realm.Match(p, topic) {
				rt.links = append(rt.links, r.out)
				break
			}
		}
	}
	for s := range ps.subs {
		if realm.Match(s.pattern, topic) {
			rt.local = append(rt.local, s)
		}
	}
	return rt
}

// mayDeliverLocally reports whether this node's own subscriptions may get a
// message on topic: in a secure realm the node's subscribe right is checked
// again for every message, so that a revoked or expired grant stops what it
// allowed when it was made. A refusal is counted in WithheldUnauthorized.
func (ps *PubSub) mayDeliverLocally(topic string) bool {
	if !ps.secure {
		return true
	}
	if ucan.Check(ps.access.Self(), ucan.Subscribe, topic) != nil {
		ps.refusedOut.Add(1)
		return false
	}
	return true
}
