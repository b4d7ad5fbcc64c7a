package main

import (
	"context"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

// gcPercent and gcPercentQuiet are the garbage collector's targets of a
// node's processes (run, dev) unless GOGC is set in the environment: the
// heap may grow by half of what is live between collections while the node
// is busy, by a quarter while it is at rest, where Go's default lets it
// double. A node's heap is mostly state that lives as long as the node
// (peers, routing tables, streams) with little garbage at rest, and a
// collection of a heap that small costs a millisecond or two, so at rest
// collecting early costs next to nothing and keeps the heap compact: in a
// 50-node realm on one machine RSS 36.8 MB (median; 39.2 at the largest
// node) against 39.2 (40.9) with 50 throughout (docs/benchmarks.md). Under
// a load of calls 25 cost up to a sixth more CPU per call than 50, so the
// target follows the node's pace (gcPace): 50 from a collection that came
// less than busyGap after the previous one, 25 again once none came for
// quietGap. GOGC=100 restores Go's default.
const (
	gcPercent      = 50
	gcPercentQuiet = 25
	// busyGap: four collections a second of a small heap cost a few
	// percent of a core at most; a node's start or a wave of lookups
	// collects less often than that and stays at the quiet target (its
	// heap ends up more compact for it), a load of calls far more often.
	busyGap = 250 * time.Millisecond
	// quietGap is more than twice busyGap: at gcPercent the same pace of
	// allocation collects about half as often as at gcPercentQuiet, and
	// the target must not swing back at once.
	quietGap = time.Second
)

// A node's heap swells in bursts (a start, when it meets most of the
// realm at once; a wave of lookups or calls that opens connections) and
// shrinks when the connections are trimmed. The runtime's scavenger keeps
// much of the freed heap (in a 50-node realm 4 MB of 18 per node, minutes
// after a burst), so a node hands its free heap back to the operating
// system itself: every releaseEvery, when releaseAbove more is free than
// was left after the last time. That costs one collection a minute at most
// (a few milliseconds on a node's small heap), and nothing while the free
// heap stays small.
const (
	releaseEvery = time.Minute
	releaseAbove = 2 << 20
)

// tuneMemory sets the garbage collector's target (gcPace) unless the
// environment chose one, and hands free heap back to the operating system
// until stop is called (stop waits for that loop).
func tuneMemory() (stop func()) {
	var pace *gcPace
	if os.Getenv("GOGC") == "" {
		pace = startGCPace(debug.SetGCPercent)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(releaseEvery)
		defer t.Stop()
		var r releaser
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				r.release(releaseAbove)
			}
		}
	})
	return func() {
		cancel()
		wg.Wait()
		if pace != nil {
			pace.stop()
		}
	}
}

// gcPace keeps the garbage collector's target at gcPercentQuiet while the
// node is at rest and at gcPercent while it is busy, told by the time
// between collections: a collection less than busyGap after the last makes
// it busy; quietGap without one makes it quiet again. A cleanup that runs
// after every collection (a sentinel, re-made each time) tells it of
// collections; a timer armed only while it is busy tells it of quiet, so a
// node at rest has nothing to wake up for.
type gcPace struct {
	set               func(int) int // debug.SetGCPercent
	busyGap, quietGap time.Duration // busyGap and quietGap (tests shorten them)

	mu      sync.Mutex
	busy    bool
	last    time.Time   // the last collection
	quiet   *time.Timer // while busy: fires quietGap after the last collection
	stopped bool
}

// gcSentinel is the object whose cleanup marks a collection (16 bytes and
// a pointer: a smaller object without pointers may never be cleaned up).
type gcSentinel struct {
	_ *byte
	_ [16]byte
}

// startGCPace sets the quiet target and starts watching collections.
func startGCPace(set func(int) int) *gcPace {
	p := &gcPace{set: set, busyGap: busyGap, quietGap: quietGap, last: time.Now()}
	set(gcPercentQuiet)
	p.arm()
	return p
}

// arm makes a sentinel that the next collection finds unreachable.
func (p *gcPace) arm() {
	runtime.AddCleanup(new(gcSentinel), func(p *gcPace) {
		if p.collected(time.Now()) {
			p.arm()
		}
	}, p)
}

// collected is told of a collection at now; it reports whether to go on
// watching.
func (p *gcPace) collected(now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return false
	}
	gap := now.Sub(p.last)
	p.last = now
	if gap < p.busyGap && !p.busy {
		p.busy = true
		p.set(gcPercent)
	}
	if p.busy {
		if p.quiet == nil {
			p.quiet = time.AfterFunc(p.quietGap, p.checkQuiet)
		} else {
			p.quiet.Reset(p.quietGap)
		}
	}
	return true
}

// checkQuiet makes the pace quiet when no collection came for quietGap.
func (p *gcPace) checkQuiet() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped || !p.busy {
		return
	}
	if left := p.quietGap - time.Since(p.last); left > 0 {
		p.quiet.Reset(left)
		return
	}
	p.busy = false
	p.set(gcPercentQuiet)
}

// stop ends the watching (the sentinel's last cleanup does nothing).
func (p *gcPace) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = true
	if p.quiet != nil {
		p.quiet.Stop()
	}
}

// releaser returns free heap to the operating system. floor is what was
// still free after its last release: pages that the runtime cannot return
// (each processor's page cache holds up to 512 KB), which a next release
// would not return either.
type releaser struct{ floor uint64 }

// release returns the free heap when more than above is free over the
// floor; it says whether it did.
func (r *releaser) release(above uint64) bool {
	if freeHeap() <= r.floor+above {
		return false
	}
	debug.FreeOSMemory()
	r.floor = freeHeap()
	return true
}

// freeHeap is the heap memory free and still held by the process (the
// runtime's /memory/classes/heap/free:bytes: neither in use nor returned).
func freeHeap() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/free:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
