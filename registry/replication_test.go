package registry

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Multi-node behaviour in one process, after the original's
// distributed_test.exs.

func TestRegisterReplicates(t *testing.T) {
	ns := newNodes(t, 3, nil)
	p := spawn(t, ns[0].r)
	mustRegister(t, p, "user/1", "alice")
	for _, n := range ns[1:] {
		hasName(t, n.r, "user/1", p.Addr())
		e, _ := n.r.Lookup("user/1")
		if string(e.Meta) != "alice" {
			t.Fatalf("meta %q", e.Meta)
		}
	}
	// A node's registration is refused where it is known to be taken.
	q := spawn(t, ns[1].r)
	var te *TakenError
	if err := q.Register("user/1", nil); !errors.As(err, &te) || te.Owner != p.Addr() {
		t.Fatalf("Register of a name taken on another node: %v", err)
	}
	if err := p.Unregister("user/1"); err != nil {
		t.Fatal(err)
	}
	for _, n := range ns[1:] {
		hasName(t, n.r, "user/1", Addr{})
	}
}

func TestJoinReplicates(t *testing.T) {
	ns := newNodes(t, 3, nil)
	for i, n := range ns {
		mustJoin(t, spawn(t, n.r), "room/1", fmt.Sprint(i))
	}
	s := converged(t, ns)
	if strings.Count(s, "member room/1") != 3 {
		t.Fatalf("state:\n%s", s)
	}
}

func TestLateJoinerGetsState(t *testing.T) {
	ns := newNodes(t, 2, nil)
	for i := range 100 {
		mustJoin(t, spawn(t, ns[i%2].r), fmt.Sprintf("room/%d", i%7), "m")
	}
	mustRegister(t, spawn(t, ns[0].r), "user/1", "u")
	late := newNodes(t, 1, nil)[0]
	link(t, late, ns[0])
	link(t, late, ns[1])
	s := converged(t, append(ns, late))
	if strings.Count(s, " member ") != 100 || !strings.Contains(s, "name user/1") {
		t.Fatalf("state:\n%s", s)
	}
}

func TestRemoteEventsReachMonitors(t *testing.T) {
	ns := newNodes(t, 2, nil)
	m := monitor(t, ns[1].r, "user/")
	p := spawn(t, ns[0].r)
	mustRegister(t, p, "user/1", "v1")
	if b := next(t, m); b.Events[0].Kind != Registered || b.Events[0].Addr != p.Addr() || string(b.Events[0].Meta) != "v1" {
		t.Fatalf("batch %v", b.Events)
	}
	// In order: register, update, unregister.
	mustRegister(t, p, "user/1", "v2")
	if err := p.Unregister("user/1"); err != nil {
		t.Fatal(err)
	}
	var got []string
	for len(got) == 0 || !strings.HasPrefix(got[len(got)-1], "unregistered") {
		for _, e := range next(t, m).Events {
			got = append(got, fmt.Sprintf("%s %s %s", e.Kind, e.Meta, e.Reason))
		}
	}
	// The update and the removal may come in one batch, or the update may
	// be folded away by a delta that carries only the removal.
	want := []string{"registered v2 ", "unregistered v2 unregistered"}
	if !slices.Equal(got, want) && !slices.Equal(got, []string{"unregistered v1 unregistered"}) {
		t.Fatalf("events %q", got)
	}
}

func TestDeadNodeEntriesGo(t *testing.T) {
	ns := newNodes(t, 3, nil)
	p := spawn(t, ns[2].r)
	mustRegister(t, p, "user/dead", "")
	for i := range 10 {
		mustJoin(t, spawn(t, ns[2].r), "room/dead", fmt.Sprint(i))
	}
	mustJoin(t, spawn(t, ns[0].r), "room/dead", "alive")
	converged(t, ns)
	m := monitor(t, ns[0].r, "")
	// A crash: the host goes without the registry saying goodbye.
	ns[2].h.Close()
	hasName(t, ns[0].r, "user/dead", Addr{})
	memberCount(t, ns[1].r, "room/dead", 1)
	b := next(t, m)
	if len(b.Events) != 11 {
		t.Fatalf("the loss of a node is one batch: %d events", len(b.Events))
	}
	for _, e := range b.Events {
		if e.Reason != ReasonNodeDown {
			t.Fatalf("event %v", e)
		}
	}
}

