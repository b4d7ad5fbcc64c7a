package main

import (
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"testing"
	"time"
)

var sink [][]byte

// A releaser hands the free heap back: after 32 MB of garbage is
// collected, far more than releaseAbove is free and held; once released,
// what is left is the floor (the processors' page caches: a small part of
// it), and a second call finds nothing to do.
func TestReleaseFree(t *testing.T) {
	for i := 0; i < 512; i++ {
		sink = append(sink, make([]byte, 64<<10))
	}
	sink = nil
	runtime.GC()
	before := freeHeap()
	if before <= 8*releaseAbove {
		t.Fatalf("after 32 MB of garbage %d bytes are free, want more than %d", before, 8*releaseAbove)
	}
	var r releaser
	if !r.release(releaseAbove) {
		t.Fatal("the releaser did not release")
	}
	if after := freeHeap(); after > before/4 {
		t.Errorf("after releasing, %d bytes are still free and held (%d before)", after, before)
	}
	if r.release(releaseAbove) {
		t.Error("the releaser released again with nothing more free")
	}
}

// TestGCPace: allocating fast (the runtime's collections in quick
// succession) sets the busy target, and a pause without collections the
// quiet target again; the watching ends when stopped.
func TestGCPace(t *testing.T) {
	var mu sync.Mutex
	var set []int
	record := func(v int) int {
		mu.Lock()
		defer mu.Unlock()
		set = append(set, v)
		return debug.SetGCPercent(v)
	}
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	targets := func() []int {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(set)
	}
	p := startGCPace(record)
	defer p.stop()
	if got := targets(); !slices.Equal(got, []int{gcPercentQuiet}) {
		t.Fatalf("targets set at start: %v, want [%d]", got, gcPercentQuiet)
	}
	// Garbage made fast: the heap fills within busyGap again and again.
	deadline := time.Now().Add(30 * time.Second)
	for !slices.Contains(targets(), gcPercent) {
		if time.Now().After(deadline) {
			t.Fatalf("allocating fast left the targets at %v", targets())
		}
		for range 64 {
			sink = append(sink, make([]byte, 64<<10))
		}
		sink = sink[:0]
	}
	// No collection for quietGap: quiet again.
	for got := targets(); !slices.Equal(got, []int{gcPercentQuiet, gcPercent, gcPercentQuiet}); got = targets() {
		if time.Now().After(deadline) {
			t.Fatalf("targets set: %v, want [%d %d %d]", got, gcPercentQuiet, gcPercent, gcPercentQuiet)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Stopped: collections in quick succession change nothing.
	p.stop()
	for range 5 {
		runtime.GC()
	}
	time.Sleep(50 * time.Millisecond)
	if got := targets(); len(got) != 3 {
		t.Fatalf("targets set after stop: %v", got)
	}
}
