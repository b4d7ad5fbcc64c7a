package actors

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/macula-io/macula/event"
)

// blocker blocks its calls until release is closed.
type blocker struct{ release chan struct{} }

func (b *blocker) HandleCall(ctx context.Context, msg []byte) ([]byte, error) {
	select {
	case <-b.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return msg, nil
}
func (b *blocker) HandleCast(context.Context, []byte) { <-b.release }

func TestErrors(t *testing.T) {
	s := standalone(t, nil)
	ctx := context.Background()
	_, _, err := s.Call(ctx, Request{Capability: "counter", Kind: "nosuch", ID: "x"})
	if !errors.Is(err, ErrUnknownKind) {
		t.Fatalf("unknown kind: %v", err)
	}
	_, _, err = s.Call(ctx, Request{Capability: "payment", Kind: "counter", ID: "x"})
	if !errors.Is(err, ErrNotServed) {
		t.Fatalf("capability nobody serves: %v", err)
	}
	for _, bad := range []Request{
		{Capability: "Game", Kind: "k", ID: "x"},
		{Capability: "game", Kind: "k.k", ID: "x"},
		{Capability: "game", Kind: "k", ID: ""},
		{Capability: "game", Kind: "k", ID: "\xff"},
		{Capability: "game", Kind: "k", ID: string(make([]byte, MaxIDLen+1))},
	} {
		if _, _, err := s.Call(ctx, bad); !errors.Is(err, ErrInvalid) {
			t.Fatalf("%+v: %v, want ErrInvalid", bad, err)
		}
	}
	if err := s.Register("counter", "counter", func(string) Actor { return &counter{} }); !errors.Is(err, ErrAlreadyRegistered) {
		t.Fatalf("second Register: %v", err)
	}
	if err := s.Register("counter", "nil", nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("nil factory: %v", err)
	}
	// An error of the actor reaches the caller as *ActorError.
	must(t, s.Register("test", "fails", func(string) Actor {
		return callFunc(func(context.Context, []byte) ([]byte, error) {
			return nil, &ActorError{Code: "insufficient_funds", Message: "no"}
		})
	}))
	_, _, err = s.Call(ctx, Request{Capability: "test", Kind: "fails", ID: "x"})
	var ae *ActorError
	if !errors.As(err, &ae) || ae.Code != "insufficient_funds" {
		t.Fatalf("actor error: %v", err)
	}
}

func TestMailboxFull(t *testing.T) {
	s := standalone(t, func(c *Config) { c.MailboxSize = 4 })
	b := &blocker{release: make(chan struct{})}
	must(t, s.Register("test", "block", func(string) Actor { return b }))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := Request{Capability: "test", Kind: "block", ID: "b"}
	done := make(chan error, 1)
	go func() { _, _, err := s.Call(ctx, req); done <- err }()
	waitUntil(t, "the first call to run", func() bool { return s.Stats().Active == 1 })
	for i := range 4 {
		if err := s.Cast(ctx, req); err != nil {
			t.Fatalf("cast %d: %v", i, err)
		}
	}
	if err := s.Cast(ctx, req); !errors.Is(err, ErrMailboxFull) {
		t.Fatalf("fifth queued message: %v, want ErrMailboxFull", err)
	}
	if _, _, err := s.Call(ctx, req); !errors.Is(err, ErrMailboxFull) {
		t.Fatalf("call to a full mailbox: %v, want ErrMailboxFull", err)
	}
	close(b.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the mailbox to drain", func() bool { return s.Stats().Queued == 0 })
}

// TestNoGlobalBottleneck: a blocked actor delays neither calls nor casts to
// other actors, of its kind or another.
func TestNoGlobalBottleneck(t *testing.T) {
	s := standalone(t, nil)
	b := &blocker{release: make(chan struct{})}
	must(t, s.Register("test", "block", func(string) Actor { return b }))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Blocked calls to one actor of the kind, and to many others.
			_, _, _ = s.Call(ctx, Request{Capability: "test", Kind: "block", ID: fmt.Sprint("b", i%10)})
		}()
	}
	waitUntil(t, "the blocked actors", func() bool { return s.Stats().Active == 10 })
	for i := range 1000 {
		call(t, s, "counter", "counter", fmt.Sprint("free", i), "", nil)
		must(t, s.Cast(ctx, Request{Capability: "counter", Kind: "counter", ID: fmt.Sprint("free", i)}))
	}
	for i := range 1000 {
		if _, got := call(t, s, "counter", "counter", fmt.Sprint("free", i), "get", nil); got != "2" {
			t.Fatalf("free%d = %s, want 2", i, got)
		}
	}
	close(b.release)
	wg.Wait()
}

// TestIdleActorsHoldNoGoroutine: 10,000 actors that handled calls and casts
// leave no goroutine behind.
func TestIdleActorsHoldNoGoroutine(t *testing.T) {
	s := standalone(t, nil)
	before := runtime.NumGoroutine()
	ctx := context.Background()
	for i := range 10000 {
		call(t, s, "counter", "counter", fmt.Sprint("c", i), "", nil)
		must(t, s.Cast(ctx, Request{Capability: "counter", Kind: "counter", ID: fmt.Sprint("c", i)}))
	}
	waitUntil(t, "casts to drain", func() bool { return s.Stats().Queued == 0 })
	waitUntil(t, "workers to exit", func() bool { return runtime.NumGoroutine() <= before+1 })
	if n := s.Stats().Active; n != 10000 {
		t.Fatalf("Active = %d", n)
	}
}

// stopRecorder records its Stop calls.
type stopRecorder struct {
	counter
	stops chan StopReason
}

func (r *stopRecorder) Stop(_ context.Context, reason StopReason) { r.stops <- reason }

