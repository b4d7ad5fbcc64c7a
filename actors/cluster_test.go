package actors

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/macula-io/macula/event"
	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/member"
	"github.com/macula-io/macula/rpc"
)

// This file has the in-process membership fake of the unit tests: each
// node's view is set by the test, so that views can agree or disagree on
// purpose. The end-to-end tests (cmd/macula-node) use the real membership.

const testRealm = "io.acme.game"

// fakeMembers is one node's view of the membership.
type fakeMembers struct {
	self peer.ID
	// mu guards live and subs.
	mu   sync.Mutex
	live []member.Member
	subs []chan member.Change
}

func (f *fakeMembers) Self() member.Member { return member.Member{ID: f.self} }

func (f *fakeMembers) List() []member.Member {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.live)
}

func (f *fakeMembers) Watch(ctx context.Context) <-chan member.Change {
	ch := make(chan member.Change, 1)
	f.mu.Lock()
	f.subs = append(f.subs, ch)
	f.mu.Unlock()
	context.AfterFunc(ctx, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if i := slices.Index(f.subs, ch); i >= 0 {
			f.subs = slices.Delete(f.subs, i, i+1)
			close(ch)
		}
	})
	return ch
}

func (f *fakeMembers) set(ms []member.Member) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.live = slices.Clone(ms)
	for _, ch := range f.subs {
		select {
		case ch <- member.Change{Kind: member.Updated}:
		default:
		}
	}
}

// tnode is one node of an in-process cluster: a libp2p host, rpc, and an
// actor system with the counter kinds registered.
type tnode struct {
	name string
	caps []string
	h    host.Host
	rpc  *rpc.RPC
	bus  *event.Bus
	mem  *fakeMembers
	sys  *System
	down bool
}

type cluster struct {
	t     testing.TB
	nodes []*tnode
}

func newCluster(t testing.TB) *cluster { return &cluster{t: t} }

// add starts a node serving caps; it knows the members of the cluster's
// current view (the others learn of it with sync).
func (c *cluster) add(name string, mod func(*Config), caps ...string) *tnode {
	n, cfg := c.prepare(name, mod, caps...)
	n.mem.set(c.view())
	c.start(n, cfg)
	return n
}

// prepare makes a node's host and rpc and joins it to the cluster's view;
// start starts its actor system.
func (c *cluster) prepare(name string, mod func(*Config), caps ...string) (*tnode, Config) {
	t := c.t
	t.Helper()
	cfg := Config{Realm: testRealm, Logger: quiet(), Settle: -1, HandoffTimeout: 3 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	h := testnet.Host(t)
	bus := event.NewBus()
	// rpc shares the system's access policy, as a node wires them.
	r, err := rpc.New(h, nil, bus, rpc.Config{Realm: testRealm, Logger: quiet(), Access: cfg.Access})
	must(t, err)
	n := &tnode{name: name, caps: caps, h: h, rpc: r, bus: bus, mem: &fakeMembers{self: h.ID()}}
	for _, o := range c.nodes {
		if !o.down {
			testnet.Connect(t, h, o.h)
		}
	}
	c.nodes = append(c.nodes, n)
	return n, cfg
}

func (c *cluster) start(n *tnode, cfg Config) { c.startWith(n, cfg, nil) }

// startWith starts n's actor system and calls beforeRegister, if not nil,
// before it registers the kinds.
func (c *cluster) startWith(n *tnode, cfg Config, beforeRegister func()) {
	t := c.t
	t.Helper()
	s, err := New(cfg, n.mem, n.rpc, n.bus)
	must(t, err)
	n.sys = s
	if beforeRegister != nil {
		beforeRegister()
	}
	for _, capName := range n.caps {
		must(t, s.Register(capName, "counter", func(string) Actor { return &counter{} }))
	}
	t.Cleanup(func() {
		// Leave as the real membership would: others forget it.
		if !n.down {
			n.down = true
			n.sys.Close()
			c.sync()
		}
		n.close()
	})
}

func (n *tnode) close() {
	if n.sys != nil {
		n.sys.Close()
	}
	n.rpc.Close()
	n.h.Close()
	n.bus.Close()
}

// view is the membership: every node that is not down.
func (c *cluster) view() []member.Member {
	var ms []member.Member
	for _, n := range c.nodes {
		if !n.down {
			ms = append(ms, member.Member{ID: n.h.ID(), Capabilities: n.caps})
		}
	}
	return ms
}

// sync gives every live node the current view.
func (c *cluster) sync() {
	v := c.view()
	for _, n := range c.nodes {
		if !n.down {
			n.mem.set(v)
		}
	}
}

// waitView waits until every live node's router has the current view.
func (c *cluster) waitView() {
	c.t.Helper()
	want := len(c.view())
	waitUntil(c.t, "the views", func() bool {
		for _, n := range c.nodes {
			if !n.down && len(n.sys.route.view.Load().live) != want {
				return false
			}
		}
		return true
	})
}

func (c *cluster) byID(id peer.ID) *tnode {
	for _, n := range c.nodes {
		if n.h.ID() == id {
			return n
		}
	}
	return nil
}