func TestCleanLeaveIsImmediate(t *testing.T) {
	ns := newNodes(t, 2, nil)
	mustRegister(t, spawn(t, ns[1].r), "user/leaving", "")
	hasName(t, ns[0].r, "user/leaving", Addr{Node: ns[1].h.ID()}.withAny(ns[0].r, "user/leaving"))
	m := monitor(t, ns[0].r, "")
	ns[1].r.Close()
	b := next(t, m)
	if len(b.Events) != 1 || (b.Events[0].Reason != ReasonNodeLeft && b.Events[0].Reason != ReasonRegistryClosed) {
		t.Fatalf("batch %v", b.Events)
	}
}

// withAny returns the current owner of key in r if it is on a.Node; used
// where only the node is known.
func (a Addr) withAny(r *Registry, key string) Addr {
	var got Addr
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		if e, err := r.Lookup(key); err == nil && e.Addr.Node == a.Node {
			return e.Addr
		}
		time.Sleep(5 * time.Millisecond)
	}
	return got
}

func TestProcessDeathReplicatesAsOneBatch(t *testing.T) {
	ns := newNodes(t, 2, nil)
	p := spawn(t, ns[0].r)
	for i := range 40 {
		mustJoin(t, p, fmt.Sprintf("g/%d", i), "")
	}
	mustRegister(t, p, "n/1", "")
	converged(t, ns)
	m := monitor(t, ns[1].r, "")
	before := ns[1].r.Stats().DeltasApplied
	p.Close()
	b := next(t, m)
	if len(b.Events) != 41 {
		t.Fatalf("%d events in the batch", len(b.Events))
	}
	if d := ns[1].r.Stats().DeltasApplied - before; d != 1 {
		t.Fatalf("%d deltas for one process end", d)
	}
}

func TestNoStaleEntriesAfterRapidDeaths(t *testing.T) {
	ns := newNodes(t, 3, nil)
	for i := range 200 {
		p, err := ns[i%3].r.Spawn(context.Background(), ProcessConfig{})
		if err != nil {
			t.Fatal(err)
		}
		_ = p.Register(fmt.Sprintf("tmp/%d", i), nil)
		_ = p.Join("tmp/group", nil)
		p.Close()
	}
	keep := spawn(t, ns[0].r)
	mustJoin(t, keep, "tmp/group", "")
	s := converged(t, ns)
	if strings.Count(s, "\n") != 1 {
		t.Fatalf("stale entries:\n%s", s)
	}
}

func TestConcurrentSameNameAcrossNodes(t *testing.T) {
	ns := newNodes(t, 3, nil)
	var procs []*Process
	for _, n := range ns {
		procs = append(procs, spawn(t, n.r))
	}
	start := make(chan struct{})
	errs := make(chan error, 3)
	for _, p := range procs {
		go func() {
			<-start
			errs <- p.Register("the/one", []byte(p.Addr().Node.String()))
		}()
	}
	close(start)
	for range procs {
		if err := <-errs; err != nil && !errors.Is(err, ErrTaken) {
			t.Fatal(err)
		}
	}
	s := converged(t, ns)
	if strings.Count(s, "name the/one") != 1 {
		t.Fatalf("state:\n%s", s)
	}
	// Exactly one holds it in its own stream; the others withdrew.
	owners := 0
	for _, n := range ns {
		n.r.def.mu.Lock()
		for id := range n.r.def.own.entries {
			if id.key == "the/one" {
				owners++
			}
		}
		n.r.def.mu.Unlock()
	}
	if owners != 1 {
		t.Fatalf("%d nodes hold the name", owners)
	}
}

