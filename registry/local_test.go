package registry

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// The local semantics, after the original's group_test.exs.

func TestJoinAppearsInMembers(t *testing.T) {
	r := newRegistry(t, nil)
	p := spawn(t, r)
	mustJoin(t, p, "chat/room/42", `{"role":"member"}`)
	ms, err := r.Members("chat/room/42")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].Addr != p.Addr() || string(ms[0].Meta) != `{"role":"member"}` || ms[0].Key != "chat/room/42" {
		t.Fatalf("members %+v", ms)
	}
}

func TestJoinLeaveEvents(t *testing.T) {
	r := newRegistry(t, nil)
	m := monitor(t, r, "")
	p := spawn(t, r)
	mustJoin(t, p, "room/1", "a")
	b := next(t, m)
	if len(b.Events) != 1 || b.Events[0].Kind != Joined || b.Events[0].Key != "room/1" || b.Events[0].Addr != p.Addr() || string(b.Events[0].Meta) != "a" || b.Events[0].Update {
		t.Fatalf("join batch %v", b.Events)
	}
	if err := p.Leave("room/1"); err != nil {
		t.Fatal(err)
	}
	b = next(t, m)
	if len(b.Events) != 1 || b.Events[0].Kind != Left || b.Events[0].Reason != ReasonLeft {
		t.Fatalf("leave batch %v", b.Events)
	}
	if ms, _ := r.Members("room/1"); len(ms) != 0 {
		t.Fatalf("members after leave: %v", ms)
	}
}

func TestLeaveNotMember(t *testing.T) {
	r := newRegistry(t, nil)
	p := spawn(t, r)
	if err := p.Leave("room/1"); !errors.Is(err, ErrNotMember) {
		t.Fatalf("Leave of a group not joined: %v", err)
	}
	if err := p.Unregister("user/1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Unregister of a name not held: %v", err)
	}
}

func TestRejoinUpdatesMeta(t *testing.T) {
	r := newRegistry(t, nil)
	p := spawn(t, r)
	mustJoin(t, p, "room/1", "v1")
	m := monitor(t, r, "room/1")
	mustJoin(t, p, "room/1", "v2")
	b := next(t, m)
	if len(b.Events) != 1 || b.Events[0].Kind != Joined || !b.Events[0].Update || string(b.Events[0].PreviousMeta) != "v1" || string(b.Events[0].Meta) != "v2" {
		t.Fatalf("re-join batch %v", b.Events)
	}
	// The same metadata again changes nothing and says nothing.
	mustJoin(t, p, "room/1", "v2")
	quiet(t, m)
	ms, _ := r.Members("room/1")
	if len(ms) != 1 || string(ms[0].Meta) != "v2" {
		t.Fatalf("members %+v", ms)
	}
}

func TestProcessEndLeavesAndUnregisters(t *testing.T) {
	r := newRegistry(t, nil)
	m := monitor(t, r, "")
	ctx, cancel := context.WithCancel(context.Background())
	p, err := r.Spawn(ctx, ProcessConfig{})
	if err != nil {
		t.Fatal(err)
	}
	mustRegister(t, p, "user/1", "u")
	mustJoin(t, p, "room/1", "a")
	mustJoin(t, p, "room/2", "b")
	next(t, m)
	next(t, m)
	next(t, m)
	cancel()
	<-p.Done()
	// One batch for everything the process held.
	b := next(t, m)
	if len(b.Events) != 3 {
		t.Fatalf("end batch %v", b.Events)
	}
	for _, e := range b.Events {
		if e.Reason != ReasonProcessEnded || e.Detail != context.Canceled.Error() {
			t.Fatalf("event %v", e)
		}
	}
	if _, err := r.Lookup("user/1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Lookup after the end: %v", err)
	}
	if err := p.Join("room/3", nil); !errors.Is(err, ErrProcessEnded) {
		t.Fatalf("Join by an ended process: %v", err)
	}
	if _, ok := <-p.Messages(); ok {
		t.Fatal("the mailbox of an ended process is open")
	}
	if !errors.Is(p.Err(), ErrProcessEnded) {
		t.Fatalf("Err %v", p.Err())
	}
}

