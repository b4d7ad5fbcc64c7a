package registry

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/macula-io/macula/access"
	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/member"
	"github.com/macula-io/macula/ucan"
)

// With a membership, a node's liveness comes from the membership, and
// entries of nodes this one is not linked to arrive through the nodes it
// is linked to.

func TestRelayThroughNeighbour(t *testing.T) {
	// a - b - c: a and c are not linked.
	ns := newMemberNodes(t, 3, [][2]int{{0, 1}, {1, 2}}, nil)
	a, c := ns[0], ns[2]
	p := spawn(t, a.r)
	mustRegister(t, p, "user/far", "a")
	mustJoin(t, p, "room/far", "a")
	hasName(t, c.r, "user/far", p.Addr())
	memberCount(t, c.r, "room/far", 1)
	q := spawn(t, c.r)
	mustJoin(t, q, "room/far", "c")
	memberCount(t, a.r, "room/far", 2)
	if err := p.Unregister("user/far"); err != nil {
		t.Fatal(err)
	}
	hasName(t, c.r, "user/far", Addr{})
	converged(t, ns)
	if st := c.r.Stats(); st.DroppedRelayed != 0 {
		t.Fatalf("relayed entries dropped: %+v", st)
	}
}

func TestMembershipDecidesLiveness(t *testing.T) {
	ns := newMemberNodes(t, 3, nil, nil)
	a, b, c := ns[0], ns[1], ns[2]
	p := spawn(t, c.r)
	mustRegister(t, p, "user/c", "")
	mustJoin(t, p, "room/c", "")
	converged(t, ns)
	m := monitor(t, a.r, "")
	// c's connections go, but the membership still says it is alive
	// (it may be reachable through others): its entries stay.
	cut(a, c)
	cut(b, c)
	time.Sleep(200 * time.Millisecond)
	if _, err := a.r.Lookup("user/c"); err != nil {
		t.Fatalf("entries went with the links: %v", err)
	}
	quiet(t, m)
	// c crashes (its host goes, its registry says nothing), and the
	// membership says it failed: its entries go, as one batch.
	c.h.Close()
	a.m.drop(c.h.ID(), member.Failed)
	b.m.drop(c.h.ID(), member.Failed)
	bt := next(t, m)
	if len(bt.Events) != 2 || bt.Events[0].Reason != ReasonNodeDown {
		t.Fatalf("batch %v", bt.Events)
	}
	hasName(t, b.r, "user/c", Addr{})
	// And b does not bring them back to a.
	time.Sleep(200 * time.Millisecond)
	if _, err := a.r.Lookup("user/c"); err == nil {
		t.Fatal("c's entries came back")
	}
	// A clean leave: reason node_left.
	mustJoin(t, spawn(t, b.r), "room/b", "")
	memberCount(t, a.r, "room/b", 1)
	next(t, m) // the join
	a.m.drop(b.h.ID(), member.Left)
	if bt := next(t, m); bt.Events[len(bt.Events)-1].Reason != ReasonNodeLeft {
		t.Fatalf("batch %v", bt.Events)
	}
}

func TestMembershipFailureWithLiveLink(t *testing.T) {
	// The membership says b failed while a's link to it still works (a
	// false suspicion): b's entries go, then come back through the link
	// (the next digest shows a lacks them).
	ns := newMemberNodes(t, 2, nil, nil)
	a, b := ns[0], ns[1]
	p := spawn(t, b.r)
	mustRegister(t, p, "user/b", "")
	hasName(t, a.r, "user/b", p.Addr())
	m := monitor(t, a.r, "user/")
	a.m.drop(b.h.ID(), member.Failed)
	if bt := next(t, m); bt.Events[0].Kind != Unregistered || bt.Events[0].Reason != ReasonNodeDown {
		t.Fatalf("batch %v", bt.Events)
	}
	a.m.set(member.Member{ID: b.h.ID()})
	if bt := next(t, m); bt.Events[0].Kind != Registered || bt.Events[0].Addr != p.Addr() {
		t.Fatalf("batch %v", bt.Events)
	}
	hasName(t, a.r, "user/b", p.Addr())
}

func TestMembershipClusterUpdate(t *testing.T) {
	ns := newMemberNodes(t, 2, nil, nil)
	a, b := ns[0], ns[1]
	ctx := context.Background()
	for _, n := range ns {
		if err := n.r.Connect(ctx, "game"); err != nil {
			t.Fatal(err)
		}
	}
	nodes, _ := a.r.Nodes(InCluster("game"))
	if len(nodes) != 2 {
		t.Fatalf("nodes %v", nodes)
	}
	mustJoin(t, spawn(t, b.r), "room/1", "", InCluster("game"))
	memberCount(t, a.r, "room/1", 1, InCluster("game"))
	if err := b.r.Disconnect(ctx, "game"); err != nil {
		t.Fatal(err)
	}
	memberCount(t, a.r, "room/1", 0, InCluster("game"))
	nodes, _ = a.r.Nodes(InCluster("game"))
	if len(nodes) != 1 || nodes[0] != a.h.ID() {
		t.Fatalf("nodes after disconnect %v", nodes)
	}
}

