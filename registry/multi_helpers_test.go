package registry

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/member"
)

// tnode is a registry on its own loopback host.
type tnode struct {
	h host.Host
	r *Registry
	m *fakeMembers // nil when the registry runs without a membership
}

// newNodes starts n registries, links them all to each other, and waits
// until every one has a link to every other.
func newNodes(t testing.TB, n int, mod func(*Config)) []*tnode {
	t.Helper()
	var out []*tnode
	for range n {
		h := testnet.Host(t)
		cfg := Config{Realm: testRealm, Logger: quietLogger(), AntiEntropy: 50 * time.Millisecond}
		if mod != nil {
			mod(&cfg)
		}
		r, err := New(h, nil, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		out = append(out, &tnode{h: h, r: r})
	}
	meshAll(t, out)
	return out
}

func meshAll(t testing.TB, ns []*tnode) {
	t.Helper()
	for i, a := range ns {
		for _, b := range ns[i+1:] {
			link(t, a, b)
		}
	}
}

// link connects a and b and waits until each has a registry link to the
// other.
func link(t testing.TB, a, b *tnode) {
	t.Helper()
	testnet.Connect(t, a.h, b.h)
	waitLinked(t, a, b)
}

func waitLinked(t testing.TB, a, b *tnode) {
	t.Helper()
	eventually(t, wait, "registry link", func() bool {
		return slices.Contains(a.r.linkedPeers(""), b.h.ID()) && slices.Contains(b.r.linkedPeers(""), a.h.ID())
	})
}

// cut closes every connection between a and b (without the registries
// saying goodbye).
func cut(a, b *tnode) {
	a.h.Network().ClosePeer(b.h.ID())
	b.h.Network().ClosePeer(a.h.ID())
}

// dump is a registry's view, as text, for comparing nodes.
func dump(t testing.TB, r *Registry, clusters ...string) string {
	t.Helper()
	var sb strings.Builder
	for _, c := range append([]string{""}, clusters...) {
		names, err := r.Names("", InCluster(c))
		if err != nil {
			t.Fatalf("dump: %v", err)
		}
		for _, e := range names {
			fmt.Fprintf(&sb, "%s name %s %s %q\n", c, e.Key, e.Addr, e.Meta)
		}
		ms, _ := r.Members("", InCluster(c))
		for _, m := range ms {
			fmt.Fprintf(&sb, "%s member %s %s %q\n", c, m.Key, m.Addr, m.Meta)
		}
	}
	return sb.String()
}

// converged waits until every node shows the same state, and returns it.
func converged(t testing.TB, ns []*tnode, clusters ...string) string {
	t.Helper()
	var last []string
	deadline := time.Now().Add(wait)
	for {
		last = last[:0]
		for _, n := range ns {
			last = append(last, dump(t, n.r, clusters...))
		}
		same := true
		for _, s := range last[1:] {
			same = same && s == last[0]
		}
		if same {
			return last[0]
		}
		if time.Now().After(deadline) {
			for i, s := range last {
				t.Logf("node %d:\n%s", i, s)
			}
			t.Fatal("the nodes did not converge")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// hasName waits until r sees key registered to want (zero: not at all).
func hasName(t testing.TB, r *Registry, key string, want Addr, opts ...Option) {
	t.Helper()
	eventually(t, wait, fmt.Sprintf("%s -> %s", key, want), func() bool {
		e, err := r.Lookup(key, opts...)
		if want.IsZero() {
			return err != nil
		}
		return err == nil && e.Addr == want
	})
}

// memberCount waits until r sees n members of key.
func memberCount(t testing.TB, r *Registry, key string, n int, opts ...Option) {
	t.Helper()
	eventually(t, wait, fmt.Sprintf("%d members of %s", n, key), func() bool {
		ms, err := r.Members(key, opts...)
		return err == nil && len(ms) == n
	})
}

// fakeMembers is an in-process membership for unit tests: the test says
// who is alive and in which clusters, as the realm's membership service
// would.
type fakeMembers struct {
	self peer.ID

	mu       sync.Mutex
	nodes    map[peer.ID]member.Member
	watchers []chan member.Change
	peers    []*fakeMembers // the other nodes' fakes, told of our cluster changes
}

func newFakeMembers(self peer.ID) *fakeMembers {
	return &fakeMembers{self: self, nodes: map[peer.ID]member.Member{self: {ID: self}}}
}

func (f *fakeMembers) List() []member.Member {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]member.Member, 0, len(f.nodes))
	for _, n := range f.nodes {
		out = append(out, n)
	}
	return out
}

func (f *fakeMembers) Watch(ctx context.Context) <-chan member.Change {
	ch := make(chan member.Change, 64)
	f.mu.Lock()
	f.watchers = append(f.watchers, ch)
	f.mu.Unlock()
	context.AfterFunc(ctx, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		for i, w := range f.watchers {
			if w == ch {
				f.watchers = slices.Delete(f.watchers, i, i+1)
				close(ch)
				return
			}
		}
	})
	return ch
}

func (f *fakeMembers) emit(c member.Change) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, w := range f.watchers {
		w <- c
	}
}

