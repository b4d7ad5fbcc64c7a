package event

import (
	"encoding/json"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestBusDeliversByKind(t *testing.T) {
	b := NewBus()
	defer b.Close()
	all := b.Subscribe(8)
	ups := b.Subscribe(8, ConnectionUp)
	b.Emit(Event{Kind: ConnectionUp, Peer: "a"})
	b.Emit(Event{Kind: CallStart, Procedure: "io.x.y.z"})
	if got := (<-all.C).Kind; got != ConnectionUp {
		t.Fatalf("first event = %v, want connection_up", got)
	}
	if got := (<-all.C).Kind; got != CallStart {
		t.Fatalf("second event = %v, want call_start", got)
	}
	e := <-ups.C
	if e.Peer != "a" || e.Time.IsZero() {
		t.Fatalf("filtered event = %+v", e)
	}
	select {
	case e := <-ups.C:
		t.Fatalf("kind filter let through %v", e.Kind)
	default:
	}
}

func TestBusNeverBlocksAndCountsDrops(t *testing.T) {
	b := NewBus()
	defer b.Close()
	s := b.Subscribe(2)
	for i := 0; i < 10; i++ {
		b.Emit(Event{Kind: Publish})
	}
	if d := s.Dropped(); d != 8 {
		t.Fatalf("dropped = %d, want 8", d)
	}
	if len(s.C) != 2 {
		t.Fatalf("buffered = %d, want 2", len(s.C))
	}
}

func TestCloseClosesChannels(t *testing.T) {
	b := NewBus()
	s1 := b.Subscribe(1)
	s2 := b.Subscribe(1)
	s1.Close()
	s1.Close() // idempotent
	if _, ok := <-s1.C; ok {
		t.Fatal("s1.C open after Close")
	}
	b.Close()
	b.Close()
	if _, ok := <-s2.C; ok {
		t.Fatal("s2.C open after bus Close")
	}
	s3 := b.Subscribe(1)
	if _, ok := <-s3.C; ok {
		t.Fatal("subscription after bus Close is open")
	}
	b.Emit(Event{Kind: Publish}) // must not panic
	s2.Close()
}

func TestConcurrentEmitSubscribeClose(t *testing.T) {
	b := NewBus()
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for j := 0; j < 1000; j++ {
				b.Emit(Event{Kind: CallStop})
			}
		}()
		go func() {
			defer wg.Done()
			for j := 0; j < 100; j++ {
				s := b.Subscribe(1)
				s.Close()
			}
		}()
	}
	wg.Wait()
	b.Close()
}

func TestKindJSON(t *testing.T) {
	e := Event{Kind: ConnectionDown, Peer: "p"}
	raw, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	var back Event
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	if back.Kind != ConnectionDown || back.Peer != "p" {
		t.Fatalf("round trip = %+v from %s", back, raw)
	}
	if _, err := ParseKind("nope"); err == nil {
		t.Fatal("ParseKind accepted an unknown name")
	}
}

func TestAttachFiltersDetachesAndSurvivesPanics(t *testing.T) {
	b := NewBus()
	defer b.Close()
	if b.Wants(CallStop) {
		t.Fatal("an empty bus wants call_stop")
	}
	var got []Kind
	a := b.Attach(func(e Event) { got = append(got, e.Kind) }, CallStop, Publish)
	if !b.Wants(CallStop) || !b.Wants(Publish) || b.Wants(CallStart) {
		t.Fatal("Wants does not follow the attached kinds")
	}
	b.Emit(Event{Kind: CallStart})
	b.Emit(Event{Kind: CallStop})
	b.Emit(Event{Kind: Publish})
	if len(got) != 2 || got[0] != CallStop || got[1] != Publish {
		t.Fatalf("handler got %v, want [call_stop publish]", got)
	}
	a.Detach()
	a.Detach() // idempotent
	b.Emit(Event{Kind: CallStop})
	if len(got) != 2 {
		t.Fatalf("a detached handler got %v", got)
	}
	if b.Wants(CallStop) {
		t.Fatal("Wants still true after Detach")
	}

	calls := 0
	b.Attach(func(Event) { calls++; panic("boom") }, HolePunch)
	b.Emit(Event{Kind: HolePunch})
	b.Emit(Event{Kind: HolePunch})
	if calls != 1 || b.HandlerFailures() != 1 {
		t.Fatalf("a panicking handler ran %d times, failures %d; want 1 and 1", calls, b.HandlerFailures())
	}
	if b.Wants(HolePunch) {
		t.Fatal("a panicking handler was not detached")
	}
}

func TestAttachAfterCloseAndCloseDetaches(t *testing.T) {
	b := NewBus()
	n := 0
	b.Attach(func(Event) { n++ })
	b.Close()
	b.Emit(Event{Kind: Publish})
	late := b.Attach(func(Event) { n++ })
	b.Emit(Event{Kind: Publish})
	late.Detach()
	if n != 0 {
		t.Fatalf("handlers ran %d times after Close", n)
	}
}

func TestAttachConcurrentWithEmit(t *testing.T) {
	b := NewBus()
	defer b.Close()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				b.Emit(Event{Kind: CallStop})
			}
		}
	}()
	for i := 0; i < 200; i++ {
		a := b.Attach(func(Event) {}, CallStop)
		s := b.Subscribe(1, CallStop)
		a.Detach()
		s.Close()
	}
	close(stop)
	wg.Wait()
}

func BenchmarkEmitNobodyListens(b *testing.B) {
	bus := NewBus()
	defer bus.Close()
	bus.Attach(func(Event) {}, Publish)
	for b.Loop() {
		bus.Emit(Event{Kind: CallStop, Procedure: "io.acme.orders.get", Outcome: "ok"})
	}
}

func BenchmarkEmitOneHandler(b *testing.B) {
	bus := NewBus()
	defer bus.Close()
	var n int
	bus.Attach(func(Event) { n++ }, CallStop)
	for b.Loop() {
		bus.Emit(Event{Kind: CallStop, Procedure: "io.acme.orders.get", Outcome: "ok"})
	}
}