func TestRegisterLookup(t *testing.T) {
	r := newRegistry(t, nil)
	m := monitor(t, r, "user/")
	p := spawn(t, r)
	mustRegister(t, p, "user/123", `{"name":"Alice"}`)
	e, err := r.Lookup("user/123")
	if err != nil || e.Addr != p.Addr() || string(e.Meta) != `{"name":"Alice"}` || e.Key != "user/123" {
		t.Fatalf("Lookup = %+v, %v", e, err)
	}
	if e.Registered.Time().Before(time.Now().Add(-time.Minute)) {
		t.Fatalf("registered at %v", e.Registered)
	}
	b := next(t, m)
	if len(b.Events) != 1 || b.Events[0].Kind != Registered || b.Events[0].Addr != p.Addr() {
		t.Fatalf("batch %v", b.Events)
	}
}

func TestRegisterTaken(t *testing.T) {
	r := newRegistry(t, nil)
	p1, p2 := spawn(t, r), spawn(t, r)
	mustRegister(t, p1, "user/1", "one")
	err := p2.Register("user/1", []byte("two"))
	var te *TakenError
	if !errors.Is(err, ErrTaken) || !errors.As(err, &te) || te.Owner != p1.Addr() || te.Key != "user/1" {
		t.Fatalf("second Register: %v", err)
	}
	if e, _ := r.Lookup("user/1"); e.Addr != p1.Addr() || string(e.Meta) != "one" {
		t.Fatalf("the owner changed: %+v", e)
	}
}

func TestReregisterUpdatesMeta(t *testing.T) {
	r := newRegistry(t, nil)
	p := spawn(t, r)
	mustRegister(t, p, "user/1", "v1")
	first, _ := r.Lookup("user/1")
	m := monitor(t, r, "user/1")
	mustRegister(t, p, "user/1", "v2")
	b := next(t, m)
	if len(b.Events) != 1 || b.Events[0].Kind != Registered || !b.Events[0].Update || string(b.Events[0].PreviousMeta) != "v1" {
		t.Fatalf("batch %v", b.Events)
	}
	e, _ := r.Lookup("user/1")
	if string(e.Meta) != "v2" || e.Registered != first.Registered {
		t.Fatalf("after re-register %+v (first %+v)", e, first)
	}
}

func TestUnregister(t *testing.T) {
	r := newRegistry(t, nil)
	p := spawn(t, r)
	mustRegister(t, p, "user/1", "v1")
	m := monitor(t, r, "")
	if err := p.Unregister("user/1"); err != nil {
		t.Fatal(err)
	}
	b := next(t, m)
	if len(b.Events) != 1 || b.Events[0].Kind != Unregistered || b.Events[0].Reason != ReasonUnregistered || string(b.Events[0].Meta) != "v1" {
		t.Fatalf("batch %v", b.Events)
	}
	if _, err := r.Lookup("user/1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Lookup: %v", err)
	}
	// Free again: another process may take it.
	mustRegister(t, spawn(t, r), "user/1", "v2")
}

func TestMembersExcludesNames(t *testing.T) {
	r := newRegistry(t, nil)
	a, b, c := spawn(t, r), spawn(t, r), spawn(t, r)
	mustRegister(t, a, "room/1", "")
	mustJoin(t, b, "room/1", "")
	mustJoin(t, c, "room/1", "")
	ms, _ := r.Members("room/1")
	if got := addrs(ms); !slices.Equal(got, sortedAddrs(b.Addr(), c.Addr())) {
		t.Fatalf("members %v", got)
	}
	if ms, err := r.Members("nothing/here"); err != nil || ms == nil || len(ms) != 0 {
		t.Fatalf("members of an empty group: %v, %v", ms, err)
	}
	ms, _ = r.Members("room/1", Limit(1))
	if len(ms) != 1 {
		t.Fatalf("limit 1: %v", ms)
	}
}

func sortedAddrs(as ...Addr) []Addr {
	slices.SortFunc(as, func(a, b Addr) int {
		if a.less(b) {
			return -1
		}
		return 1
	})
	return as
}

