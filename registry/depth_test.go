package registry

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/macula-io/macula/member"
)

func TestClockReadAndObserve(t *testing.T) {
	now := time.UnixMilli(1_000_000)
	c := clock{now: func() time.Time { return now }, maxDrift: time.Minute}
	a := c.read()
	b := c.read()
	if b <= a || a.Time() != now {
		t.Fatalf("reads %v then %v", a, b)
	}
	// A stamp ahead (within the drift) is followed: the next read is later.
	ahead := physical(now.Add(30 * time.Second))
	c.observe(ahead)
	if r := c.read(); r <= ahead {
		t.Fatalf("read %v after observing %v", r, ahead)
	}
	// One too far ahead is not, and is counted.
	c.observe(physical(now.Add(2 * time.Minute)))
	if r := c.read(); r.Time().After(now.Add(time.Minute)) || c.ignored.Load() != 1 {
		t.Fatalf("followed a stamp an hour ahead: %v, ignored %d", r, c.ignored.Load())
	}
	// The wall clock going back does not make stamps go back.
	last := c.read()
	now = now.Add(-time.Hour)
	if r := c.read(); r <= last {
		t.Fatalf("read %v after %v", r, last)
	}
}

// TestLateClockDoesNotStealAName: node b's wall clock runs half an hour
// late.
// It learns a's name, is cut off (its membership declares a failed, so the
// name leaves its view), and registers the name itself. By wall clocks its
// registration would be the earlier one and win; its hybrid clock followed
// a's stamp, so a keeps the name after the heal.
func TestLateClockDoesNotStealAName(t *testing.T) {
	i := 0
	ns := newMemberNodes(t, 2, nil, func(c *Config) {
		if i == 1 { // b's clock is half an hour late
			c.now = func() time.Time { return time.Now().Add(-30 * time.Minute) }
		}
		i++
	})
	a, b := ns[0], ns[1]
	pa := spawn(t, a.r)
	mustRegister(t, pa, "leader", "a")
	hasName(t, b.r, "leader", pa.Addr())
	cut(a, b)
	a.m.drop(b.h.ID(), member.Failed)
	b.m.drop(a.h.ID(), member.Failed)
	hasName(t, b.r, "leader", Addr{})
	pb := spawn(t, b.r)
	mustRegister(t, pb, "leader", "b")
	eb, _ := b.r.Lookup("leader")
	ea, _ := a.r.Lookup("leader")
	if eb.Registered <= ea.Registered {
		t.Fatalf("b's stamp %v is not after a's %v", eb.Registered, ea.Registered)
	}
	a.m.set(member.Member{ID: b.h.ID()})
	b.m.set(member.Member{ID: a.h.ID()})
	link(t, a, b)
	s := converged(t, ns)
	if !strings.Contains(s, "name leader "+pa.Addr().String()) {
		t.Fatalf("state:\n%s", s)
	}
	if m := <-pb.Messages(); m.Kind != MessageLost || m.Winner != pa.Addr() {
		t.Fatalf("notice %+v", m)
	}
}

func TestSimultaneousNodeFailures(t *testing.T) {
	ns := newMemberNodes(t, 4, nil, nil)
	for i, n := range ns {
		mustRegister(t, spawn(t, n.r), fmt.Sprintf("n/%d", i), "")
		mustJoin(t, spawn(t, n.r), "all", fmt.Sprint(i))
	}
	converged(t, ns)
	// Two nodes crash at once; the survivors' membership says so.
	for _, dead := range ns[2:] {
		dead.h.Close()
		for _, live := range ns[:2] {
			live.m.drop(dead.h.ID(), member.Failed)
		}
	}
	for _, live := range ns[:2] {
		hasName(t, live.r, "n/2", Addr{})
		hasName(t, live.r, "n/3", Addr{})
	}
	s := converged(t, ns[:2])
	if strings.Count(s, "\n") != 4 || strings.Contains(s, "n/2") || strings.Contains(s, "n/3") {
		t.Fatalf("state:\n%s", s)
	}
}

func TestLateJoinerGetsNamedClusters(t *testing.T) {
	ns := newNodes(t, 2, nil)
	ctx := context.Background()
	for _, n := range ns {
		if err := n.r.Connect(ctx, "game"); err != nil {
			t.Fatal(err)
		}
	}
	mustJoin(t, spawn(t, ns[0].r), "room/1", "d")
	mustJoin(t, spawn(t, ns[1].r), "room/1", "g", InCluster("game"))
	late := newNodes(t, 1, nil)[0]
	if err := late.r.Connect(ctx, "game"); err != nil {
		t.Fatal(err)
	}
	link(t, late, ns[0])
	link(t, late, ns[1])
	s := converged(t, append(ns, late), "game")
	if !strings.Contains(s, "game member room/1") || !strings.Contains(s, "\nmember room/1") && !strings.HasPrefix(s, " member room/1") {
		t.Fatalf("state:\n%s", s)
	}
}

func TestRestartedRegistryResyncs(t *testing.T) {
	// A node's registry closes (its entries go everywhere) and a new one
	// starts on the same host: it gets the others' state, and its own new
	// entries (a new epoch) reach them.
	ns := newNodes(t, 3, nil)
	mustRegister(t, spawn(t, ns[0].r), "keep/0", "")
	p2 := spawn(t, ns[2].r)
	mustRegister(t, p2, "old/2", "")
	converged(t, ns)
	ns[2].r.Close()
	hasName(t, ns[0].r, "old/2", Addr{})
	r2, err := New(ns[2].h, nil, Config{Realm: testRealm, Logger: quietLogger(), AntiEntropy: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r2.Close() })
	ns[2].r = r2
	r2.ensureLink(ns[0].h.ID())
	r2.ensureLink(ns[1].h.ID())
	hasName(t, r2, "keep/0", Addr{Node: ns[0].h.ID()}.withAny(r2, "keep/0"))
	p := spawn(t, r2)
	mustRegister(t, p, "new/2", "")
	hasName(t, ns[0].r, "new/2", p.Addr())
	s := converged(t, ns)
	if strings.Contains(s, "old/2") {
		t.Fatalf("an entry of the closed registry came back:\n%s", s)
	}
}

func TestSenderSideClusterFiltering(t *testing.T) {
	ns := newNodes(t, 3, nil)
	ctx := context.Background()
	for _, n := range ns[:2] {
		if err := n.r.Connect(ctx, "secret"); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 20 {
		mustJoin(t, spawn(t, ns[0].r), fmt.Sprintf("s/%d", i), "", InCluster("secret"))
	}
	memberCount(t, ns[1].r, "s/", 20, InCluster("secret"))
	// Node 0 never put anything of the cluster on its link to node 2.
	l := ns[0].r.openLink(ns[2].h.ID())
	l.mu.Lock()
	defer l.mu.Unlock()
	for k := range l.sent {
		if k.cluster == "secret" {
			t.Fatalf("node 0 tracks what node 2 holds of %v", k)
		}
	}
	if l.clusters["secret"] {
		t.Fatal("node 2 is taken for a member of the cluster")
	}
}