// set records a node's record, as a join or an update.
func (f *fakeMembers) set(n member.Member) {
	f.mu.Lock()
	prev, ok := f.nodes[n.ID]
	f.nodes[n.ID] = n
	f.mu.Unlock()
	if ok {
		f.emit(member.Change{Kind: member.Updated, Member: n, Previous: prev})
	} else {
		f.emit(member.Change{Kind: member.Joined, Member: n})
	}
}

// drop removes a node (left or failed).
func (f *fakeMembers) drop(id peer.ID, k member.ChangeKind) {
	f.mu.Lock()
	n, ok := f.nodes[id]
	delete(f.nodes, id)
	f.mu.Unlock()
	if ok {
		f.emit(member.Change{Kind: k, Member: n, Previous: n})
	}
}

func (f *fakeMembers) cluster(name string, join bool) {
	f.mu.Lock()
	self := f.nodes[f.self]
	cl := slices.Clone(self.Clusters)
	if join {
		cl = append(cl, name)
		slices.Sort(cl)
	} else {
		cl = slices.DeleteFunc(cl, func(s string) bool { return s == name })
	}
	self.Clusters = cl
	peers := f.peers
	f.nodes[f.self] = self
	f.mu.Unlock()
	for _, p := range peers {
		p.set(self)
	}
}

func (f *fakeMembers) JoinCluster(_ context.Context, name string) error {
	f.cluster(name, true)
	return nil
}

func (f *fakeMembers) LeaveCluster(_ context.Context, name string) error {
	f.cluster(name, false)
	return nil
}

// newMemberNodes starts n registries with fake memberships that know each
// other, linked in the topology links gives (pairs of indexes; nil: all).
func newMemberNodes(t testing.TB, n int, links [][2]int, mod func(*Config)) []*tnode {
	t.Helper()
	var out []*tnode
	hosts := make([]host.Host, n)
	fakes := make([]*fakeMembers, n)
	for i := range n {
		hosts[i] = testnet.Host(t)
		fakes[i] = newFakeMembers(hosts[i].ID())
	}
	for i := range n {
		for j := range n {
			if i != j {
				fakes[i].nodes[hosts[j].ID()] = member.Member{ID: hosts[j].ID()}
				fakes[i].peers = append(fakes[i].peers, fakes[j])
			}
		}
	}
	for i := range n {
		cfg := Config{Realm: testRealm, Logger: quietLogger(), AntiEntropy: 50 * time.Millisecond}
		if mod != nil {
			mod(&cfg)
		}
		r, err := New(hosts[i], fakes[i], cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		out = append(out, &tnode{h: hosts[i], r: r, m: fakes[i]})
	}
	if links == nil {
		meshAll(t, out)
	} else {
		for _, l := range links {
			link(t, out[l[0]], out[l[1]])
		}
	}
	return out
}
