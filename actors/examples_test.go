package actors

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"
)

// The original's examples (eigr/mesh's guides), as Go actors.

// counter counts its calls; a cast "reset" sets it to zero. It snapshots
// its count, so it keeps it across moves.
type counter struct{ n uint64 }

func (c *counter) HandleCall(_ context.Context, msg []byte) ([]byte, error) {
	if string(msg) == "get" {
		return strconv.AppendUint(nil, c.n, 10), nil
	}
	c.n++
	return strconv.AppendUint(nil, c.n, 10), nil
}

func (c *counter) HandleCast(_ context.Context, msg []byte) {
	switch string(msg) {
	case "reset":
		c.n = 0
	default:
		c.n++
	}
}

func (c *counter) Snapshot(context.Context) ([]byte, error) {
	return binary.BigEndian.AppendUint64(nil, c.n), nil
}

func (c *counter) Restore(_ context.Context, b []byte) error {
	if len(b) != 8 {
		return errors.New("bad snapshot")
	}
	c.n = binary.BigEndian.Uint64(b)
	return nil
}

// gameActor's state starts at level 1, or at the init argument's
// starting_level.
type gameActor struct {
	id    string
	Level int `json:"level"`
	Score int `json:"score"`
}

func (g *gameActor) Init(_ context.Context, arg []byte) error {
	g.Level = 1
	if arg == nil {
		return nil
	}
	var a struct {
		StartingLevel int `json:"starting_level"`
	}
	if err := json.Unmarshal(arg, &a); err != nil {
		return err
	}
	g.Level = a.StartingLevel
	return nil
}

func (g *gameActor) HandleCall(_ context.Context, msg []byte) ([]byte, error) {
	if string(msg) == "increment" {
		g.Score++
	}
	return json.Marshal(g)
}

func (g *gameActor) HandleCast(context.Context, []byte) {}

// crasher panics on "crash" and counts its calls otherwise.
type crasher struct{ calls int }

func (c *crasher) HandleCall(_ context.Context, msg []byte) ([]byte, error) {
	if string(msg) == "crash" {
		panic("boom!")
	}
	c.calls++
	return []byte(strconv.Itoa(c.calls)), nil
}

func (c *crasher) HandleCast(context.Context, []byte) {}