func TestPrefixMembers(t *testing.T) {
	r := newRegistry(t, nil)
	a, b, c, d := spawn(t, r), spawn(t, r), spawn(t, r), spawn(t, r)
	mustJoin(t, a, "chat/room1", "a")
	mustJoin(t, b, "chat/room2", "b")
	mustJoin(t, c, "chat/room/42", "c")
	mustJoin(t, d, "chatter/x", "d") // not under chat/
	mustRegister(t, d, "chat/name", "")
	ms, err := r.Members("chat/")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, m := range ms {
		keys = append(keys, m.Key)
	}
	if !slices.Equal(keys, []string{"chat/room/42", "chat/room1", "chat/room2"}) {
		t.Fatalf("prefix members %v", keys)
	}
	if ms, _ := r.Members("chat/room/"); len(ms) != 1 || ms[0].Addr != c.Addr() {
		t.Fatalf("chat/room/: %v", ms)
	}
	if ms, _ := r.Members("nothing/"); len(ms) != 0 {
		t.Fatalf("empty prefix: %v", ms)
	}
	if ms, _ := r.Members("chat/room1"); len(ms) != 1 || ms[0].Addr != a.Addr() {
		t.Fatalf("exact: %v", ms)
	}
	if ms, _ := r.Members(""); len(ms) != 4 {
		t.Fatalf("every member: %v", ms)
	}
	if ms, _ := r.Members("chat/", Limit(2)); len(ms) != 2 {
		t.Fatalf("limit: %v", ms)
	}
	// Leaving the last member of a key takes it out of the prefix.
	if err := c.Leave("chat/room/42"); err != nil {
		t.Fatal(err)
	}
	if ms, _ := r.Members("chat/room/"); len(ms) != 0 {
		t.Fatalf("after leave: %v", ms)
	}
	gs, _ := r.Groups("chat/")
	if len(gs) != 2 || gs[0] != (Group{Key: "chat/room1", Members: 1}) {
		t.Fatalf("groups %v", gs)
	}
	ns, _ := r.Names("chat/")
	if len(ns) != 1 || ns[0].Key != "chat/name" {
		t.Fatalf("names %v", ns)
	}
}

func TestWritesRefusePrefixes(t *testing.T) {
	r := newRegistry(t, nil)
	p := spawn(t, r)
	for name, f := range map[string]func() error{
		"register":   func() error { return p.Register("user/", nil) },
		"join":       func() error { return p.Join("user/", nil) },
		"unregister": func() error { return p.Unregister("user/") },
		"leave":      func() error { return p.Leave("user/") },
	} {
		if err := f(); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("%s with a prefix: %v", name, err)
		}
	}
}

func TestSelfEvents(t *testing.T) {
	r := newRegistry(t, nil)
	p := spawn(t, r)
	m := monitor(t, r, "room/")
	mustJoin(t, p, "room/1", "")
	if b := next(t, m); b.Events[0].Addr != p.Addr() {
		t.Fatalf("batch %v", b.Events)
	}
}

func TestMonitorPatterns(t *testing.T) {
	r := newRegistry(t, nil)
	all := monitor(t, r, "")
	exact := monitor(t, r, "user/1")
	prefix := monitor(t, r, "user/")
	other := monitor(t, r, "chat/")
	p := spawn(t, r)
	mustRegister(t, p, "user/1", "")
	for _, m := range []*Monitor{all, exact, prefix} {
		if b := next(t, m); len(b.Events) != 1 || b.Events[0].Key != "user/1" {
			t.Fatalf("%q: %v", m.Pattern(), b.Events)
		}
	}
	quiet(t, other)
	mustRegister(t, p, "user/2", "")
	next(t, all)
	next(t, prefix)
	quiet(t, exact)
	exact.Close()
	if _, ok := <-exact.C(); ok {
		t.Fatal("a closed monitor's channel is open")
	}
	mustRegister(t, p, "user/3", "")
	next(t, prefix)
	exact.Close() // twice is fine
}

func TestMonitorOverflowCountsMissed(t *testing.T) {
	r := newRegistry(t, func(c *Config) { c.MonitorBuffer = 2 })
	m := monitor(t, r, "")
	p := spawn(t, r)
	for i := range 5 {
		mustJoin(t, p, fmt.Sprintf("room/%d", i), "")
	}
	next(t, m)
	next(t, m)
	mustJoin(t, p, "room/9", "")
	if b := next(t, m); b.Missed != 3 || b.Events[0].Key != "room/9" {
		t.Fatalf("after overflow: missed %d, %v", b.Missed, b.Events)
	}
	if r.Stats().DroppedEvents != 3 {
		t.Fatalf("stats %+v", r.Stats())
	}
}

func TestEventBatches(t *testing.T) {
	r := newRegistry(t, nil)
	m := monitor(t, r, "")
	p := spawn(t, r)
	mustRegister(t, p, "a/1", "")
	if b := next(t, m); len(b.Events) != 1 {
		t.Fatalf("a single operation gives a single event: %v", b.Events)
	}
	for i := range 40 {
		mustJoin(t, p, fmt.Sprintf("g/%d", i), "")
		next(t, m)
	}
	p.Close()
	b := next(t, m)
	if len(b.Events) != 41 {
		t.Fatalf("the end of a process is one batch of 41 events, got %d", len(b.Events))
	}
	quiet(t, m)
}