func TestPassivation(t *testing.T) {
	stops := make(chan StopReason, 10)
	s := standalone(t, func(c *Config) { c.IdleTimeout = 50 * time.Millisecond })
	must(t, s.Register("test", "rec", func(string) Actor { return &stopRecorder{stops: stops} }))
	sub := s.bus.Subscribe(16, event.ActorStarted, event.ActorStopped)
	defer sub.Close()
	ref1, _ := call(t, s, "test", "rec", "r", "", nil)
	waitPassivated(t, stops)
	waitUntil(t, "the entry to go", func() bool { return s.Stats().Active == 0 && len(s.Actors(0)) == 0 })
	ref2, got := call(t, s, "test", "rec", "r", "", nil)
	if got != "1" || ref2.Incarnation == ref1.Incarnation {
		t.Fatalf("after passivation: %s %v (was %v)", got, ref2, ref1)
	}
	kinds := []event.Kind{}
	for len(kinds) < 3 {
		select {
		case e := <-sub.C:
			if e.Actor != "r" {
				continue
			}
			kinds = append(kinds, e.Kind)
			if e.Kind == event.ActorStopped && e.Reason != string(Passivated) {
				t.Fatalf("stopped event reason %q", e.Reason)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("events: %v", kinds)
		}
	}
	if kinds[0] != event.ActorStarted || kinds[1] != event.ActorStopped || kinds[2] != event.ActorStarted {
		t.Fatalf("events %v", kinds)
	}
}

func TestRestartLimit(t *testing.T) {
	s := standalone(t, func(c *Config) { c.MaxRestarts = 3; c.RestartWindow = time.Hour })
	ctx := context.Background()
	crash := Request{Capability: "crasher", Kind: "crasher", ID: "c", Payload: []byte("crash")}
	for i := range 3 {
		if _, _, err := s.Call(ctx, crash); !errors.Is(err, ErrCrashed) {
			t.Fatalf("crash %d: %v", i, err)
		}
	}
	_, _, err := s.Call(ctx, Request{Capability: "crasher", Kind: "crasher", ID: "c"})
	if !errors.Is(err, ErrRestartLimit) {
		t.Fatalf("after 3 crashes: %v, want ErrRestartLimit", err)
	}
	// Other actors of the kind are not affected.
	call(t, s, "crasher", "crasher", "other", "", nil)
}

func TestCloseStopsActors(t *testing.T) {
	stops := make(chan StopReason, 100)
	s, err := New(Config{Logger: quiet()}, nil, nil, nil)
	must(t, err)
	must(t, s.Register("test", "rec", func(string) Actor { return &stopRecorder{stops: stops} }))
	for i := range 20 {
		call(t, s, "test", "rec", fmt.Sprint(i), "", nil)
	}
	must(t, s.Close())
	must(t, s.Close())
	if len(stops) != 20 {
		t.Fatalf("%d stops, want 20", len(stops))
	}
	if r := <-stops; r != Closed {
		t.Fatalf("reason %s", r)
	}
	if _, _, err := s.Call(context.Background(), Request{Capability: "test", Kind: "rec", ID: "1"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("call after Close: %v", err)
	}
}

// TestCallDeadlineInMailbox: a call waiting behind a slow message fails
// with ErrTimeout at its deadline and is never handled.
func TestCallDeadlineInMailbox(t *testing.T) {
	s := standalone(t, nil)
	b := &blocker{release: make(chan struct{})}
	var handled atomic.Int64
	must(t, s.Register("test", "slow", func(string) Actor {
		return callFunc(func(ctx context.Context, msg []byte) ([]byte, error) {
			handled.Add(1)
			if string(msg) == "block" {
				<-b.release
			}
			return nil, nil
		})
	}))
	go func() {
		_, _, _ = s.Call(context.Background(), Request{Capability: "test", Kind: "slow", ID: "x", Payload: []byte("block")})
	}()
	waitUntil(t, "the blocking call", func() bool { return handled.Load() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, _, err := s.Call(ctx, Request{Capability: "test", Kind: "slow", ID: "x"})
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("queued call past its deadline: %v", err)
	}
	close(b.release)
	call(t, s, "test", "slow", "x", "", nil)
	if n := handled.Load(); n != 2 {
		t.Fatalf("%d messages handled, want 2 (the timed-out one skipped)", n)
	}
}

// TestSweeperSleepsWithoutKinds: a node that serves no actor kind has no
// periodic wake-up for actors (its clock stays where New left it); the
// first kind wakes the sweeper, which keeps the clock and passivates from
// then on.
func TestSweeperSleepsWithoutKinds(t *testing.T) {
	s, err := New(Config{Logger: quiet(), IdleTimeout: 50 * time.Millisecond}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := s.clock.Load()
	time.Sleep(3 * clockTick)
	if got := s.clock.Load(); got != start {
		t.Fatalf("the clock moved by %v with no kind registered", time.Duration(got-start))
	}
	stops := make(chan StopReason, 1)
	must(t, s.Register("test", "rec", func(string) Actor { return &stopRecorder{stops: stops} }))
	registered := s.clock.Load()
	if registered == start {
		t.Fatal("the clock was not set when the first kind came")
	}
	waitUntil(t, "the clock to move", func() bool { return s.clock.Load() > registered })
	call(t, s, "test", "rec", "r", "", nil)
	waitPassivated(t, stops)
}

// waitPassivated waits for a stopRecorder's stop, which must be a
// passivation.
func waitPassivated(t *testing.T, stops <-chan StopReason) {
	t.Helper()
	select {
	case r := <-stops:
		if r != Passivated {
			t.Fatalf("stop reason %s", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("not passivated")
	}
}