func TestPartitionConflictResolvedAndLoserTold(t *testing.T) {
	ns := newNodes(t, 2, nil)
	a, b := ns[0], ns[1]
	// a's name is older: it keeps it after the heal.
	pa := spawn(t, a.r)
	cut(a, b)
	mustRegister(t, pa, "leader", "a")
	time.Sleep(5 * time.Millisecond) // a later stamp on b (1 ms resolution)
	pb := spawn(t, b.r)
	mustRegister(t, pb, "leader", "b")
	mb := monitor(t, b.r, "leader")
	link(t, a, b)
	s := converged(t, ns)
	if !strings.Contains(s, "name leader "+pa.Addr().String()) {
		t.Fatalf("state:\n%s", s)
	}
	select {
	case m := <-pb.Messages():
		if m.Kind != MessageLost || m.Key != "leader" || m.Winner != pa.Addr() || !strings.Contains(m.Reason, "won by") {
			t.Fatalf("notice %+v", m)
		}
	case <-time.After(wait):
		t.Fatal("the loser was not told")
	}
	var saw bool
	for !saw {
		for _, e := range next(t, mb).Events {
			if e.Kind == Unregistered && e.Addr == pb.Addr() && e.Reason == ReasonConflict {
				saw = true
			}
		}
	}
	if b.r.Stats().Conflicts != 1 || a.r.Stats().Conflicts != 0 {
		t.Fatalf("conflicts a=%d b=%d", a.r.Stats().Conflicts, b.r.Stats().Conflicts)
	}
}

func TestCustomResolver(t *testing.T) {
	// The registration whose metadata says "priority" wins, whenever made.
	res := func(_, _ string, a, b Candidate) Addr {
		if string(b.Meta) == "priority" {
			return b.Addr
		}
		return a.Addr
	}
	ns := newNodes(t, 2, func(c *Config) { c.Resolve = res })
	a, b := ns[0], ns[1]
	cut(a, b)
	pa := spawn(t, a.r)
	mustRegister(t, pa, "svc", "plain")
	time.Sleep(5 * time.Millisecond)
	pb := spawn(t, b.r)
	mustRegister(t, pb, "svc", "priority")
	link(t, a, b)
	s := converged(t, ns)
	if !strings.Contains(s, "name svc "+pb.Addr().String()) {
		t.Fatalf("state:\n%s", s)
	}
	if m := <-pa.Messages(); m.Kind != MessageLost || !strings.Contains(m.Reason, "resolver") {
		t.Fatalf("notice %+v", m)
	}
}

func TestResolverPanicFallsBack(t *testing.T) {
	ns := newNodes(t, 2, func(c *Config) {
		c.Resolve = func(_, _ string, _, _ Candidate) Addr { panic("resolver bug") }
	})
	a, b := ns[0], ns[1]
	cut(a, b)
	pa := spawn(t, a.r)
	mustRegister(t, pa, "svc", "")
	time.Sleep(5 * time.Millisecond)
	mustRegister(t, spawn(t, b.r), "svc", "")
	link(t, a, b)
	if s := converged(t, ns); !strings.Contains(s, "name svc "+pa.Addr().String()) {
		t.Fatalf("state:\n%s", s)
	}
}

func TestHealSyncsBothSides(t *testing.T) {
	ns := newNodes(t, 3, nil)
	a, b, c := ns[0], ns[1], ns[2]
	pa, pc := spawn(t, a.r), spawn(t, c.r)
	mustJoin(t, pa, "room/1", "a")
	mustJoin(t, pc, "room/1", "c")
	mustRegister(t, pa, "user/a", "")
	converged(t, ns)
	// a alone on one side, b and c on the other.
	cut(a, b)
	cut(a, c)
	mustJoin(t, pa, "room/2", "a")
	if err := pa.Unregister("user/a"); err != nil {
		t.Fatal(err)
	}
	mustRegister(t, pc, "user/c", "")
	if err := pc.Leave("room/1"); err != nil {
		t.Fatal(err)
	}
	link(t, a, b)
	link(t, a, c)
	s := converged(t, ns)
	want := []string{
		"name user/c " + pc.Addr().String(),
		"member room/1 " + pa.Addr().String(),
		"member room/2 " + pa.Addr().String(),
	}
	for _, w := range want {
		if !strings.Contains(s, w) {
			t.Fatalf("missing %q in\n%s", w, s)
		}
	}
	if strings.Count(s, "\n") != 3 {
		t.Fatalf("state:\n%s", s)
	}
}

