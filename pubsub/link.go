package pubsub

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/macula-io/macula/ucan"
)

// maxSpare is the largest batch buffer a writer keeps for reuse; a bigger
// one (after a burst of big messages) is left to the garbage collector.
const maxSpare = 4 << 20

// link is our long-lived stream to one peer, with its send queue and the
// writer goroutine that drains it. Everything we send the peer goes through
// it, in order: our interest set and its changes, and the messages that
// match the peer's interest.
//
// The queue is a byte buffer of whole frames. Publish appends a message
// frame to it under mu (no allocation once the buffer has grown); the writer
// swaps it for its spare buffer and writes the whole batch to the stream in
// one Write, then goes back for more. A batch is therefore everything queued
// while the previous one was being written: under light load each message
// goes out at once, under heavy load thousands share one write. This is a
// bufio.Writer flushed whenever the queue is empty, without copying frames
// through a channel.
type link struct {
	// Set at creation, read-only after.
	ps   *PubSub
	peer peer.ID
	s    network.Stream
	wake chan struct{} // cap 1: the queue went from empty to not empty
	done chan struct{} // closed by close

	limit    atomic.Uint32 // largest payload the peer accepts
	doneOnce sync.Once
	// refusalLogged is when a message was last withheld from the peer with
	// a log line (unix ns); see maySubscribe.
	refusalLogged atomic.Int64

	// mu guards the fields below it.
	mu       sync.Mutex
	buf      []byte // queued frames
	queued   int    // message frames in buf (interest frames are not counted)
	closed   bool   // no more writes; buf is dropped
	draining bool   // Close: write what is queued, then close the stream
	warned   bool   // the "dropping" line was logged
	enc      encoder
	room     roomSignal // publishers waiting for room (WaitForRoom)

	spare []byte // owned by writeLoop
}

func newLink(ps *PubSub, p peer.ID, s network.Stream, limit uint32) *link {
	l := &link{ps: ps, peer: p, s: s, wake: make(chan struct{}, 1), done: make(chan struct{})}
	l.limit.Store(limit)
	return l
}

// signal wakes the writer.
func (l *link) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// maySubscribe reports whether the peer may get a message on topic: its
// current verdict grants subscribing to it. The verdict is looked up for
// every message, since the node replaces it when the peer presents new
// chains and drops it when the peer leaves. A refusal is counted, and
// logged at most once per refusalLogEvery; now is the time, unix ns.
func (l *link) maySubscribe(topic string, now int64) bool {
	err := ucan.Check(l.ps.access.Peer(l.peer), ucan.Subscribe, topic)
	if err == nil {
		return true
	}
	l.ps.refusedOut.Add(1)
	if last := l.refusalLogged.Load(); now-last >= int64(refusalLogEvery) && l.refusalLogged.CompareAndSwap(last, now) {
		l.ps.log.Debug("pubsub: not sending to a peer that may not subscribe to the topic", "peer", l.peer, "topic", topic, "err", err)
	}
	return false
}

// sendMessage queues a message frame unless the queue is full (by count or
// bytes), the message is over the peer's limit, or the link is closed; in
// those cases the message is dropped and counted. With a nil wait it never
// blocks beyond the queue's mutex. With a wait context (Publish with
// WaitForRoom) it waits for room in a full queue until wait ends, and then
// drops the message, counts it and returns wait's error; it never waits
// for a closed link or a message over the limit (they drop as without
// wait, and return errNotSent). It reports whether the queue is more than
// half full.
func (l *link) sendMessage(wait context.Context, seq uint64, nanos int64, topic string, payload []byte) (pressed bool, err error) {
	if uint32(len(payload)) > l.limit.Load() {
		l.ps.droppedSend.Add(1)
		return false, errNotSent
	}
	n := len(payload) + msgOverhead // at most
	l.mu.Lock()
	for !l.closed && !l.draining && (l.queued >= l.ps.cfg.PeerQueue || len(l.buf)+n > l.ps.cfg.PeerQueueBytes) {
		if wait == nil || wait.Err() != nil {
			warn := !l.warned && wait == nil
			l.warned = l.warned || warn
			l.mu.Unlock()
			l.ps.droppedSend.Add(1)
			if warn {
				l.ps.log.Info("subscriber node too slow; dropping its messages", "peer", l.peer)
			}
			return true, waitErr(wait)
		}
		l.room.waitLocked(&l.mu, l.done, wait)
	}
	if l.closed || l.draining {
		l.mu.Unlock()
		l.ps.droppedSend.Add(1)
		return false, errNotSent
	}
	wake := len(l.buf) == 0
	l.buf = l.enc.appendMessage(l.buf, seq, nanos, topic, payload)
	l.queued++
	pressed = 2*l.queued > l.ps.cfg.PeerQueue || 2*len(l.buf) > l.ps.cfg.PeerQueueBytes
	l.mu.Unlock()
	if l.ps.cfg.Depends != nil {
		l.ps.cfg.Depends(l.peer)
	}
	if wake {
		l.signal()
	}
	return pressed, nil
}

// queueLen returns the number of messages queued.
func (l *link) queueLen() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.queued
}

// sendControl queues interest frames. They are never dropped: they are
// small and rare, and a peer that missed one would route wrongly.
func (l *link) sendControl(b []byte) {
	l.mu.Lock()
	if l.closed || l.draining {
		l.mu.Unlock()
		return
	}
	wake := len(l.buf) == 0
	l.buf = append(l.buf, b...)
	l.mu.Unlock()
	if wake {
		l.signal()
	}
}

// writeLoop drains the queue into the stream until the link closes.
func (l *link) writeLoop() {
	defer l.ps.wg.Done()
	for {
		select {
		case <-l.wake:
		case <-l.done:
			return
		}
		for {
			l.mu.Lock()
			if l.closed {
				l.mu.Unlock()
				return
			}
			if len(l.buf) == 0 {
				drain := l.draining
				l.mu.Unlock()
				if drain {
					l.finish()
					return
				}
				break
			}
			out, n := l.buf, l.queued
			l.buf, l.queued = l.spare[:0], 0
			l.room.wakeLocked()
			l.mu.Unlock()
			if _, err := l.s.Write(out); err != nil {
				l.close()
				l.ps.droppedSend.Add(uint64(n))
				l.ps.linkDone(l, err)
				return
			}
			l.ps.sent.Add(uint64(n))
			if cap(out) > maxSpare {
				out = nil
			}
			l.spare = out[:0]
		}
	}
}

// finish closes the stream after a drain.
func (l *link) finish() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.doneOnce.Do(func() { close(l.done) })
	_ = l.s.Close()
}

// close stops the link at once: queued messages are dropped (and counted)
// and the stream is reset, which also ends a Write in progress.
func (l *link) close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	lost := l.queued
	l.buf, l.queued = nil, 0
	l.mu.Unlock()
	l.ps.droppedSend.Add(uint64(lost))
	l.doneOnce.Do(func() { close(l.done) })
	_ = l.s.Reset()
}

// shutdown lets the writer send what is queued, for at most d, and then
// close the stream.
func (l *link) shutdown(d time.Duration) {
	_ = l.s.SetWriteDeadline(time.Now().Add(d))
	l.mu.Lock()
	l.draining = true
	l.mu.Unlock()
	l.signal()
}
