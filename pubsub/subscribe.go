package pubsub

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/macula-io/macula/event"
	"github.com/macula-io/macula/realm"
	"github.com/macula-io/macula/ucan"
)

// Subscription is one local subscription to a pattern.
type Subscription struct {
	// Set at creation, read-only after.
	ps      *PubSub
	pattern string
	handler func(Message) // nil for a channel subscription
	ch      chan Message  // channel subscription; closed by stop
	limit   int           // queue bound of a handler subscription
	wake    chan struct{} // cap 1: the queue went from empty to not empty
	done    chan struct{} // closed by stop
	// backpressure: stream readers wait for room (Backpressure).
	backpressure bool

	stopped atomic.Bool
	dropped atomic.Uint64
	// stat counts for every subscription of the pattern; set by addSub.
	stat     *patternStat
	stopOnce sync.Once
	unsub    sync.Once
	// sending counts the producers blocked on a send to ch (waiting for
	// room); stop waits for them to leave before it closes ch. A producer
	// is added under mu while closed is false.
	sending sync.WaitGroup

	// mu guards the fields below it.
	mu     sync.Mutex
	queue  []Message  // waiting for the handler
	queued int        // len(queue) plus the batch the handler is working through
	room   roomSignal // producers waiting for room in queue
	closed bool
}

// Subscribe calls handler with every message whose topic matches pattern,
// from one goroutine per subscription, in order of arrival (so in publish
// order per publisher). pattern is an exact topic, or uses "*" for one
// segment and a final ">" for one or more (see package realm); it must be
// able to match a topic of the realm, else the error wraps realm.ErrInvalid.
//
// Messages wait for the handler in a queue of Config.SubscriptionBuffer;
// when it is full, new messages are dropped and counted (Dropped), and
// nothing else slows down. Local publishes are delivered too.
//
// With Backpressure, messages from other nodes wait for room instead (see
// Backpressure for the cost), and a full queue slows down their publishers
// that publish with WaitForRoom.
//
// In a secure realm (Config.Access), Subscribe fails with ErrUnauthorized
// unless the node may subscribe to every topic pattern can match: a grant
// of io.acme.orders.* allows io.acme.orders.* and io.acme.orders.placed,
// not io.acme.>.
func (ps *PubSub) Subscribe(pattern string, handler func(Message), opts ...SubscribeOption) (*Subscription, error) {
	if handler == nil {
		return nil, errors.New("pubsub: subscribe: nil handler")
	}
	s := &Subscription{
		ps:           ps,
		pattern:      pattern,
		handler:      handler,
		limit:        ps.cfg.SubscriptionBuffer,
		wake:         make(chan struct{}, 1),
		done:         make(chan struct{}),
		backpressure: backpressureOf(opts),
	}
	if err := ps.addSub(s); err != nil {
		return nil, err
	}
	return s, nil
}

// SubscribeChan is Subscribe with a channel: messages whose topic matches
// pattern are sent on the returned channel, which has room for buffer
// messages (Config.SubscriptionBuffer when buffer <= 0). A message that
// finds the channel full is dropped and counted (with Backpressure, one
// from another node waits for room instead). The channel is closed by
// Unsubscribe and by Close. It is authorized as Subscribe is.
func (ps *PubSub) SubscribeChan(pattern string, buffer int, opts ...SubscribeOption) (*Subscription, <-chan Message, error) {
	if buffer <= 0 {
		buffer = ps.cfg.SubscriptionBuffer
	}
	s := &Subscription{
		ps:           ps,
		pattern:      pattern,
		ch:           make(chan Message, buffer),
		done:         make(chan struct{}),
		backpressure: backpressureOf(opts),
	}
	if err := ps.addSub(s); err != nil {
		return nil, nil, err
	}
	return s, s.ch, nil
}