func TestFlapping(t *testing.T) {
	ns := newNodes(t, 2, nil)
	a, b := ns[0], ns[1]
	pa := spawn(t, a.r)
	for i := range 5 {
		mustJoin(t, pa, fmt.Sprintf("flap/%d", i), "")
		cut(a, b)
		mustJoin(t, spawn(t, b.r), fmt.Sprintf("flap/%d", i), "b")
		link(t, a, b)
	}
	s := converged(t, ns)
	if strings.Count(s, "member flap/") != 10 {
		t.Fatalf("state:\n%s", s)
	}
}

func TestClusterIsolationAcrossNodes(t *testing.T) {
	ns := newNodes(t, 3, nil)
	ctx := context.Background()
	for _, n := range ns[:2] {
		if err := n.r.Connect(ctx, "game"); err != nil {
			t.Fatal(err)
		}
	}
	p0 := spawn(t, ns[0].r)
	mustJoin(t, p0, "room/1", "game", InCluster("game"))
	mustJoin(t, p0, "room/1", "default")
	memberCount(t, ns[1].r, "room/1", 1, InCluster("game"))
	// The node outside the cluster sees the default cluster only, and was
	// never sent the cluster's entries.
	memberCount(t, ns[2].r, "room/1", 1)
	if ms, _ := ns[2].r.Members("room/1"); string(ms[0].Meta) != "default" {
		t.Fatalf("default members on c: %v", ms)
	}
	nodes, _ := ns[0].r.Nodes(InCluster("game"))
	if len(nodes) != 2 || slices.Contains(nodes, ns[2].h.ID()) {
		t.Fatalf("nodes of game: %v", nodes)
	}
	// c joins later and gets the cluster's state.
	if err := ns[2].r.Connect(ctx, "game"); err != nil {
		t.Fatal(err)
	}
	memberCount(t, ns[2].r, "room/1", 1, InCluster("game"))
	// b leaves: its view of the cluster goes, and so do its entries on
	// the others, with reason cluster_left.
	mustJoin(t, spawn(t, ns[1].r), "room/1", "b", InCluster("game"))
	memberCount(t, ns[0].r, "room/1", 2, InCluster("game"))
	m := monitor(t, ns[0].r, "", InCluster("game"))
	if err := ns[1].r.Disconnect(ctx, "game"); err != nil {
		t.Fatal(err)
	}
	if b := next(t, m); b.Events[0].Reason != ReasonClusterLeft {
		t.Fatalf("batch %v", b.Events)
	}
	memberCount(t, ns[2].r, "room/1", 1, InCluster("game"))
	// Writes after leaving do not reach it.
	mustJoin(t, spawn(t, ns[0].r), "room/9", "", InCluster("game"))
	memberCount(t, ns[2].r, "room/9", 1, InCluster("game"))
	if _, err := ns[1].r.Members("room/9", InCluster("game")); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("members on b: %v", err)
	}
	// And it can come back.
	if err := ns[1].r.Connect(ctx, "game"); err != nil {
		t.Fatal(err)
	}
	memberCount(t, ns[1].r, "room/9", 1, InCluster("game"))
	converged(t, ns, "game")
}

func TestDispatchOneMessagePerNode(t *testing.T) {
	ns := newNodes(t, 3, nil)
	var procs []*Process
	for i, n := range ns {
		for range 5 {
			p := spawn(t, n.r)
			mustJoin(t, p, "fan/out", fmt.Sprint(i))
			procs = append(procs, p)
		}
	}
	memberCount(t, ns[0].r, "fan/out", 15)
	before := ns[0].r.Stats().MessagesSent
	n, err := ns[0].r.Dispatch(context.Background(), "fan/out", []byte("hi"))
	if err != nil || n != 15 {
		t.Fatalf("Dispatch = %d, %v", n, err)
	}
	if d := ns[0].r.Stats().MessagesSent - before; d != 2 {
		t.Fatalf("%d network messages for 2 other nodes", d)
	}
	for _, p := range procs {
		select {
		case m := <-p.Messages():
			if string(m.Payload) != "hi" || m.Key != "fan/out" {
				t.Fatalf("message %+v", m)
			}
		case <-time.After(wait):
			t.Fatalf("%v got nothing", p.Addr())
		}
	}
}

