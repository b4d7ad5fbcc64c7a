package rpc

import (
	"context"
	"errors"
	"testing"
	"time"
)

// The connection's one deadline timer must serve every call: a short
// timeout armed after a long one still ends the short call, long before the
// long one's deadline (the bound is loose on purpose: no timing asserts).
func TestDeadlineTimerServesEveryCall(t *testing.T) {
	a, b := newNode(t, nil), newNode(t, nil)
	mesh(t, a, b)
	running := make(chan struct{}, 1)
	advertise(t, a, "io.acme.orders.hang", func(ctx context.Context, _ *Request) ([]byte, error) {
		select {
		case running <- struct{}{}:
		default:
		}
		<-ctx.Done()
		return nil, ctx.Err()
	})
	advertise(t, a, "io.acme.orders.echo", echo)
	waitCallable(t, b, "io.acme.orders.echo")
	// A long call arms the sweeper far away; shorter ones must still end on time.
	long := b.rpc.CallAsync(context.Background(), "io.acme.orders.hang", nil, WithTimeout(3*time.Second))
	select {
	case <-running: // the long call is pending on b, its deadline armed
	case <-time.After(10 * time.Second):
		t.Fatal("the long call did not reach its handler")
	}
	for _, d := range []time.Duration{300 * time.Millisecond, 100 * time.Millisecond, 50 * time.Millisecond} {
		start := time.Now()
		_, err := b.rpc.Call(context.Background(), "io.acme.orders.hang", nil, WithTimeout(d))
		el := time.Since(start)
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("%v: err = %v", d, err)
		}
		t.Logf("timeout %v took %v", d, el)
		if el < d || el > 2*time.Second {
			t.Errorf("timeout %v took %v", d, el)
		}
	}
	start := time.Now()
	if _, err := long.Result(); !errors.Is(err, ErrTimeout) {
		t.Fatalf("long: %v", err)
	}
	t.Logf("long ended %v after the short ones", time.Since(start))
	// A user's context deadline also works (no WithTimeout).
	ctx, cancel := context.WithTimeout(context.Background(), 80*time.Millisecond)
	defer cancel()
	start = time.Now()
	if _, err := b.rpc.Call(ctx, "io.acme.orders.hang", nil); !errors.Is(err, ErrTimeout) {
		t.Fatalf("ctx: %v", err)
	}
	t.Logf("ctx 80ms took %v", time.Since(start))
	// Cancellation.
	ctx2, cancel2 := context.WithCancel(context.Background())
	time.AfterFunc(30*time.Millisecond, cancel2)
	if _, err := b.rpc.Call(ctx2, "io.acme.orders.hang", nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancel: %v", err)
	}
}
