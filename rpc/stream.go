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

// readBufSize is the read buffer of a stream.
const readBufSize = 16 << 10

var errStreamClosed = errors.New("rpc: stream closed")

// wstream is a stream with one writer goroutine: frames queued by any
// goroutine go out in order; the writer drains what is queued into a
// buffered writer and flushes when the queue is empty, so concurrent calls
// share writes.
type wstream struct {
	s    network.Stream
	out  chan *[]byte  // bounded; each holds one whole frame
	done chan struct{} // closed when the stream is finished
	once sync.Once
	wg   sync.WaitGroup
	// busy reports whether other frames may be about to be queued (other
	// calls in flight on this stream): only then does the writer yield
	// before flushing.
	busy func() bool
}

func newWStream(s network.Stream, queue int, busy func() bool) *wstream {
	w := &wstream{s: s, out: make(chan *[]byte, queue), done: make(chan struct{}), busy: busy}
	w.wg.Add(1)
	go w.writeLoop()
	return w
}

// send queues a whole frame; it blocks while the queue is full and fails
// once the stream is finished. It takes ownership of b.
func (w *wstream) send(b *[]byte) error {
	select {
	case <-w.done:
		putBuf(b)
		return errStreamClosed
	default:
	}
	select {
	case w.out <- b:
		return nil
	case <-w.done:
		putBuf(b)
		return errStreamClosed
	}
}

// trySend queues a frame unless the queue is full; for best-effort frames
// such as cancels.
func (w *wstream) trySend(b *[]byte) {
	select {
	case w.out <- b:
	default:
		putBuf(b)
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
			return
		case b := <-w.out:
			bw := writerPool.Get().(*bufio.Writer)
			bw.Reset(w.s)
			_, err := bw.Write(*b)
			putBuf(b)
			for err == nil && len(w.out) > 0 {
				b = <-w.out
				_, err = bw.Write(*b)
				putBuf(b)
			}
			if err == nil && bw.Buffered() < 32<<10 && w.busy() {
				// Before flushing, let runnable goroutines (handlers about
				// to answer, callers about to send) queue their frames, so
				// they share this write and its QUIC packet.
				runtime.Gosched()
				for err == nil && len(w.out) > 0 {
					b = <-w.out
					_, err = bw.Write(*b)
					putBuf(b)
				}
			}
			if err == nil {
				err = bw.Flush()
			}
			bw.Reset(nil) // drops the unflushed rest after an error
			writerPool.Put(bw)
			if err != nil {
				w.finish(true)
				return
			}
		}
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
