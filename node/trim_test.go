package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/macula-io/macula/event"
	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/member"
	"github.com/macula-io/macula/rpc"
)

// outbound returns a's open connections to p that a opened.
func outbound(a *Node, p peer.ID) []network.Conn {
	var out []network.Conn
	for _, c := range a.host.Network().ConnsToPeer(p) {
		if c.Stat().Direction == network.DirOutbound && !c.IsClosed() {
			out = append(out, c)
		}
	}
	return out
}

// TestIdleConnectionsTrimmed: a node closes the connections it opened to
// peers it has not used for a while (in a realm of 50 every node held 49,
// each with its keep-alives), and keeps those worth keeping: its membership
// links, a peer it keeps calling. Its peers here are all bootstrap peers:
// the trimmed ones are not redialed while it has other peers, and are when
// it loses them all. A trimmed peer is dialed again when it is called, and
// the membership still lists every member.
func TestIdleConnectionsTrimmed(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const realmName, size = "io.acme.trim", 9
	const idle = 2 * time.Second
	short := func(c *Config) { c.testIdleClose, c.testTrimEvery = idle, 200*time.Millisecond }
	boot := startNode(t, realmName, "n0", short)
	join := func(name string) *Node {
		return startNode(t, realmName, name, func(c *Config) {
			short(c)
			c.Bootstrap = bootstrapOf(boot)
		})
	}
	var others []*Node // neither a nor its bootstrap peer
	for i := 2; i < size; i++ {
		others = append(others, join(fmt.Sprintf("n%d", i)))
	}
	listAll := func(ns []*Node, want int) {
		eventually(t, time.Minute, "every node to list every member", func() bool {
			for _, n := range ns {
				if len(n.Members().List()) != want {
					return false
				}
			}
			return true
		})
	}
	echo := func(_ context.Context, r *rpc.Request) ([]byte, error) { return r.Payload, nil }
	advertise := func(n *Node) {
		if err := n.RPC().Advertise(ctx, "io.acme.trim.echo."+n.Name(), echo); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range append([]*Node{boot}, others...) {
		advertise(n) // before a joins: providing dials the closest peers
	}
	listAll(append([]*Node{boot}, others...), size-1)
	// a joins last, so that it is the one that opens its connections to
	// the others (those that dial a are not a's to trim), with every other
	// node as a bootstrap peer.
	peers := append([]*Node{boot}, others...)
	a := startNode(t, realmName, "n1", func(c *Config) {
		short(c)
		for _, n := range peers {
			c.Bootstrap = append(c.Bootstrap, bootstrapOf(n)...)
		}
	})
	nodes := append([]*Node{boot, a}, others...)
	listAll(nodes, size)
	advertise(a)
	downs := a.Events().Subscribe(1024, event.ConnectionDown)
	defer downs.Close()
	cm := a.host.ConnManager()
	linked := func(p peer.ID) bool { return cm.IsProtected(p, member.ConnProtectTag) }
	// The peers a opened a connection to (some had dialed a first) that
	// are not membership neighbours: one a keeps calling, the others idle.
	var opened []*Node
	for _, n := range peers {
		if !linked(n.ID()) && len(outbound(a, n.ID())) > 0 {
			opened = append(opened, n)
		}
	}
	if len(opened) < 2 {
		t.Fatalf("a opened connections to %d peers that are not its membership neighbours, want 2 or more", len(opened))
	}
	used, idlePeers := opened[0], opened[1:]
	usedConns := outbound(a, used.ID())
	calls, stop := make(chan error, 1), make(chan struct{})
	go func() {
		defer close(calls)
		for {
			select {
			case <-stop:
				return
			case <-time.After(300 * time.Millisecond):
			}
			if _, err := a.RPC().Call(ctx, "io.acme.trim.echo."+used.Name(), []byte("x"), rpc.WithTimeout(10*time.Second)); err != nil {
				calls <- err
				return
			}
		}
	}()
	stopped := false
	stopCalls := func() {
		if !stopped {
			stopped = true
			close(stop)
			if err := <-calls; err != nil {
				t.Fatalf("a call to the peer in use failed: %v", err)
			}
		}
	}
	defer stopCalls()
	// The connections a opened to the idle ones close (but for those that
	// became membership neighbours meanwhile: the overlay changes as a
	// joins).
	var gone []*Node
	testnet.Eventually(t, time.Minute, func() error {
		gone = gone[:0]
		for _, n := range idlePeers {
			if why := a.keepConns(n.ID(), time.Now(), idle); linked(n.ID()) || strings.HasPrefix(why, "protected") || strings.HasPrefix(why, "tagged") {
				continue // worth keeping: a relay autorelay picked among the bootstrap peers, say
			}
			if c := outbound(a, n.ID()); len(c) > 0 {
				return fmt.Errorf("a still holds the connection it opened to idle %s (opened %v ago; linked %v, kept %v, tags %v)", n.Name(),
					time.Since(c[0].Stat().Opened).Round(time.Millisecond), linked(n.ID()), a.keepConns(n.ID(), time.Now(), idle), cm.GetTagInfo(n.ID()).Tags)
			}
			gone = append(gone, n)
		}
		if len(gone) == 0 {
			return errors.New("every idle peer is worth keeping (a membership neighbour or a relay)")
		}
		return nil
	})
	trimmed := gone[0]
	// Well past the idle time: what is kept is still up, on the same
	// connection for the peer in use.
	time.Sleep(3 * idle)
	for _, c := range usedConns {
		if c.IsClosed() {
			t.Fatalf("a closed its connection to %s, which it calls every 300 ms", used.Name())
		}
	}
	for _, n := range peers {
		if linked(n.ID()) && a.host.Network().Connectedness(n.ID()) != network.Connected {
			t.Fatalf("a is not connected to its membership neighbour %s", n.Name())
		}
	}
	if got := a.trimmed.Load(); got < int64(len(gone)) {
		t.Fatalf("a counted %d trimmed connections, want at least %d", got, len(gone))
	}
	// The connection_down of an idle peer that a is no longer connected
	// to at all (it had not dialed a too) says why.
	idleDown := map[string]bool{}
	for len(downs.C) > 0 {
		if e := <-downs.C; e.Reason == ReasonIdle {
			idleDown[e.Peer] = true
		}
	}
	// Nor were they redialed: a has other peers.
	for _, n := range gone {
		if why := a.keepConns(n.ID(), time.Now(), idle); linked(n.ID()) || strings.HasPrefix(why, "protected") || strings.HasPrefix(why, "tagged") {
			continue // a neighbour or a relay now
		}
		if !idleDown[n.ID().String()] {
			t.Fatalf("no connection_down with reason %q for %s", ReasonIdle, n.Name())
		}
	}
	if n := a.redials.Load(); n != 0 {
		t.Fatalf("a redialed its bootstrap peers %d times while it had other peers", n)
	}
	// A trimmed bootstrap peer that dials a and then trims that connection
	// (it opened it): for a, a drop, redialed once; a trims that
	// connection in turn, and it ends there (no redial back and forth).
	g := gone[0]
	if err := g.Connect(ctx, peer.AddrInfo{ID: a.ID(), Addrs: a.Addrs()}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "a to redial "+g.Name()+" once, and trim that connection", func() bool {
		return a.redials.Load() == 1 && len(outbound(a, g.ID())) == 0 && a.host.Network().Connectedness(g.ID()) != network.Connected
	})
	time.Sleep(3 * idle)
	if n := a.redials.Load(); n != 1 {
		t.Fatalf("a redialed its bootstrap peers %d times after %s closed an idle connection of its own, want 1", n, g.Name())
	}
	// A trimmed peer is called all the same (dialed again), and the
	// membership still lists everyone.
	if _, err := a.RPC().Call(ctx, "io.acme.trim.echo."+trimmed.Name(), []byte("y"), rpc.WithTimeout(20*time.Second)); err != nil {
		t.Fatalf("call to trimmed %s: %v", trimmed.Name(), err)
	}
	for _, n := range nodes {
		if got := len(n.Members().List()); got != size {
			t.Fatalf("%s lists %d members after the trimming, want %d", n.Name(), got, size)
		}
	}
	// a loses every peer: its bootstrap loops redial, the trimmed ones too
	// (nothing else dials a peer that is not a membership neighbour).
	stopCalls()
	back := gone[len(gone)-1]
	for _, p := range a.host.Network().Peers() {
		_ = a.host.Network().ClosePeer(p)
	}
	eventually(t, 30*time.Second, "a to redial a trimmed bootstrap peer once it had no peer left", func() bool {
		return a.IsPeer(back.ID()) && a.redials.Load() > 0
	})
	// Its neighbours may have declared it failed meanwhile (every link
	// lost at once); it refutes and is listed again.
	listAll(nodes, size)
}