func TestPartitionHealWithMembership(t *testing.T) {
	// a | b c: both sides write, the membership declares the other side
	// failed, then everything heals.
	ns := newMemberNodes(t, 3, nil, nil)
	a, b, c := ns[0], ns[1], ns[2]
	pa, pb := spawn(t, a.r), spawn(t, b.r)
	mustRegister(t, pa, "old/a", "")
	mustJoin(t, pb, "room/1", "b")
	converged(t, ns)
	cut(a, b)
	cut(a, c)
	a.m.drop(b.h.ID(), member.Failed)
	a.m.drop(c.h.ID(), member.Failed)
	b.m.drop(a.h.ID(), member.Failed)
	c.m.drop(a.h.ID(), member.Failed)
	mustRegister(t, pa, "cut/a", "")
	mustRegister(t, pa, "both", "a")
	time.Sleep(5 * time.Millisecond)
	mustRegister(t, pb, "cut/b", "")
	mustRegister(t, pb, "both", "b")
	if err := pb.Leave("room/1"); err != nil {
		t.Fatal(err)
	}
	hasName(t, c.r, "cut/b", pb.Addr())
	// Heal.
	a.m.set(member.Member{ID: b.h.ID()})
	a.m.set(member.Member{ID: c.h.ID()})
	b.m.set(member.Member{ID: a.h.ID()})
	c.m.set(member.Member{ID: a.h.ID()})
	link(t, a, b)
	link(t, a, c)
	s := converged(t, ns)
	for _, w := range []string{"name old/a " + pa.Addr().String(), "name cut/a", "name cut/b", "name both " + pa.Addr().String()} {
		if !strings.Contains(s, w) {
			t.Fatalf("missing %q in\n%s", w, s)
		}
	}
	if strings.Contains(s, "room/1") {
		t.Fatalf("a removed membership came back:\n%s", s)
	}
	if m := <-pb.Messages(); m.Kind != MessageLost || m.Key != "both" {
		t.Fatalf("notice %+v", m)
	}
}

func TestRelayedStateIsBounded(t *testing.T) {
	// A node that sends more than MaxOriginEntries is cut off, counted.
	ns := newMemberNodes(t, 2, nil, func(c *Config) { c.MaxOriginEntries = 50 })
	p := spawn(t, ns[0].r)
	for i := range 60 {
		mustJoin(t, p, fmt.Sprintf("many/%d", i), "")
	}
	eventually(t, wait, "the drop to be counted", func() bool { return ns[1].r.Stats().DroppedOverLimit > 0 })
	if ms, _ := ns[1].r.Members("many/"); len(ms) > 50 {
		t.Fatalf("%d entries kept", len(ms))
	}
}

func TestDialsUnlinkedMembers(t *testing.T) {
	// A secure realm, a - b - c: a knows c from the membership (and c's
	// addresses, as the DHT would give them) and connects to it, so that
	// c's entries come from c itself (a secure realm takes them from no
	// other node).
	auth := newAuthority(t)
	var tabs []*access.Table
	ns := newMemberNodes(t, 3, [][2]int{{0, 1}, {1, 2}}, func(c *Config) {
		tab := access.NewTable(nil)
		tabs = append(tabs, tab)
		c.Access = tab
	})
	g := grant{ucan.Register, testRealm + ".direct.>"}
	for i, n := range ns {
		tabs[i].SetSelf(auth.verdict(t, n.h.ID(), g))
		for j, o := range ns {
			if i != j {
				tabs[i].Set(o.h.ID(), auth.verdict(t, o.h.ID(), g))
			}
		}
	}
	a, c := ns[0], ns[2]
	a.h.Peerstore().AddAddrs(c.h.ID(), c.h.Addrs(), time.Hour)
	waitLinked(t, a, c)
	p := spawn(t, c.r)
	mustRegister(t, p, "direct/c", "")
	hasName(t, a.r, "direct/c", p.Addr())
	// The link is tagged, so that the node's trimming of idle connections
	// keeps it (c's entries come from c only).
	if a.h.ConnManager().GetTagInfo(c.h.ID()).Tags[ConnTag] == 0 {
		t.Fatal("a secure realm's registry link is not tagged in the connection manager")
	}
}