func TestConcurrentJoinLeaveSameKey(t *testing.T) {
	r := newRegistry(t, nil)
	var procs []*Process
	for range 20 {
		procs = append(procs, spawn(t, r))
	}
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				_ = p.Join("hot/key", []byte{byte(i)})
				if i%2 == 0 {
					_ = p.Leave("hot/key")
				}
			}
		}()
	}
	wg.Wait()
	ms, _ := r.Members("hot/key")
	seen := map[Addr]bool{}
	for _, m := range ms {
		if seen[m.Addr] {
			t.Fatalf("duplicate member %v", m.Addr)
		}
		seen[m.Addr] = true
	}
	if len(ms) != 20 {
		t.Fatalf("%d members, want 20 (each ended with a join)", len(ms))
	}
}

func TestConcurrentRegisterSameKey(t *testing.T) {
	r := newRegistry(t, nil)
	var procs []*Process
	for range 20 {
		procs = append(procs, spawn(t, r))
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var won []Addr
	for _, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := p.Register("the/one", nil)
			if err == nil {
				mu.Lock()
				won = append(won, p.Addr())
				mu.Unlock()
			} else if !errors.Is(err, ErrTaken) {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	e, _ := r.Lookup("the/one")
	if len(won) != 1 || e.Addr != won[0] {
		t.Fatalf("winners %v, owner %v", won, e.Addr)
	}
}

func TestDispatchLocal(t *testing.T) {
	r := newRegistry(t, nil)
	a, b, c := spawn(t, r), spawn(t, r), spawn(t, r)
	mustRegister(t, a, "room/1", "")
	mustJoin(t, a, "room/1", "") // registered and joined: one message
	mustJoin(t, b, "room/1", "")
	mustJoin(t, c, "room/2", "")
	n, err := r.Dispatch(context.Background(), "room/1", []byte("hello"))
	if err != nil || n != 2 {
		t.Fatalf("Dispatch = %d, %v", n, err)
	}
	for _, p := range []*Process{a, b} {
		select {
		case m := <-p.Messages():
			if m.Kind != MessageData || string(m.Payload) != "hello" || m.Key != "room/1" {
				t.Fatalf("message %+v", m)
			}
		case <-time.After(wait):
			t.Fatal("no message")
		}
	}
	select {
	case m := <-c.Messages():
		t.Fatalf("room/2 got %+v", m)
	default:
	}
	if n, _ := b.Dispatch(context.Background(), "room/", []byte("all")); n != 3 {
		t.Fatalf("prefix dispatch reached %d", n)
	}
	if m := <-c.Messages(); m.From != b.Addr() {
		t.Fatalf("from %v", m.From)
	}
	if _, err := r.Dispatch(context.Background(), "", nil); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("dispatch to everything: %v", err)
	}
}

func TestSendLocal(t *testing.T) {
	r := newRegistry(t, nil)
	got := make(chan Message, 1)
	h, err := r.Spawn(context.Background(), ProcessConfig{Handler: func(_ context.Context, m Message) { got <- m }})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	s := spawn(t, r)
	if err := s.Send(context.Background(), h.Addr(), []byte("ping")); err != nil {
		t.Fatal(err)
	}
	if m := <-got; string(m.Payload) != "ping" || m.From != s.Addr() {
		t.Fatalf("got %+v", m)
	}
	if err := r.Send(context.Background(), Addr{Node: r.Self(), ID: 1}, nil); !errors.Is(err, ErrNoProcess) {
		t.Fatalf("send to nobody: %v", err)
	}
	small, _ := r.Spawn(context.Background(), ProcessConfig{Mailbox: 1})
	defer small.Close()
	_ = r.Send(context.Background(), small.Addr(), nil)
	if err := r.Send(context.Background(), small.Addr(), nil); !errors.Is(err, ErrMailboxFull) {
		t.Fatalf("send to a full mailbox: %v", err)
	}
	if small.Dropped() != 1 {
		t.Fatalf("dropped %d", small.Dropped())
	}
}

func TestHandlerPanicEndsProcess(t *testing.T) {
	r := newRegistry(t, nil)
	p, err := r.Spawn(context.Background(), ProcessConfig{Handler: func(context.Context, Message) { panic("boom") }})
	if err != nil {
		t.Fatal(err)
	}
	mustRegister(t, p, "crash/1", "")
	m := monitor(t, r, "crash/")
	_ = r.Send(context.Background(), p.Addr(), nil)
	<-p.Done()
	b := next(t, m)
	if b.Events[0].Reason != ReasonProcessEnded || b.Events[0].Detail != "panic: boom" {
		t.Fatalf("batch %v", b.Events)
	}
}

func TestNamedClusters(t *testing.T) {
	r := newRegistry(t, nil)
	ctx := context.Background()
	p := spawn(t, r)
	if err := p.Join("room/1", nil, InCluster("game")); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("join before connect: %v", err)
	}
	if err := r.Connect(ctx, "game"); err != nil {
		t.Fatal(err)
	}
	if err := r.Connect(ctx, "game"); err != nil {
		t.Fatalf("connect twice: %v", err)
	}
	if !r.Connected("game") || !slices.Equal(r.Clusters(), []string{"game"}) {
		t.Fatal("not connected")
	}
	def := monitor(t, r, "")
	game := monitor(t, r, "", InCluster("game"))
	mustJoin(t, p, "room/1", "g", InCluster("game"))
	mustJoin(t, p, "room/1", "d")
	if b := next(t, game); b.Events[0].Cluster != "game" || string(b.Events[0].Meta) != "g" {
		t.Fatalf("game batch %v", b.Events)
	}
	quiet(t, game)
	if b := next(t, def); b.Events[0].Cluster != "" || string(b.Events[0].Meta) != "d" {
		t.Fatalf("default batch %v", b.Events)
	}
	ms, _ := r.Members("room/1", InCluster("game"))
	if len(ms) != 1 || string(ms[0].Meta) != "g" {
		t.Fatalf("game members %v", ms)
	}
	if n, _ := r.Dispatch(ctx, "room/1", nil, InCluster("game")); n != 1 {
		t.Fatalf("dispatch in game: %d", n)
	}
	nodes, _ := r.Nodes(InCluster("game"))
	if !slices.Equal(nodes, []peer.ID{r.Self()}) {
		t.Fatalf("nodes %v", nodes)
	}
	if err := r.Disconnect(ctx, "game"); err != nil {
		t.Fatal(err)
	}
	b := next(t, game)
	if len(b.Events) != 1 || b.Events[0].Reason != ReasonClusterLeft {
		t.Fatalf("disconnect batch %v", b.Events)
	}
	if _, ok := <-game.C(); ok {
		t.Fatal("a monitor of a disconnected cluster stays open")
	}
	if _, err := r.Members("room/1", InCluster("game")); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("members after disconnect: %v", err)
	}
	if err := r.Disconnect(ctx, "game"); err != nil {
		t.Fatalf("disconnect twice: %v", err)
	}
	// The default cluster did not notice.
	if ms, _ := r.Members("room/1"); len(ms) != 1 {
		t.Fatalf("default members %v", ms)
	}
	// Connect again: empty, working.
	if err := r.Connect(ctx, "game"); err != nil {
		t.Fatal(err)
	}
	if ms, _ := r.Members("room/1", InCluster("game")); len(ms) != 0 {
		t.Fatalf("members after reconnect %v", ms)
	}
	mustJoin(t, p, "room/1", "g2", InCluster("game"))
}

func TestLogLevel(t *testing.T) {
	r := newRegistry(t, nil)
	if r.LogLevel() != LogInfo {
		t.Fatalf("default %v", r.LogLevel())
	}
	for _, l := range []LogLevel{LogVerbose, LogOff, LogInfo} {
		if err := r.SetLogLevel(l); err != nil || r.LogLevel() != l {
			t.Fatalf("set %v: %v", l, err)
		}
	}
	if err := r.SetLogLevel(42); err == nil {
		t.Fatal("level 42 accepted")
	}
	for s, want := range map[string]LogLevel{"off": LogOff, "false": LogOff, "info": LogInfo, "verbose": LogVerbose, "DEBUG": LogVerbose} {
		if got, err := ParseLogLevel(s); err != nil || got != want {
			t.Fatalf("ParseLogLevel(%q) = %v, %v", s, got, err)
		}
	}
	if _, err := ParseLogLevel("loud"); err == nil {
		t.Fatal("loud accepted")
	}
}