// addSub validates and registers a subscription, announces a new pattern
// to linked peers and to the DHT, and starts the handler goroutine.
func (ps *PubSub) addSub(s *Subscription) error {
	if err := realm.ValidatePattern(ps.cfg.Realm, s.pattern); err != nil {
		return fmt.Errorf("pubsub: subscribe: %w", err)
	}
	if ps.secure {
		if err := ucan.CheckPattern(ps.access.Self(), ucan.Subscribe, s.pattern); err != nil {
			return fmt.Errorf("%w: subscribe to %s: %w", ErrUnauthorized, s.pattern, err)
		}
	}
	ps.mu.Lock()
	if ps.closing {
		ps.mu.Unlock()
		return ErrClosed
	}
	n := ps.interest[s.pattern]
	if n == 0 && len(ps.interest) >= MaxPatterns {
		ps.mu.Unlock()
		return fmt.Errorf("%w: %d", ErrTooManyPatterns, MaxPatterns)
	}
	if s.stat = ps.pstats[s.pattern]; s.stat == nil {
		s.stat = &patternStat{}
		ps.pstats[s.pattern] = s.stat
	}
	ps.subs[s] = struct{}{}
	ps.storeSubListLocked()
	ps.interest[s.pattern] = n + 1
	if n == 0 {
		ps.pushInterestLocked(typeInterestAdd, s.pattern)
		ps.provideKeyLocked(interestKey(ps.cfg.Realm, s.pattern), 1)
		if len(ps.interest) == 1 && !ps.noEager {
			ps.linkAllLocked()
		}
	}
	ps.gen.Add(1)
	if s.handler != nil {
		ps.wg.Add(1)
		go s.run()
	}
	ps.mu.Unlock()
	ps.emit(event.Event{Kind: event.Subscribe, Topic: s.pattern, Outcome: "subscribed"})
	return nil
}

// removeSub undoes addSub.
func (ps *PubSub) removeSub(s *Subscription) {
	ps.mu.Lock()
	if _, ok := ps.subs[s]; !ok {
		ps.mu.Unlock()
		return
	}
	delete(ps.subs, s)
	ps.storeSubListLocked()
	if n := ps.interest[s.pattern] - 1; n > 0 {
		ps.interest[s.pattern] = n
	} else {
		delete(ps.interest, s.pattern)
		delete(ps.pstats, s.pattern)
		ps.pushInterestLocked(typeInterestRemove, s.pattern)
		ps.provideKeyLocked(interestKey(ps.cfg.Realm, s.pattern), -1)
	}
	ps.gen.Add(1)
	ps.mu.Unlock()
	ps.emit(event.Event{Kind: event.Subscribe, Topic: s.pattern, Outcome: "unsubscribed"})
}

// storeSubListLocked publishes a new snapshot of the subscriptions for the
// delivery path. It must come before the gen bump that announces it.
func (ps *PubSub) storeSubListLocked() {
	l := make([]*Subscription, 0, len(ps.subs))
	for s := range ps.subs {
		l = append(l, s)
	}
	ps.subList.Store(&l)
}

// matchLocal appends to dst the local subscriptions whose pattern matches
// topic.
func (ps *PubSub) matchLocal(topic string, dst []*Subscription) []*Subscription {
	for _, s := range *ps.subList.Load() {
		if realm.Match(s.pattern, topic) {
			dst = append(dst, s)
		}
	}
	return dst
}

// pushInterestLocked sends an interest change to every linked peer.
func (ps *PubSub) pushInterestLocked(typ uint8, pattern string) {
	var b []byte
	for _, r := range ps.remotes {
		if r.out == nil {
			continue
		}
		if b == nil {
			b = appendInterestFrames(nil, typ, []string{pattern})
		}
		r.out.sendControl(b)
	}
}

// linkAllLocked links to every connected peer known to speak pubsub, to
// announce the node's first pattern.
func (ps *PubSub) linkAllLocked() {
	for _, p := range ps.h.Network().Peers() {
		if ok, _ := ps.h.Peerstore().SupportsProtocols(p, ps.proto); len(ok) > 0 && p != ps.self {
			r := ps.remoteLocked(p)
			ps.openLocked(r, nil, true)
			ps.gcLocked(r)
		}
	}
}

// provideKeyLocked counts a local pattern in or out of a DHT key and wakes
// the provide loop when the key comes or goes.
func (ps *PubSub) provideKeyLocked(key string, delta int) {
	n := ps.provide[key] + delta
	if n > 0 {
		ps.provide[key] = n
	} else {
		delete(ps.provide, key)
	}
	if n == 0 || n == 1 && delta > 0 {
		select {
		case ps.wakeProvide <- struct{}{}:
		default:
		}
	}
}

// Pattern returns the subscription's pattern.
func (s *Subscription) Pattern() string { return s.pattern }

