package actors

import (
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

func TestCheckSingleActivation(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	rec := func(id string, node peer.ID, inc uint64, ms int, started bool) Activation {
		return Activation{Capability: "game", Kind: "k", ID: id, Node: node, Incarnation: inc, Time: at(ms), Started: started}
	}
	log := []Activation{
		// x: a then b, back to back: no overlap.
		rec("x", "a", 1, 0, true), rec("x", "a", 1, 100, false), rec("x", "b", 2, 100, true),
		// y: a and b for 50 ms at once.
		rec("y", "a", 3, 0, true), rec("y", "a", 3, 150, false), rec("y", "b", 4, 100, true), rec("y", "b", 4, 300, false),
		// z: two incarnations on one node (a restart): not an overlap.
		rec("z", "a", 5, 0, true), rec("z", "a", 6, 10, true),
		// w: still running on b at the end, started on c before: overlap to the end.
		rec("w", "c", 7, 0, true), rec("w", "b", 8, 400, true),
	}
	rep := CheckSingleActivation(log, at(500))
	if rep.Actors != 4 || rep.Incarnations != 8 {
		t.Fatalf("counts: %+v", rep)
	}
	if rep.OverlapCount != 2 || rep.MaxOverlap != 100*time.Millisecond || rep.TotalOverlap != 150*time.Millisecond {
		t.Fatalf("overlaps: %s %v", rep, rep.Overlaps)
	}
}

// TestCheckerMeasuresPartition: while a partition keeps two nodes' views
// apart, each serves the same ids; the checker over their logs finds the
// double activations and measures them. When the views agree again, the
// duplicates end: one handoff each way, the conflicting state dropped.
func TestCheckerMeasuresPartition(t *testing.T) {
	c := newCluster(t)
	a := c.add("a", nil, "game")
	b := c.add("b", nil, "game")
	c.sync()
	c.waitView()
	ids := make([]string, 40)
	for i := range ids {
		ids[i] = fmt.Sprint("p", i)
		callCount(t, a.sys, "game", ids[i])
	}
	// The partition: each sees only itself and serves every shard.
	a.mem.set(c.view()[:1])
	b.mem.set(c.view()[1:])
	waitUntil(t, "the partition", func() bool {
		return len(a.sys.route.view.Load().live) == 1 && len(b.sys.route.view.Load().live) == 1
	})
	for _, id := range ids {
		callCount(t, a.sys, "game", id)
		callCount(t, b.sys, "game", id)
	}
	// Healed.
	c.sync()
	c.waitView()
	waitUntil(t, "the duplicates to go", func() bool {
		total := a.sys.Stats().Active + b.sys.Stats().Active
		return total == int64(len(ids))
	})
	for _, id := range ids {
		callCount(t, a.sys, "game", id)
	}
	la, _ := a.sys.ActivationLog()
	lb, _ := b.sys.ActivationLog()
	rep := CheckSingleActivation(append(la, lb...), time.Now())
	t.Logf("partition: %s", rep)
	if rep.OverlapCount < len(ids)/2 || rep.MaxOverlap <= 0 {
		t.Fatalf("the checker missed the double activations of the partition: %s", rep)
	}
}
