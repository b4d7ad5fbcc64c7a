package member

import (
	"bytes"
	"testing"
	"time"
)

// linkedPair returns two members linked both ways over a direct QUIC
// connection, the one with the lower ID first. old, when set, makes the
// higher one speak version 1.0.0 of the protocol only (a node from before
// one-way heartbeats).
func linkedPair(t *testing.T, old bool) (low, high *testMember) {
	t.Helper()
	a, b := newMember(t, "a", nil), newMember(t, "b", nil)
	if bytes.Compare([]byte(a.h.ID()), []byte(b.h.ID())) > 0 {
		a, b = b, a
	}
	if old {
		b.h.RemoveStreamHandler(b.m.quietProto)
	}
	connect(t, a.h, b.h)
	for _, x := range []*testMember{a, b} {
		eventually(t, 30*time.Second, "the link up both ways", func() bool {
			x.m.mu.Lock()
			defer x.m.mu.Unlock()
			for _, l := range x.m.links {
				return l.up()
			}
			return false
		})
	}
	eventually(t, 30*time.Second, "both members see both", func() bool { return sees([]*testMember{a, b}, a, b) })
	return a, b
}

// framesOut counts x's frames sent over d.
func framesOut(x *testMember, d time.Duration) uint64 {
	before := x.m.Stats().FramesOut
	time.Sleep(d)
	return x.m.Stats().FramesOut - before
}

// TestHeartbeatsOneWay: on an idle link over a direct QUIC connection only
// the member with the lower ID sends heartbeats; the other, which sends
// nothing, is kept alive by QUIC's acknowledgements of them, and neither
// suspects the other. A member of version 1.0.0 gets heartbeats both ways.
func TestHeartbeatsOneWay(t *testing.T) {
	cfg := fastConfig("x")
	window := 4 * cfg.ProbeTimeout // 24 heartbeats
	t.Run("quiet", func(t *testing.T) {
		low, high := linkedPair(t, false)
		time.Sleep(cfg.ProbeTimeout) // the sync's frames are out
		sent := make(chan uint64)
		go func() { sent <- framesOut(low, window) }()
		highSent := framesOut(high, window)
		lowSent := <-sent
		if lowSent < uint64(window/cfg.ProbeInterval)/2 || highSent != 0 {
			t.Fatalf("over %v the lower ID sent %d frames, the higher %d; want about %d and none",
				window, lowSent, highSent, window/cfg.ProbeInterval)
		}
		for _, x := range []*testMember{low, high} {
			if st := x.m.Stats(); st.Suspicions != 0 || st.Members != 2 {
				t.Fatalf("%s: %+v", x.m.Self().Name, st)
			}
		}
	})
	t.Run("old", func(t *testing.T) {
		low, high := linkedPair(t, true)
		time.Sleep(cfg.ProbeTimeout)
		sent := make(chan uint64)
		go func() { sent <- framesOut(low, window) }()
		highSent := framesOut(high, window)
		lowSent := <-sent
		min := uint64(window/cfg.ProbeInterval) / 2
		if lowSent < min || highSent < min {
			t.Fatalf("over %v with a 1.0.0 peer: the lower ID sent %d frames, the higher %d; want both about %d",
				window, lowSent, highSent, window/cfg.ProbeInterval)
		}
	})
}

// TestQuietPeerFailure: whichever end of a one-way link stops (no packet
// from it any more), the other declares it failed: the quiet end by the
// heartbeats that stop, the sending end by the acknowledgements that stop.
func TestQuietPeerFailure(t *testing.T) {
	for _, stop := range []string{"the sender", "the quiet end"} {
		t.Run(stop, func(t *testing.T) {
			low, high := linkedPair(t, false)
			victim, watcher := low, high
			if stop == "the quiet end" {
				victim, watcher = high, low
			}
			victim.freeze()
			defer victim.thaw()
			start := time.Now()
			eventually(t, 30*time.Second, "the stopped member failed", func() bool { return sees([]*testMember{watcher}, watcher) })
			t.Logf("%s stopped: failed after %v", stop, time.Since(start).Round(time.Millisecond))
		})
	}
}