// An open realm does not dial its members: a - b - c, a knows c's
// addresses, and c's entries reach a through b, with no connection
// between a and c (dialing every member made a full mesh).
func TestOpenRealmRelaysWithoutDialing(t *testing.T) {
	ns := newMemberNodes(t, 3, [][2]int{{0, 1}, {1, 2}}, nil)
	a, c := ns[0], ns[2]
	a.h.Peerstore().AddAddrs(c.h.ID(), c.h.Addrs(), time.Hour)
	p := spawn(t, c.r)
	mustRegister(t, p, "relayed/c", "")
	hasName(t, a.r, "relayed/c", p.Addr())
	time.Sleep(10 * 50 * time.Millisecond) // ten ticks, each of which would have dialed
	if a.h.Network().Connectedness(c.h.ID()) == network.Connected {
		t.Fatal("a connected to c: an open realm's registry dialed a member")
	}
	// Its links are not tagged: connections that are not otherwise used
	// may be trimmed, entries are relayed.
	if ti := a.h.ConnManager().GetTagInfo(ns[1].h.ID()); ti != nil && ti.Tags[ConnTag] != 0 {
		t.Fatal("an open realm's registry link is tagged")
	}
}

// Reading the registry's peers (Stats, the API's node list) while digests
// arrive must not stop replication: onDigest once took the replication's
// lock under a link's, and linkedPeers takes them the other way round.
func TestStatsWhileDigestsArrive(t *testing.T) {
	ns := newMemberNodes(t, 3, nil, func(c *Config) { c.AntiEntropy = 10 * time.Millisecond })
	for i, n := range ns {
		mustRegister(t, spawn(t, n.r), fmt.Sprintf("user/%d", i), "")
	}
	converged(t, ns)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for end := time.Now().Add(2 * time.Second); time.Now().Before(end); {
			for _, n := range ns {
				_ = n.r.Stats()
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Stats blocked: the registry's locks are stuck")
	}
	p := spawn(t, ns[0].r)
	mustRegister(t, p, "user/after", "")
	hasName(t, ns[2].r, "user/after", p.Addr())
}

// idleRealm starts three linked nodes with an AntiEntropy of 50 ms, each
// with a name, and returns once they converged and their eager digests
// ended.
func idleRealm(t *testing.T) []*tnode {
	ns := newMemberNodes(t, 3, nil, func(c *Config) { c.AntiEntropy = 50 * time.Millisecond })
	for i, n := range ns {
		mustRegister(t, spawn(t, n.r), fmt.Sprintf("user/%d", i), "")
	}
	converged(t, ns)
	time.Sleep((eagerTicks + 2) * 50 * time.Millisecond) // the eager windows end
	return ns
}

// An idle realm's links stay quiet: digests go out when what a node holds
// changed, while a peer's digest differs, and every quietTicks ticks, not
// on every tick; a change still reaches every node at once.
func TestIdleLinksQuiet(t *testing.T) {
	ns := idleRealm(t)
	before := make([]uint64, len(ns))
	for i, n := range ns {
		before[i] = n.r.Stats().FramesSent
	}
	const ticks = 20 // under quietTicks: at most one repair digest per link
	time.Sleep(ticks * 50 * time.Millisecond)
	for i, n := range ns {
		if sent := n.r.Stats().FramesSent - before[i]; sent > 2*2 {
			t.Errorf("node %d sent %d frames to its 2 peers in %d idle ticks (one digest per tick would be %d)", i, sent, ticks, 2*ticks)
		}
	}
	p := spawn(t, ns[0].r)
	mustRegister(t, p, "user/late", "")
	for _, n := range ns[1:] {
		hasName(t, n.r, "user/late", p.Addr())
	}
}

// An idle node's anti-entropy loop sleeps longer and longer (up to
// idleRounds intervals) instead of waking every interval; a change wakes it
// again, and the change's digests still go out.
func TestIdleAntiEntropySleeps(t *testing.T) {
	ns := idleRealm(t)
	before := make([]uint64, len(ns))
	for i, n := range ns {
		before[i] = n.r.repl.rounds.Load()
	}
	const intervals = 40
	time.Sleep(intervals * 50 * time.Millisecond)
	for i, n := range ns {
		// Sleeping 1, 2, 4, then 8 intervals: about 7 rounds in 40
		// intervals (a round a tick would be 40).
		if rounds := n.r.repl.rounds.Load() - before[i]; rounds > intervals/3 {
			t.Errorf("node %d ran %d anti-entropy rounds in %d idle intervals", i, rounds, intervals)
		}
	}
	r0 := ns[0].r.repl.rounds.Load()
	fp := ns[0].r.fingerprint()
	p := spawn(t, ns[0].r)
	mustRegister(t, p, "user/woken", "")
	for _, n := range ns[1:] {
		hasName(t, n.r, "user/woken", p.Addr())
	}
	// The change woke the loop, which sent the new digests: every link
	// has the new fingerprint's.
	testnet.Eventually(t, 10*time.Second, func() error {
		if ns[0].r.repl.rounds.Load() == r0 {
			return errors.New("no anti-entropy round after the change")
		}
		now := ns[0].r.fingerprint()
		if now == fp {
			return errors.New("the fingerprint did not change")
		}
		for _, l := range ns[0].r.allLinks() {
			l.mu.Lock()
			got := l.digestFP
			l.mu.Unlock()
			if got != now {
				return fmt.Errorf("the link to %s has the digests of %x, not %x", l.id, got, now)
			}
		}
		return nil
	})
}
