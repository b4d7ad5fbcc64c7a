package main

import (
	"context"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

// gcPercent is the garbage collector's target of a node's processes (run,
// dev) unless GOGC is set in the environment: the heap may grow by half of
// what is live between collections, where Go's default lets it double. A
// node's heap is mostly state that lives as long as the node (peers,
// routing tables, streams and their buffers) and little garbage at rest,
// so collecting earlier costs an idle node nothing and a busy one a few
// percent of CPU, for a fifth less memory of its own: in a 50-node realm
// on one machine 15.7 MB instead of 18.3 (PSS, median) and 46.0 MB of RSS
// instead of 48.3 (docs/benchmarks.md). GOGC=100 restores Go's default.
const gcPercent = 50

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

// tuneMemory sets the garbage collector's target to gcPercent unless the
// environment chose one, and hands free heap back to the operating system
// until stop is called (stop waits for that loop).
func tuneMemory() (stop func()) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
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