// Dropped returns how many messages this subscription lost because its
// queue (or channel) was full.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Unsubscribe stops delivery: the handler is not called again once a call
// in progress returns (Unsubscribe does not wait for it, so a handler may
// unsubscribe itself), and the channel of SubscribeChan is closed. Messages
// still queued are discarded. It is safe to call more than once.
func (s *Subscription) Unsubscribe() {
	s.unsub.Do(func() {
		s.ps.removeSub(s)
		s.stop()
	})
}

// stop ends delivery to s. Producers waiting for room give up (the
// message is neither delivered nor counted as dropped, as for a stopped
// subscription); the channel closes once no producer is blocked on it.
func (s *Subscription) stop() {
	s.stopOnce.Do(func() {
		s.stopped.Store(true)
		s.mu.Lock()
		s.closed = true
		s.queue = nil
		s.mu.Unlock()
		close(s.done)
		if s.ch != nil {
			s.sending.Wait()
			close(s.ch)
		}
	})
}

// deliver queues m for the handler, or sends it on the channel. It is
// called by stream readers and by Publish. With a nil wait it never blocks:
// a full queue or channel drops m and counts it. With a wait context it
// waits for room until wait ends, and then drops m, counts it and returns
// wait's error; a stopped subscription takes nothing (errNotSent). It
// reports whether the queue is more than half full, so that the caller can
// yield the processor to the handler (see package doc, "Queues").
func (s *Subscription) deliver(wait context.Context, m Message) (pressed bool, err error) {
	s.mu.Lock()
	if s.ch != nil {
		return s.sendLocked(wait, m)
	}
	for !s.closed && s.queued >= s.limit {
		if wait == nil || wait.Err() != nil {
			s.mu.Unlock()
			s.drop()
			return true, waitErr(wait)
		}
		s.room.waitLocked(&s.mu, s.done, wait)
	}
	if s.closed {
		s.mu.Unlock()
		return false, errNotSent
	}
	wake := len(s.queue) == 0
	s.queue = append(s.queue, m)
	s.queued++
	pressed = 2*s.queued > s.limit
	s.mu.Unlock()
	if wake {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	return pressed, nil
}

// sendLocked is deliver for a channel subscription; it is called with mu
// held and unlocks it. A producer that waits blocks on the send itself,
// counted in sending so that stop does not close the channel under it.
func (s *Subscription) sendLocked(wait context.Context, m Message) (pressed bool, err error) {
	if s.closed {
		s.mu.Unlock()
		return false, errNotSent
	}
	select {
	case s.ch <- m:
		s.mu.Unlock()
		s.countDelivered(1)
		return 2*len(s.ch) > cap(s.ch), nil
	default:
	}
	if wait == nil || wait.Err() != nil {
		s.mu.Unlock()
		s.drop()
		return true, waitErr(wait)
	}
	s.sending.Add(1)
	s.mu.Unlock()
	defer s.sending.Done()
	select {
	case s.ch <- m:
		s.countDelivered(1)
		return true, nil
	case <-s.done:
		return false, errNotSent
	case <-wait.Done():
		s.drop()
		return true, wait.Err()
	}
}

// drop counts a message lost to a full queue.
func (s *Subscription) drop() {
	s.dropped.Add(1)
	s.stat.dropped.Add(1)
	s.ps.droppedLocal.Add(1)
}

// countDelivered counts n messages handed to the handler or the channel.
func (s *Subscription) countDelivered(n uint64) {
	s.ps.delivered.Add(n)
	s.stat.delivered.Add(n)
}

// run calls the handler with queued messages, a batch at a time, until the
// subscription stops.
func (s *Subscription) run() {
	defer s.ps.wg.Done()
	var batch []Message
	handled := 0
	for {
		select {
		case <-s.wake:
		case <-s.done:
			return
		}
		for {
			s.mu.Lock()
			s.queued -= handled
			handled = 0
			s.room.wakeLocked()
			if s.closed {
				s.mu.Unlock()
				return
			}
			batch, s.queue = s.queue, batch[:0]
			s.mu.Unlock()
			if len(batch) == 0 {
				break
			}
			for i := range batch {
				if s.stopped.Load() {
					return
				}
				s.handler(batch[i])
				batch[i] = Message{} // let the payload go
			}
			handled = len(batch)
			s.countDelivered(uint64(handled))
		}
	}
}

// backpressureOf reports whether opts ask for Backpressure.
func backpressureOf(opts []SubscribeOption) bool {
	for _, o := range opts {
		if o.backpressure {
			return true
		}
	}
	return false
}