func standalone(t testing.TB, mod func(*Config)) *System {
	t.Helper()
	cfg := Config{Logger: quiet()}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	must(t, s.Register("counter", "counter", func(string) Actor { return &counter{} }))
	must(t, s.Register("game", "player", func(id string) Actor { return &gameActor{id: id} }))
	must(t, s.Register("crasher", "crasher", func(string) Actor { return &crasher{} }))
	return s
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func call(t testing.TB, s *System, c, k, id, msg string, initArg []byte) (Ref, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ref, reply, err := s.Call(ctx, Request{Capability: c, Kind: k, ID: id, Payload: []byte(msg), InitArg: initArg})
	if err != nil {
		t.Fatalf("call %s.%s %q %q: %v", c, k, id, msg, err)
	}
	return ref, string(reply)
}

// TestCounter: a counter that counts; the same id gives the same reference
// and a growing count; another id is another actor.
func TestCounter(t *testing.T) {
	s := standalone(t, nil)
	ref1, got := call(t, s, "counter", "counter", "counter_1", "", nil)
	if got != "1" {
		t.Fatalf("first call = %s, want 1", got)
	}
	ref2, got := call(t, s, "counter", "counter", "counter_1", "", nil)
	if got != "2" || ref2 != ref1 {
		t.Fatalf("second call = %s with %v, want 2 with %v", got, ref2, ref1)
	}
	if ref1.Capability != "counter" || ref1.Kind != "counter" || ref1.ID != "counter_1" || ref1.Incarnation == 0 {
		t.Fatalf("reference %+v", ref1)
	}
	ref3, got := call(t, s, "counter", "counter", "counter_2", "", nil)
	if got != "1" || ref3.Incarnation == ref1.Incarnation {
		t.Fatalf("another id: %s with %v", got, ref3)
	}
	if n := s.Stats().Active; n != 2 {
		t.Fatalf("Active = %d, want 2", n)
	}
	list := s.Actors(0)
	if len(list) != 2 || list[0].ID != "counter_1" || list[0].Incarnation != ref1.Incarnation {
		t.Fatalf("Actors = %+v", list)
	}
}

// TestInitArg: the init argument (starting level 10) is used on the first
// call only.
func TestInitArg(t *testing.T) {
	s := standalone(t, nil)
	_, got := call(t, s, "game", "player", "player_123", "get_state", []byte(`{"starting_level":10}`))
	var st gameActor
	must(t, json.Unmarshal([]byte(got), &st))
	if st.Level != 10 {
		t.Fatalf("level = %d, want 10", st.Level)
	}
	_, got = call(t, s, "game", "player", "player_123", "increment", []byte(`{"starting_level":99}`))
	must(t, json.Unmarshal([]byte(got), &st))
	if st.Level != 10 || st.Score != 1 {
		t.Fatalf("after a second init argument: %+v, want level 10 score 1", st)
	}
	_, got = call(t, s, "game", "player", "player_1", "get_state", nil)
	must(t, json.Unmarshal([]byte(got), &st))
	if st.Level != 1 {
		t.Fatalf("without init argument: level %d, want 1", st.Level)
	}
	// A bad init argument fails that message and starts nothing.
	ctx := context.Background()
	_, _, err := s.Call(ctx, Request{Capability: "game", Kind: "player", ID: "player_bad", InitArg: []byte("{")})
	if !errors.Is(err, ErrInit) {
		t.Fatalf("bad init argument: %v, want ErrInit", err)
	}
	_, got = call(t, s, "game", "player", "player_bad", "get_state", nil)
	must(t, json.Unmarshal([]byte(got), &st))
	if st.Level != 1 {
		t.Fatalf("after a failed start: level %d, want 1", st.Level)
	}
}

// TestCrasher: a crash fails its call with ErrCrashed; the next call gets a
// new reference and fresh state.
func TestCrasher(t *testing.T) {
	s := standalone(t, nil)
	ref1, got := call(t, s, "crasher", "crasher", "crasher_1", "", nil)
	_, got = call(t, s, "crasher", "crasher", "crasher_1", "", nil)
	if got != "2" {
		t.Fatalf("second call = %s", got)
	}
	_, _, err := s.Call(context.Background(), Request{Capability: "crasher", Kind: "crasher", ID: "crasher_1", Payload: []byte("crash")})
	if !errors.Is(err, ErrCrashed) {
		t.Fatalf("crash: %v, want ErrCrashed", err)
	}
	ref2, got := call(t, s, "crasher", "crasher", "crasher_1", "", nil)
	if got != "1" {
		t.Fatalf("after the crash: %s, want fresh state 1", got)
	}
	if ref2 == ref1 || ref2.Incarnation == ref1.Incarnation {
		t.Fatalf("same reference after a crash: %v", ref2)
	}
}

// TestCast: a cast returns once accepted and is handled in order with the
// calls that follow.
func TestCast(t *testing.T) {
	s := standalone(t, nil)
	call(t, s, "counter", "counter", "c", "", nil)
	ctx := context.Background()
	for range 5 {
		must(t, s.Cast(ctx, Request{Capability: "counter", Kind: "counter", ID: "c", Payload: []byte("inc")}))
	}
	if _, got := call(t, s, "counter", "counter", "c", "get", nil); got != "6" {
		t.Fatalf("after five casts: %s, want 6", got)
	}
	must(t, s.Cast(ctx, Request{Capability: "counter", Kind: "counter", ID: "c", Payload: []byte("reset")}))
	if _, got := call(t, s, "counter", "counter", "c", "get", nil); got != "0" {
		t.Fatalf("after reset: %s, want 0", got)
	}
	// A cast starts an actor too.
	must(t, s.Cast(ctx, Request{Capability: "counter", Kind: "counter", ID: "fresh", Payload: []byte("inc")}))
	if _, got := call(t, s, "counter", "counter", "fresh", "get", nil); got != "1" {
		t.Fatalf("cast to a new actor: %s, want 1", got)
	}
}

// TestConcurrentCallsOneAtATime: many callers of one actor; the actor never
// runs two messages at once and counts every call.
func TestConcurrentCallsOneAtATime(t *testing.T) {
	s := standalone(t, nil)
	var inside sync.Mutex
	busy := 0
	overlap := false
	must(t, s.Register("test", "probe", func(string) Actor {
		return callFunc(func(context.Context, []byte) ([]byte, error) {
			inside.Lock()
			busy++
			if busy > 1 {
				overlap = true
			}
			inside.Unlock()
			time.Sleep(50 * time.Microsecond)
			inside.Lock()
			busy--
			inside.Unlock()
			return nil, nil
		})
	}))
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				call(t, s, "test", "probe", "one", "", nil)
			}
		}()
	}
	wg.Wait()
	if overlap {
		t.Fatal("an actor ran two messages at once")
	}
	_, got := call(t, s, "counter", "counter", "x", "", nil)
	if got != "1" {
		t.Fatal(got)
	}
}

// callFunc is an actor made of one function.
type callFunc func(context.Context, []byte) ([]byte, error)

func (f callFunc) HandleCall(ctx context.Context, msg []byte) ([]byte, error) { return f(ctx, msg) }
func (f callFunc) HandleCast(ctx context.Context, msg []byte)                 { _, _ = f(ctx, msg) }

// TestCounterKind: the demo kind, registered for every capability.
func TestCounterKind(t *testing.T) {
	c := newCluster(t)
	a := c.add("a", nil, "game", "chat")
	c.sync()
	c.waitView()
	must(t, a.sys.RegisterAll("demo", NewCounter))
	if err := a.sys.RegisterAll("demo", NewCounter); !errors.Is(err, ErrAlreadyRegistered) {
		t.Fatalf("second RegisterAll: %v", err)
	}
	ctx := context.Background()
	send := func(capability, id, msg string, init []byte) string {
		t.Helper()
		_, reply, err := a.sys.Call(ctx, Request{Capability: capability, Kind: "demo", ID: id, Payload: []byte(msg), InitArg: init})
		must(t, err)
		return string(reply)
	}
	if got := send("game", "p1", "inc", []byte(`{"start":10}`)); got != `{"id":"p1","count":11}` {
		t.Fatal(got)
	}
	if got := send("game", "p1", `"get"`, nil); got != `{"id":"p1","count":11}` {
		t.Fatal(got)
	}
	must(t, a.sys.Cast(ctx, Request{Capability: "game", Kind: "demo", ID: "p1", Payload: []byte("reset")}))
	if got := send("game", "p1", "get", nil); got != `{"id":"p1","count":0}` {
		t.Fatal(got)
	}
	if got := send("chat", "p1", "", nil); got != `{"id":"p1","count":1}` {
		t.Fatalf("the same id in another capability is another actor: %s", got)
	}
	_, _, err := a.sys.Call(ctx, Request{Capability: "game", Kind: "demo", ID: "bad", InitArg: []byte(`{}`)})
	if !errors.Is(err, ErrInit) {
		t.Fatalf("bad init argument: %v", err)
	}
}
