package actors

import (
	"fmt"
	"testing"
	"time"

	"github.com/macula-io/macula/event"
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
