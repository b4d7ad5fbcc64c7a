package pubsub

import (
	"context"
	"sync"
)

// PublishOption changes how one Publish treats full queues. The zero value
// changes nothing.
type PublishOption struct{ wait bool }

// WaitForRoom makes Publish wait, bounded by its ctx, for room in every
// queue the message goes to (the send queue of each subscriber node, the
// queue of each local subscription) instead of dropping the message where
// a queue is full: the publisher is slowed down to the pace of its slowest
// subscriber instead of losing messages. See the package doc, "Flow
// control", for how far that reaches and what it costs.
func WaitForRoom() PublishOption { return PublishOption{wait: true} }

// SubscribeOption changes how a subscription treats a full queue. The zero
// value changes nothing.
type SubscribeOption struct{ backpressure bool }

// Backpressure makes the subscription hold up the messages that come from
// other nodes while its queue (or channel) is full, instead of dropping
// them: the stream reader of the publishing node waits for room, which
// stops reading that node's stream, which fills the stream's QUIC window
// and then the publisher's send queue to this node, which slows down a
// publisher that publishes with WaitForRoom. The cost is the whole stream:
// while the subscription is full, nothing else that node sends this one
// (messages on other topics, for other subscriptions, interest changes)
// is read either, and a publisher that does not wait loses its messages
// to this node at its full send queue (counted in its DroppedSend) rather
// than here. Publishers on other nodes and other subscriber nodes are not
// affected. Local publishes that do not wait still drop at a full queue.
func Backpressure() SubscribeOption { return SubscribeOption{backpressure: true} }

// roomSignal wakes the producers that wait for room in a full queue. It is
// guarded by the queue owner's mutex: a producer that finds the queue full
// takes the channel under that mutex and waits for it to close; the
// consumer closes it, under the same mutex, whenever it takes from the
// queue. A channel is made only when someone waits, so a queue that never
// fills costs a nil check.
type roomSignal struct{ ch chan struct{} }

// waitLocked waits until the consumer makes room, done is closed or wait
// ends, with mu (the owner's mutex, held by the caller) unlocked
// meanwhile; it returns with mu held again, and the caller looks at the
// queue again.
func (r *roomSignal) waitLocked(mu *sync.Mutex, done <-chan struct{}, wait context.Context) {
	if r.ch == nil {
		r.ch = make(chan struct{})
	}
	room := r.ch
	mu.Unlock()
	select {
	case <-room:
	case <-done:
	case <-wait.Done():
	}
	mu.Lock()
}

// wakeLocked wakes every waiter.
func (r *roomSignal) wakeLocked() {
	if r.ch != nil {
		close(r.ch)
		r.ch = nil
	}
}

// waitErr is why a producer gives up on a full queue: nil for a producer
// that does not wait (it drops), else its context's error.
func waitErr(wait context.Context) error {
	if wait == nil {
		return nil
	}
	return wait.Err()
}
