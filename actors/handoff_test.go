package actors

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/macula-io/macula/event"
	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/ring"
)

// joinLate has node a hold counters, then makes node d a member serving
// game (every view has it, as the membership does once d announced its
// capabilities) before d's actor system serves: a loses shards to d and
// tries to hand their actors over while d cannot take them yet. start
// then starts d's system. It returns a, d and the ids with their counts.
func joinLate(t *testing.T, start func(c *cluster, d *tnode, cfg Config)) (*cluster, *tnode, *tnode, map[string]int) {
	c := newCluster(t)
	a := c.add("a", nil, "game")
	c.sync()
	c.waitView()
	counts := map[string]int{}
	for i := range 48 {
		id := fmt.Sprint("p", i)
		for range 3 {
			_, counts[id] = callCount(t, a.sys, "game", id)
		}
	}
	lost := a.bus.Subscribe(16, event.ShardsChanged)
	defer lost.Close()
	d, cfg := c.prepare("d", nil, "game")
	c.sync()
	select {
	case e := <-lost.C:
		if e.Lost == 0 {
			t.Fatalf("a's shards event: %+v", e)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a did not lose shards to d")
	}
	// a's first attempts meet no handoff procedure on d.
	time.Sleep(300 * time.Millisecond)
	start(c, d, cfg)
	c.waitView()
	return c, a, d, counts
}

// checkCounts: every id answers its count plus one, and some live on d
// now, moved there with their state.
func checkCounts(t *testing.T, c *cluster, a, d *tnode, counts map[string]int) {
	t.Helper()
	onD := 0
	for id, n := range counts {
		ref, got := callCount(t, a.sys, "game", id)
		if got != n+1 {
			t.Fatalf("%s: count %d on %s after d joined, want %d (its state was lost in the move)", id, got, c.byID(ref.Node).name, n+1)
		}
		if ref.Node == d.h.ID() {
			onD++
		}
	}
	if onD == 0 || d.sys.Stats().MovedIn == 0 {
		t.Fatalf("%d ids on d, %d actors moved in", onD, d.sys.Stats().MovedIn)
	}
	t.Logf("%d of %d ids moved to d with their counts; d's handoff timeouts %d", onD, len(counts), d.sys.Stats().HandoffTimeouts)
	checkLogs(t, c)
}

// TestHandoffToStartingNode: a node is a member before its actor system
// serves the actors protocol (a node that has just started announces its
// capabilities first): the previous owner keeps trying within the handoff
// timeout, so the actors move with their state.
func TestHandoffToStartingNode(t *testing.T) {
	c, a, d, counts := joinLate(t, func(c *cluster, d *tnode, cfg Config) { c.start(d, cfg) })
	checkCounts(t, c, a, d, counts)
}

// TestHandoffBeforeKindsRegistered: the new owner's system serves the
// protocol at once (New), and its program registers its kinds a moment
// later: handed actors wait for the system to settle, not dropped as of an
// unknown kind.
func TestHandoffBeforeKindsRegistered(t *testing.T) {
	c, a, d, counts := joinLate(t, func(c *cluster, d *tnode, cfg Config) {
		cfg.Settle = time.Second
		c.startWith(d, cfg, func() { time.Sleep(700 * time.Millisecond) })
	})
	checkCounts(t, c, a, d, counts)
}

// TestCapabilityChangeMovesActors: a node that stops serving a capability
// at run time (macula-node capabilities set) hands its actors of it over
// with their state, and takes them back when it serves it again, while
// sequential callers and casters keep sending: every reply is the previous
// count plus one, and every accepted cast is counted.
func TestCapabilityChangeMovesActors(t *testing.T) {
	c, a, b, cc := threeNodes(t)
	ids := make([]string, 48)
	for i := range ids {
		ids[i] = fmt.Sprint("player_", i)
		callCount(t, a.sys, "game", ids[i])
	}
	stop := make(chan struct{})
	res := runLoad(t, []*System{a.sys, b.sys}, "game", ids, stop, nil)
	// Casts to other ids: each accepted one must be counted; one that
	// failed after it was sent (ErrLost, ErrTimeout) may have been.
	castIDs := []string{"caster_0", "caster_1", "caster_2", "caster_3"}
	var mu sync.Mutex
	accepted, unsure := map[string]int{}, map[string]int{}
	var casters sync.WaitGroup
	for i, id := range castIDs {
		casters.Add(1)
		go func() {
			defer casters.Done()
			from := []*System{a.sys, b.sys}[i%2]
			for {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				err := from.Cast(ctx, Request{Capability: "game", Kind: "counter", ID: id})
				cancel()
				mu.Lock()
				switch {
				case err == nil:
					accepted[id]++
				case errors.Is(err, ErrLost), errors.Is(err, ErrTimeout):
					unsure[id]++
				}
				mu.Unlock()
				time.Sleep(time.Millisecond)
			}
		}()
	}
	res.waitCalls(t, 300)

	onC := func() int {
		n := 0
		for _, x := range cc.sys.Actors(0) {
			if x.Capability == "game" {
				n++
			}
		}
		return n
	}
	if onC() == 0 {
		t.Fatal("no game actor on c")
	}
	// C stops serving game: its game actors move to A.
	cc.caps = []string{"chat", "payment"}
	c.sync()
	waitUntil(t, "c to hand its game actors over", func() bool { return onC() == 0 && a.sys.Stats().MovedIn > 0 })
	res.waitCalls(t, 300)
	// And serves it again: they come back.
	movedIn := cc.sys.Stats().MovedIn
	cc.caps = []string{"chat", "game", "payment"}
	c.sync()
	waitUntil(t, "game actors back on c", func() bool { return cc.sys.Stats().MovedIn > movedIn })
	res.waitCalls(t, 300)
	close(stop)
	res.wg.Wait()
	casters.Wait()

	res.mu.Lock()
	defer res.mu.Unlock()
	t.Logf("%d calls under load, errors %v; moved out c %d, a %d", res.calls, res.errs, cc.sys.Stats().MovedOut, a.sys.Stats().MovedOut)
	if len(res.bad) > 0 {
		t.Fatalf("counts out of order or lost: %v", res.bad)
	}
	for _, id := range ids {
		if _, n := callCount(t, b.sys, "game", id); n != res.counts[id]+1 {
			t.Fatalf("%s: count %d after the moves, want %d", id, n, res.counts[id]+1)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, id := range castIDs {
		// Casts are handled after they are accepted: wait for the count.
		lo, hi := accepted[id], accepted[id]+unsure[id]
		var n int
		testnet.Eventually(t, 20*time.Second, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, reply, err := a.sys.Call(ctx, Request{Capability: "game", Kind: "counter", ID: id, Payload: []byte("get")})
			if err != nil {
				return err
			}
			n, _ = strconv.Atoi(string(reply))
			if n < lo {
				return fmt.Errorf("%s counted %d casts, %d were accepted", id, n, lo)
			}
			return nil
		})
		if n > hi {
			t.Fatalf("%s counted %d casts, at most %d were sent", id, n, hi)
		}
		t.Logf("%s: %d casts counted, %d accepted, %d unsure", id, n, lo, hi-lo)
	}
	checkLogs(t, c)
}

// TestHandOnBeforeStart: actors handed to a node that loses their shards
// again before any message started them there are handed on with the
// state they came with.
func TestHandOnBeforeStart(t *testing.T) {
	c := newCluster(t)
	a := c.add("a", nil, "game")
	c.sync()
	c.waitView()
	counts := map[string]int{}
	for i := range 48 {
		id := fmt.Sprint("p", i)
		for range 3 {
			_, counts[id] = callCount(t, a.sys, "game", id)
		}
	}
	d := c.add("d", nil, "game")
	c.sync()
	c.waitView()
	waitUntil(t, "actors handed to d", func() bool { return d.sys.Stats().MovedIn > 0 })
	// d leaves before any of them got a message.
	must(t, d.sys.Close())
	d.down = true
	c.sync()
	c.waitView()
	for id, n := range counts {
		if _, got := callCount(t, a.sys, "game", id); got != n+1 {
			t.Fatalf("%s: count %d after d came and went, want %d", id, got, n+1)
		}
	}
	checkLogs(t, c)
}

// stopCount reports the count it has when it stops.
type stopCount struct {
	counter
	stops chan uint64
}

func (s *stopCount) Stop(_ context.Context, reason StopReason) {
	if reason == Passivated {
		s.stops <- s.n
	}
}

// TestPassivateHandedActor: an actor handed to a node and idle there until
// it is passivated starts from its state first, so that its Stop hook sees
// the state it is about to lose.
func TestPassivateHandedActor(t *testing.T) {
	c := newCluster(t)
	a := c.add("a", nil, "game")
	stops := make(chan uint64, 256)
	kind := func(string) Actor { return &stopCount{stops: stops} }
	must(t, a.sys.Register("game", "saver", kind))
	ids := make([]string, 32)
	for i := range ids {
		ids[i] = fmt.Sprint("s", i)
		call(t, a.sys, "game", "saver", ids[i], "", nil)
		call(t, a.sys, "game", "saver", ids[i], "", nil)
	}
	d, cfg := c.prepare("d", func(cfg *Config) { cfg.IdleTimeout = 200 * time.Millisecond; cfg.Settle = 200 * time.Millisecond }, "game")
	d.mem.set(c.view())
	c.startWith(d, cfg, func() { must(t, d.sys.Register("game", "saver", kind)) })
	c.sync()
	c.waitView()
	waitUntil(t, "actors handed to d", func() bool { return d.sys.Stats().MovedIn > 0 })
	moved := int(d.sys.Stats().MovedIn)
	for i := range moved {
		select {
		case n := <-stops:
			if n != 2 {
				t.Fatalf("passivated with count %d, want 2", n)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%d of %d handed actors passivated", i, moved)
		}
	}
}

// TestHandoffToNodeThatWentAway: a node joins and goes away before it took
// the actors handed to it (its system never served): when the handoff
// gives up, the previous owner keeps their state, and uses it once the
// shards are its own again.
func TestHandoffToNodeThatWentAway(t *testing.T) {
	c := newCluster(t)
	a := c.add("a", func(cfg *Config) { cfg.HandoffTimeout = 300 * time.Millisecond }, "game")
	c.sync()
	c.waitView()
	counts := map[string]int{}
	for i := range 48 {
		id := fmt.Sprint("p", i)
		for range 3 {
			_, counts[id] = callCount(t, a.sys, "game", id)
		}
	}
	lost := a.bus.Subscribe(16, event.ShardsChanged)
	defer lost.Close()
	d, _ := c.prepare("d", nil, "game")
	t.Cleanup(d.close)
	c.sync()
	<-lost.C
	// a's handoff to d gives up after 2 x HandoffTimeout.
	waitUntil(t, "a to give up", func() bool { return len(a.sys.Actors(0)) > 0 && a.sys.Stats().MovedOut > 0 && shardsLeaving(a) == 0 })
	d.down = true
	c.sync()
	waitUntil(t, "a's view without d", func() bool { return len(a.sys.route.view.Load().live) == 1 })
	for id, n := range counts {
		if _, got := callCount(t, a.sys, "game", id); got != n+1 {
			t.Fatalf("%s: count %d after d came and went, want %d", id, got, n+1)
		}
	}
}

// shardsLeaving counts the shards n is handing over.
func shardsLeaving(n *tnode) int {
	k := 0
	for _, cs := range *n.sys.route.caps.Load() {
		cs.mu.Lock()
		k += len(cs.leaving)
		cs.mu.Unlock()
	}
	return k
}

// TestGivenUpMessageDoesNotRunLate: a remote call held on its owner until
// after its caller gave up (here: the shard's admission lock held, as while
// shards move) is not delivered when the owner gets to it, so it cannot
// run after the caller's next message.
func TestGivenUpMessageDoesNotRunLate(t *testing.T) {
	c := newCluster(t)
	a := c.add("a", nil, "game")
	b := c.add("b", nil, "chat")
	c.sync()
	c.waitView()
	id := "late"
	cs := a.sys.route.capState("game")
	lk := &cs.locks[ring.ShardOf(id)]
	lk.Lock()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, _, err := b.sys.Call(ctx, Request{Capability: "game", Kind: "counter", ID: id})
	cancel()
	if !errors.Is(err, ErrTimeout) {
		lk.Unlock()
		t.Fatalf("held call: %v, want ErrTimeout", err)
	}
	// The caller's next message, held behind it.
	next := make(chan string, 1)
	go func() {
		_, reply, err := b.sys.Call(context.Background(), Request{Capability: "game", Kind: "counter", ID: id})
		if err != nil {
			next <- err.Error()
			return
		}
		next <- string(reply)
	}()
	time.Sleep(200 * time.Millisecond)
	lk.Unlock()
	if got := <-next; got != "1" {
		t.Fatalf("the next call answered %q, want 1 (the given-up call ran)", got)
	}
	if _, got := call(t, a.sys, "game", "counter", id, "get", nil); got != "1" {
		t.Fatalf("count %s, want 1: the given-up call ran late", got)
	}
}
