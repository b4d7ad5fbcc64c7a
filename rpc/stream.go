package rpc

import (
	"bufio"
	"errors"
	"runtime"
	"sync"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/macula-io/macula/frame"
)

// bufPool recycles frame buffers on the hot path.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) > 64<<10 {
		return // don't keep big buffers alive
	}
	*b = (*b)[:0]
	bufPool.Put(b)
}

// readBufSize is the read buffer of a stream: enough for a burst of small
// frames in one Read (a frame larger than the buffer is read into its own
// buffer directly). Every stream keeps its reader for its life, and a node
// holds two rpc streams per connected peer (its calls or advertisements,
// and the peer's): 16 KiB was 32 KiB per peer, 1.4 MiB of a realm node's
// heap while its join's connections were open.
const readBufSize = 4 << 10

var errStreamClosed = errors.New("rpc: stream closed")

// wstream is a stream with one writer goroutine: frames queued by any
// goroutine go out in order; the writer drains what is queued into a
// buffered writer and flushes when the queue is empty, so concurrent calls
// share writes.
//
// The queue holds up to max frames (so that a call holding one of the
// stream's slots never waits for room: see newWStream's callers) but grows
// only as far as it is used: a channel of that size cost every stream 8 KiB
// of pointers, idle or not.
type wstream struct {
	s    network.Stream
	max  int
	mu   sync.Mutex
	q    []*[]byte     // queued frames, oldest first; each one whole frame. Guarded by mu.
	next []*[]byte     // the writer's other slice, swapped with q. Owned by the writer.
	wake chan struct{} // cap 1: q has frames for the writer
	room chan struct{} // cap 1: q had room again for a sender that waits
	done chan struct{} // closed when the stream is finished
	once sync.Once
	wg   sync.WaitGroup
	// busy reports whether other frames may be about to be queued (other
	// calls in flight on this stream): only then does the writer yield
	// before flushing.
	busy func() bool
}

// keepQueue is the capacity of queue slices the writer keeps for the next
// batch; a larger one (a burst) goes back to the garbage collector.
const keepQueue = 64

func newWStream(s network.Stream, queue int, busy func() bool) *wstream {
	w := &wstream{s: s, max: queue, wake: make(chan struct{}, 1), room: make(chan struct{}, 1), done: make(chan struct{}), busy: busy}
	w.wg.Add(1)
	go w.writeLoop()
	return w
}

// send queues a whole frame; it blocks while the queue is full and fails
// once the stream is finished. It takes ownership of b.
func (w *wstream) send(b *[]byte) error {
	for {
		select {
		case <-w.done:
			putBuf(b)
			return errStreamClosed
		default:
		}
		if w.tryQueue(b) {
			return nil
		}
		select {
		case <-w.room:
		case <-w.done:
			putBuf(b)
			return errStreamClosed
		}
	}
}

// trySend queues a frame unless the queue is full; for best-effort frames
// such as cancels.
func (w *wstream) trySend(b *[]byte) {
	if !w.tryQueue(b) {
		putBuf(b)
	}
}

// tryQueue queues b if the queue has room, and wakes the writer.
func (w *wstream) tryQueue(b *[]byte) bool {
	w.mu.Lock()
	if len(w.q) >= w.max {
		w.mu.Unlock()
		return false
	}
	w.q = append(w.q, b)
	more := len(w.q) < w.max
	w.mu.Unlock()
	signal(w.wake)
	if more {
		// Another sender may wait for room (it was full when it looked):
		// pass the word on.
		signal(w.room)
	}
	return true
}

// take hands the writer every queued frame, and tells a waiting sender
// that there is room.
func (w *wstream) take() []*[]byte {
	w.mu.Lock()
	batch := w.q
	w.q = w.next[:0]
	w.mu.Unlock()
	w.next = nil
	if len(batch) > 0 {
		signal(w.room)
	}
	return batch
}

// recycle gives the writer's batch slice back for the next take.
func (w *wstream) recycle(batch []*[]byte) {
	if cap(batch) > keepQueue {
		return
	}
	clear(batch)
	w.next = batch[:0]
}

// signal wakes a cap-1 channel's reader without blocking.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// writerPool lends the writers their 64 KiB buffers for one batch at a
// time: a stream that kept its own for its life cost an idle node 64 KiB per
// peer it ever called or was called by (a fifth of its heap in a realm of
// 50 nodes).
var writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 64<<10) }}

func (w *wstream) writeLoop() {
	defer w.wg.Done()
	for {
		select {
		case <-w.done:
			w.drop()
			return
		case <-w.wake:
		}
		batch := w.take()
		if len(batch) == 0 {
			w.recycle(batch)
			continue
		}
		bw := writerPool.Get().(*bufio.Writer)
		bw.Reset(w.s)
		err := w.write(bw, batch)
		if err == nil && bw.Buffered() < 32<<10 && w.busy() {
			// Before flushing, let runnable goroutines (handlers about
			// to answer, callers about to send) queue their frames, so
			// they share this write and its QUIC packet.
			runtime.Gosched()
			err = w.write(bw, w.take())
		}
		if err == nil {
			err = bw.Flush()
		}
		bw.Reset(nil) // drops the unflushed rest after an error
		writerPool.Put(bw)
		if err != nil {
			w.finish(true)
			w.drop()
			return
		}
	}
}

// write writes the frames of batch (and of later batches while more are
// queued), recycling each frame's buffer and the slice.
func (w *wstream) write(bw *bufio.Writer, batch []*[]byte) error {
	for {
		var err error
		for _, b := range batch {
			if err == nil {
				_, err = bw.Write(*b)
			}
			putBuf(b)
		}
		w.recycle(batch)
		if err != nil {
			return err
		}
		if batch = w.take(); len(batch) == 0 {
			w.recycle(batch)
			return nil
		}
	}
}

// drop recycles what is queued on a finished stream.
func (w *wstream) drop() {
	batch := w.take()
	for _, b := range batch {
		putBuf(b)
	}
}

// finish ends the stream once: reset on error, else close.
func (w *wstream) finish(reset bool) {
	w.once.Do(func() {
		close(w.done)
		if reset {
			_ = w.s.Reset()
		} else {
			_ = w.s.Close()
		}
	})
}

// wait waits for the writer goroutine.
func (w *wstream) wait() { w.wg.Wait() }

// appendFrame starts a frame of the given type in a pooled buffer; fill
// appends the body and the length is patched in by sealFrame.
func startFrame(typ uint8) *[]byte { return startFrameVersion(typ, wireVersion) }

func startFrameVersion(typ, version uint8) *[]byte {
	b := getBuf()
	*b = frame.AppendHeader((*b)[:0], typ, version, 0)
	return b
}

func sealFrame(b *[]byte) {
	n := len(*b) - frame.HeaderLen
	(*b)[2], (*b)[3], (*b)[4], (*b)[5] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
}