func TestSendAcrossNodes(t *testing.T) {
	ns := newNodes(t, 2, nil)
	got := make(chan Message, 1)
	h, err := ns[1].r.Spawn(context.Background(), ProcessConfig{Handler: func(_ context.Context, m Message) { got <- m }})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	p := spawn(t, ns[0].r)
	if err := p.Send(context.Background(), h.Addr(), []byte("ping")); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if string(m.Payload) != "ping" || m.From != p.Addr() {
			t.Fatalf("got %+v", m)
		}
	case <-time.After(wait):
		t.Fatal("no message")
	}
	// A node that is gone: a typed error.
	gone := Addr{Node: peer.ID("12D3KooWGoneGoneGoneGone"), ID: 7}
	if err := p.Send(context.Background(), gone, nil); !errors.Is(err, ErrNodeGone) {
		t.Fatalf("send to a gone node: %v", err)
	}
	ns[1].h.Close()
	eventually(t, wait, "the link to close", func() bool {
		return errors.Is(p.Send(context.Background(), h.Addr(), nil), ErrNodeGone)
	})
}

func TestNodesTracksPeers(t *testing.T) {
	ns := newNodes(t, 3, nil)
	nodes, _ := ns[0].r.Nodes()
	if len(nodes) != 3 {
		t.Fatalf("nodes %v", nodes)
	}
	ns[2].r.Close()
	eventually(t, wait, "the closed node to go", func() bool {
		nodes, _ := ns[0].r.Nodes()
		return len(nodes) == 2
	})
}

func TestBatchedReplication(t *testing.T) {
	ns := newNodes(t, 2, nil)
	p := spawn(t, ns[0].r)
	before := ns[1].r.Stats().FramesReceived
	for i := range 2000 {
		mustJoin(t, p, fmt.Sprintf("batch/%d", i), "")
	}
	memberCount(t, ns[1].r, "batch/", 2000)
	frames := ns[1].r.Stats().FramesReceived - before
	t.Logf("2000 joins in %d frames", frames)
	if frames >= 2000 {
		t.Fatalf("%d frames for 2000 joins: not batched", frames)
	}
}

func TestChattyConvergence(t *testing.T) {
	ns := newNodes(t, 3, nil)
	ctx := context.Background()
	clusters := []string{"c1", "c2"}
	for i, n := range ns {
		for _, c := range clusters[:1+i%2] {
			if err := n.r.Connect(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Everyone in c1, nodes 1 in c2 too (and 0 and 2 only c1): so c2
	// has one node. Churn: processes come and go, register, join, leave,
	// dispatch, across clusters.
	done := make(chan struct{})
	for i, n := range ns {
		go func() {
			defer func() { done <- struct{}{} }()
			var live []*Process
			for j := range 300 {
				switch j % 5 {
				case 0, 1:
					p, err := n.r.Spawn(ctx, ProcessConfig{})
					if err != nil {
						t.Error(err)
						return
					}
					live = append(live, p)
					_ = p.Join(fmt.Sprintf("room/%d", j%13), []byte("x"))
					_ = p.Register(fmt.Sprintf("n%d/%d", i, j), nil, InCluster("c1"))
				case 2:
					if len(live) > 0 {
						live[0].Close()
						live = live[1:]
					}
				case 3:
					_, _ = n.r.Dispatch(ctx, "room/", []byte("tick"))
				case 4:
					if len(live) > 0 {
						_ = live[len(live)-1].Leave(fmt.Sprintf("room/%d", (j-4)%13))
						_ = live[len(live)-1].Join("room/x", nil, InCluster("c1"))
					}
				}
			}
		}()
	}
	for range ns {
		<-done
	}
	s := converged(t, ns, "c1")
	if !strings.Contains(s, "member room/") {
		t.Fatalf("state:\n%s", s)
	}
	for _, n := range ns {
		if st := n.r.Stats(); st.BadFrames != 0 {
			t.Fatalf("bad frames: %+v", st)
		}
	}
}
