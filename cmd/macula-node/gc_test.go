package main

import (
	"runtime"
	"testing"
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
