//go:build !race

package actors

// The race detector's shadow memory makes a per-actor figure meaningless, so
// this file is not built under -race: make test runs it in a second pass
// without the race detector (a skip would hide it from CI).

import (
	"context"
	"fmt"
	"runtime"
	"testing"
)

// TestIdleActorMemory: an idle actor (a counter) costs at most 1 KB.
func TestIdleActorMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: allocates 100,000 actors")
	}
	s := standalone(t, nil)
	const n = 100000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprint("player_", i)
	}
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := ms.HeapAlloc
	ctx := context.Background()
	for _, id := range ids {
		if _, _, err := s.Call(ctx, Request{Capability: "counter", Kind: "counter", ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&ms)
	per := float64(int64(ms.HeapAlloc)-int64(before)) / n
	t.Logf("%.0f bytes per idle actor (%d actors)", per, n)
	if per > 1024 {
		t.Fatalf("%.0f bytes per idle actor, goal 1024", per)
	}
	runtime.KeepAlive(ids)
}
