package member

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/macula-io/macula/event"
)

// TestJoinChangeLeave: members linked only through a chain of connections
// learn each other, see a change of capabilities and a clean departure.
func TestJoinChangeLeave(t *testing.T) {
	a := newMember(t, "a", func(c *Config) { c.Capabilities = []string{"game"} })
	b := newMember(t, "b", nil)
	c := newMember(t, "c", func(c *Config) { c.Capabilities = []string{"chat", "game"} })
	connect(t, b.h, a.h)
	connect(t, c.h, b.h)
	all := []*testMember{a, b, c}
	eventually(t, 30*time.Second, "every member sees every member", func() bool { return sees(all, a, b, c) })
	for _, x := range all {
		got := ids(x.m.WithCapability("game"))
		want := []string{a.h.ID().String(), c.h.ID().String()}
		slices.Sort(want)
		if len(got) != 2 || got[0].String() != want[0] || got[1].String() != want[1] {
			t.Fatalf("%s: game served by %v, want %v", x.m.Self().Name, got, want)
		}
	}
	w := a.m.Watch(context.Background())
	for i := 0; i < 3; i++ {
		if ch := <-w; ch.Kind != Joined {
			t.Fatalf("first changes of a watch: %+v", ch)
		}
	}

	if err := b.m.SetCapabilities(context.Background(), []string{"payment"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "b's capability seen everywhere", func() bool {
		for _, x := range all {
			if len(x.m.WithCapability("payment")) != 1 {
				return false
			}
		}
		return true
	})
	ch := <-w
	if ch.Kind != Updated || ch.Member.ID != b.h.ID() || !slices.Equal(ch.Member.Capabilities, []string{"payment"}) || len(ch.Previous.Capabilities) != 0 {
		t.Fatalf("change: %+v", ch)
	}
	if err := c.m.JoinCluster(context.Background(), "eu"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "c in cluster eu everywhere", func() bool {
		return len(a.m.InCluster("eu")) == 1 && len(b.m.InCluster("eu")) == 1
	})
	if ch := <-w; ch.Kind != Updated || !slices.Equal(ch.Member.Clusters, []string{"eu"}) {
		t.Fatalf("change: %+v", ch)
	}

	sub := a.bus.Subscribe(16, event.MemberLeft)
	defer sub.Close()
	c.m.Close()
	eventually(t, 30*time.Second, "c's departure seen", func() bool { return sees([]*testMember{a, b}, a, b) })
	if ch := <-w; ch.Kind != Left || ch.Member.ID != c.h.ID() {
		t.Fatalf("change: %+v", ch)
	}
	select {
	case e := <-sub.C:
		if e.Peer != c.h.ID().String() || e.Name != "c" {
			t.Fatalf("event: %+v", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no member_left event")
	}
	// A departure is no bad frame (it was counted and logged as one).
	for _, x := range []*testMember{a, b} {
		if st := x.m.Stats(); st.DroppedInvalid != 0 {
			t.Fatalf("%s: %d invalid frames after a clean leave", x.m.Self().Name, st.DroppedInvalid)
		}
	}
}

// star starts n members, each connected only to the first, and waits
// until every one sees all.
func star(t testing.TB, n int, mod func(*Config)) []*testMember {
	t.Helper()
	var ms []*testMember
	for i := 0; i < n; i++ {
		ms = append(ms, newMember(t, fmt.Sprintf("m%d", i), mod))
		if i > 0 {
			connect(t, ms[i].h, ms[0].h)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for !sees(ms, ms...) {
		if time.Now().After(deadline) {
			for _, x := range ms {
				t.Logf("%s sees %d: %+v", x.m.Self().Name, len(x.m.List()), x.m.Stats())
			}
			t.Fatal("not every member sees every member")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return ms
}

// TestSilentFailure: a member that stops answering (frozen, as after
// kill -9 or a cut cable) is declared failed by the others once its links
// are silent for ProbeTimeout and its watchers agree; when it wakes up, it
// refutes and is a member again.
func TestSilentFailure(t *testing.T) {
	ms := star(t, 5, nil)
	victim := ms[3]
	subs := make([]*event.Subscription, len(ms))
	for i, x := range ms {
		subs[i] = x.bus.Subscribe(16, event.MemberFailed, event.MemberJoined)
		defer subs[i].Close()
	}
	// Addrs gives where to dial a live member: its record's addresses.
	if got := ms[0].m.Addrs(victim.h.ID()); len(got) == 0 || !slices.ContainsFunc(victim.h.Addrs(), got[0].Equal) {
		t.Fatalf("Addrs of a live member: %v, want some of %v", got, victim.h.Addrs())
	}
	if got := ms[0].m.Addrs(ms[0].h.ID()); got != nil {
		t.Fatalf("Addrs of the node itself: %v, want none", got)
	}
	start := time.Now()
	victim.freeze() // no heartbeat, nothing read, no packet
	frozen := true
	defer func() {
		if frozen {
			victim.thaw()
		}
	}()
	others := []*testMember{ms[0], ms[1], ms[2], ms[4]}
	for deadline := time.Now().Add(30 * time.Second); !sees(others, others...); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			for _, x := range others {
				x.m.mu.Lock()
				var view, links []string
				for id, e := range x.m.v.entries {
					view = append(view, fmt.Sprintf("%s=%d/%d", id.ShortString(), e.st, e.inc))
				}
				for id, l := range x.m.links {
					links = append(links, fmt.Sprintf("%s(up %v)", id.ShortString(), l.up()))
				}
				x.m.mu.Unlock()
				t.Logf("%s: view %v; links %v; %+v", x.m.Self().Name, view, links, x.m.Stats())
			}
			t.Fatalf("the frozen member %s not failed everywhere after 30 s", victim.h.ID().ShortString())
		}
	}
	t.Logf("silent member declared failed by all others after %v (ProbeTimeout %v)", time.Since(start).Round(time.Millisecond), fastConfig("x").ProbeTimeout)
	if got := ms[0].m.Addrs(victim.h.ID()); got != nil {
		t.Fatalf("Addrs of a failed member: %v, want none", got)
	}
	for i, x := range ms {
		if x == victim {
			continue
		}
		select {
		case e := <-subs[i].C:
			if e.Kind != event.MemberFailed || e.Peer != victim.h.ID().String() || e.Reason == "" {
				t.Fatalf("event: %+v", e)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no member_failed event")
		}
	}
	victim.thaw()
	frozen = false
	eventually(t, 30*time.Second, "the woken member is a member again", func() bool { return sees(ms, ms...) })
}

// TestStalledOnEveryTick: a node whose tick loop runs late on every tick
// (a machine under heavy load) still judges its links, with its longest
// tolerance, and concludes its suspicions, within their bound: a member
// that went silent is declared failed. (Pushing every suspicion back by
// every stall once kept a partition from ever being seen under load.)
func TestStalledOnEveryTick(t *testing.T) {
	ms := star(t, 2, nil)
	a, victim := ms[0], ms[1]
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tk := time.NewTicker(a.m.tick)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
			}
			a.m.mu.Lock()
			a.m.stalledLocked(time.Now(), 2*a.m.tick)
			a.m.mu.Unlock()
		}
	}()
	defer func() { close(stop); <-done }()
	victim.freeze()
	defer victim.thaw()
	cfg := fastConfig("x")
	bound := time.Duration(1+maxHealth) * (cfg.ProbeTimeout + cfg.SuspicionTimeout)
	start := time.Now()
	eventually(t, bound+30*time.Second, "the frozen member failed at the stalled node", func() bool { return sees([]*testMember{a}, a) })
	t.Logf("declared failed after %v by a node stalled on every tick (bound %v); health %d",
		time.Since(start).Round(time.Millisecond), bound, a.m.Stats().Health)
}

// TestStallBounds: however often a node stalls, it judges its links once
// its health is at its worst, and its suspicions conclude within
// (1+maxHealth) * SuspicionTimeout of being raised.
func TestStallBounds(t *testing.T) {
	ms := star(t, 3, nil)
	a, victim := ms[0], ms[1]
	a.m.mu.Lock()
	defer a.m.mu.Unlock()
	a.m.suspectLocked(victim.h.ID(), alertUnreachable, "test") // weak: concludes only at its deadline
	raised := time.Now()
	e := a.m.v.suspects[victim.h.ID()]
	if e == nil {
		t.Fatal("no suspicion raised")
	}
	now := raised
	for i := 0; i < 100; i++ {
		now = now.Add(time.Second)
		a.m.stalledLocked(now, time.Second)
	}
	if a.m.health != maxHealth {
		t.Fatalf("health %d after 100 stalls, want %d", a.m.health, maxHealth)
	}
	if a.m.stalledUntil.After(now) {
		t.Fatalf("links not judged after 100 stalls: stalled until %v, now %v", a.m.stalledUntil, now)
	}
	if bound := raised.Add(time.Duration(1+maxHealth) * a.m.cfg.SuspicionTimeout); e.sus.deadline.After(bound) {
		t.Fatalf("suspicion deadline %v past its bound %v", e.sus.deadline.Sub(raised), bound.Sub(raised))
	}
}

// TestManyMembers: members joined through one bootstrap all learn each
// other, and each keeps only its overlay's links once the join is over.
func TestManyMembers(t *testing.T) {
	ms := star(t, 10, nil)
	eventually(t, 30*time.Second, "links trimmed to the overlay", func() bool {
		for _, x := range ms {
			st := x.m.Stats()
			if st.Links > 2*DefaultRings || st.Links < st.Neighbours {
				return false
			}
		}
		return true
	})
	for _, x := range ms {
		st := x.m.Stats()
		t.Logf("%s: %d links, %d neighbours, %d syncs, %d frames in", x.m.Self().Name, st.Links, st.Neighbours, st.Syncs, st.FramesIn)
	}
	// A member that leaves is gone everywhere, although most were not
	// linked to it.
	ms[7].m.Close()
	rest := append(append([]*testMember{}, ms[:7]...), ms[8:]...)
	eventually(t, 30*time.Second, "departure seen everywhere", func() bool { return sees(rest, rest...) })
}

// TestClosedLinkToHungPeer: a link the overlay closes waits for the peer to
// close its stream in turn; a peer that hangs never does. Its reader is
// reset after ProbeTimeout, and Close does not wait for it (it did, for
// ever: TestChurn hung in Close when the overlay had dropped a link to a
// frozen member).
func TestClosedLinkToHungPeer(t *testing.T) {
	a := newMember(t, "a", nil)
	b := newMember(t, "b", nil)
	connect(t, a.h, b.h)
	eventually(t, 30*time.Second, "a linked to b both ways", func() bool {
		a.m.mu.Lock()
		defer a.m.mu.Unlock()
		l := a.m.links[b.h.ID()]
		return l != nil && l.up()
	})
	b.m.mu.Lock() // frozen: it reads nothing and closes nothing
	defer b.m.mu.Unlock()
	a.m.mu.Lock()
	a.m.closeLinkLocked(a.m.links[b.h.ID()])
	if len(a.m.lingering) != 1 {
		a.m.mu.Unlock()
		t.Fatalf("%d lingering readers, want 1", len(a.m.lingering))
	}
	a.m.mu.Unlock()
	eventually(t, 30*time.Second, "the hung peer's reader reset", func() bool {
		a.m.mu.Lock()
		defer a.m.mu.Unlock()
		return len(a.m.lingering) == 0
	})
	// And Close returns with a lingering reader too.
	a.m.mu.Lock()
	if l := a.m.links[b.h.ID()]; l != nil {
		a.m.closeLinkLocked(l)
	}
	a.m.mu.Unlock()
	closed := make(chan struct{})
	go func() {
		a.m.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("Close waits on the reader of a link to a hung peer")
	}
}

// A heartbeat is answered at once when ours would be due within half an
// interval, so that the two ends' travel together (each carrying QUIC's
// acknowledgement of the other's), and not otherwise; a peer that sends
// heartbeats as fast as it can gets one answer per half interval.
func TestPingAnswered(t *testing.T) {
	m := &Members{cfg: Config{ProbeInterval: time.Second, LinkQueue: 16}}
	o := newOutStream(m, &link{}, nil)
	queued := func() int {
		o.mu.Lock()
		defer o.mu.Unlock()
		return len(o.frames)
	}
	now := time.Now()
	o.answerPing(now) // ours just went (newOutStream): not due
	if n := queued(); n != 0 {
		t.Fatalf("answered a heartbeat right after sending ours: %d queued", n)
	}
	o.lastSent.Store(now.Add(-600 * time.Millisecond).UnixNano())
	o.answerPing(now)
	if n := queued(); n != 1 {
		t.Fatalf("%d heartbeats queued in answer, want 1", n)
	}
	for i := range 10 { // a flood, before the writer sent anything
		o.answerPing(now.Add(time.Duration(i) * 10 * time.Millisecond))
	}
	if n := queued(); n != 1 {
		t.Fatalf("%d heartbeats queued after a flood of pings, want 1", n)
	}
	o.answerPing(now.Add(600 * time.Millisecond))
	if n := queued(); n != 2 {
		t.Fatalf("%d heartbeats queued half an interval later, want 2", n)
	}
}
