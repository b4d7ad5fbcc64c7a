package rpc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
)

// gateStream is a network.Stream whose writes go to a buffer once the
// gate is open (a peer that reads nothing until then).
type gateStream struct {
	network.Stream // nil: only Write, Close and Reset are called
	gate           chan struct{}
	entered        chan struct{} // cap 1: a Write began
	mu             sync.Mutex
	buf            bytes.Buffer
}

func newGateStream() *gateStream {
	return &gateStream{gate: make(chan struct{}), entered: make(chan struct{}, 1)}
}

func (s *gateStream) Write(p []byte) (int, error) {
	signal(s.entered)
	<-s.gate
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}
func (s *gateStream) Close() error { return nil }
func (s *gateStream) Reset() error { return nil }

func (s *gateStream) written() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.buf.Bytes())
}

func frameOf(sender, seq uint32) *[]byte {
	b := getBuf()
	*b = binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(*b, sender), seq)
	return b
}

// TestWStreamKeepsOrder: frames queued by many goroutines all go out, each
// sender's in its order.
func TestWStreamKeepsOrder(t *testing.T) {
	s := newGateStream()
	close(s.gate)
	w := newWStream(s, 16, func() bool { return true })
	const senders, each = 8, 2000
	var wg sync.WaitGroup
	for i := range senders {
		wg.Go(func() {
			for seq := range each {
				if err := w.send(frameOf(uint32(i), uint32(seq))); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	for len(s.written()) < senders*each*8 {
		time.Sleep(time.Millisecond)
	}
	w.finish(false)
	w.wait()
	out := s.written()
	if len(out) != senders*each*8 {
		t.Fatalf("%d bytes written, want %d", len(out), senders*each*8)
	}
	next := make([]uint32, senders)
	for b := out; len(b) > 0; b = b[8:] {
		sender, seq := binary.BigEndian.Uint32(b), binary.BigEndian.Uint32(b[4:])
		if sender >= senders || seq != next[sender] {
			t.Fatalf("sender %d: frame %d, want %d", sender, seq, next[sender])
		}
		next[sender]++
	}
}

// TestWStreamFullQueue: with the peer reading nothing, the queue takes max
// frames; then send waits for room and trySend drops, and the waiting
// sends go out in order once the peer reads; a finished stream fails a
// waiting send.
func TestWStreamFullQueue(t *testing.T) {
	s := newGateStream()
	const max = 4
	w := newWStream(s, max, func() bool { return false })
	if cap(w.q) != 0 {
		t.Fatalf("a new stream's queue has room for %d frames: it grows as used", cap(w.q))
	}
	// The writer takes the first frame and blocks writing it; then the
	// queue fills.
	if err := w.send(frameOf(0, 0)); err != nil {
		t.Fatal(err)
	}
	<-s.entered
	for seq := 1; seq <= max; seq++ {
		if err := w.send(frameOf(0, uint32(seq))); err != nil {
			t.Fatal(err)
		}
	}
	w.trySend(frameOf(9, 9)) // full: dropped
	sent := make(chan error, 2)
	go func() {
		err := w.send(frameOf(0, max+1))
		if err == nil {
			err = w.send(frameOf(0, max+2))
		}
		sent <- err
	}()
	select {
	case err := <-sent:
		t.Fatalf("send to a full queue returned %v before the peer read", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(s.gate)
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	want := (max + 3) * 8
	for len(s.written()) < want {
		time.Sleep(time.Millisecond)
	}
	out := s.written()
	if len(out) != want {
		t.Fatalf("%d bytes written, want %d (the frame sent to a full queue by trySend must be dropped)", len(out), want)
	}
	for i := 0; i < max+3; i++ {
		if seq := binary.BigEndian.Uint32(out[i*8+4:]); binary.BigEndian.Uint32(out[i*8:]) != 0 || seq != uint32(i) {
			t.Fatalf("frame %d is %x", i, out[i*8:i*8+8])
		}
	}
	w.mu.Lock()
	c := cap(w.q)
	w.mu.Unlock()
	if c > keepQueue {
		t.Fatalf("the idle stream keeps a queue slice of %d frames", c)
	}
	w.finish(false)
	w.wait()

	// A send waiting for room fails when the stream finishes.
	s2 := newGateStream()
	w2 := newWStream(s2, 1, func() bool { return false })
	if err := w2.send(frameOf(1, 0)); err != nil {
		t.Fatal(err)
	}
	<-s2.entered
	// One frame is being written, one queued; the third waits.
	if err := w2.send(frameOf(1, 1)); err != nil {
		t.Fatal(err)
	}
	go func() { sent <- w2.send(frameOf(1, 2)) }()
	w2.finish(true)
	if err := <-sent; !errors.Is(err, errStreamClosed) {
		t.Fatalf("waiting send: %v, want errStreamClosed", err)
	}
	close(s2.gate)
	w2.wait()
}
