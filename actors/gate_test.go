package actors

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestGateKeepsOrder: the messages that waited at a gate pass, once it
// opens, in the order they came; one whose sender gave up is skipped, and
// does not pass late.
func TestGateKeepsOrder(t *testing.T) {
	g := &gate{ch: make(chan struct{})}
	const n = 50
	var mu sync.Mutex
	var order []uint64
	var wg sync.WaitGroup
	gaveUp := make(chan error, 1)
	for i := range n {
		tk := g.ticket()
		ctx, cancel := context.WithCancel(context.Background())
		if i == 7 {
			cancel() // its sender has given up
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cancel()
			if err := g.wait(ctx, tk); err != nil {
				if i == 7 {
					gaveUp <- err
				} else {
					t.Errorf("ticket %d: %v", tk, err)
				}
				return
			}
			mu.Lock()
			order = append(order, tk)
			mu.Unlock()
			g.done(tk)
		}()
	}
	<-gaveUp
	time.Sleep(20 * time.Millisecond) // the others are waiting
	g.open()
	wg.Wait()
	if len(order) != n-1 {
		t.Fatalf("%d passed, want %d", len(order), n-1)
	}
	for i, tk := range order {
		want := uint64(i)
		if i >= 7 {
			want++
		}
		if tk != want {
			t.Fatalf("pass order %v", order)
		}
	}
}
