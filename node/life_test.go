package node

import (
	"context"
	"crypto/rand"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/macula-io/macula/event"
)

// TestEarlierLifeClosed: a peer that comes back with the same key (killed
// and restarted while this node was stopped, and its old connection not
// closed yet) has its connection of the earlier life closed as soon as a
// connection of the new life is verified. The earlier life here is still
// running, so without that its connection would stay for ever.
func TestEarlierLifeClosed(t *testing.T) {
	const realmName = "io.acme.orders"
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	a := startNode(t, realmName, "a", nil)
	b1 := startNode(t, realmName, "b", func(c *Config) { c.Key = key })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Connect(ctx, peer.AddrInfo{ID: b1.ID(), Addrs: b1.Host().Addrs()}); err != nil {
		t.Fatal(err)
	}
	old := a.Host().Network().ConnsToPeer(b1.ID())
	if len(old) != 1 {
		t.Fatalf("a has %d connections to b, want 1", len(old))
	}

	b2 := startNode(t, realmName, "b", func(c *Config) { c.Key = key; c.Bootstrap = bootstrapOf(a) })
	eventually(t, 10*time.Second, "b's second life to be a's peer", func() bool {
		return a.IsPeer(b2.ID()) && b2.IsPeer(a.ID())
	})
	eventually(t, 10*time.Second, "a to close its connection to b's first life", old[0].IsClosed)
	eventually(t, 10*time.Second, "b's first life to lose a", func() bool {
		return len(b1.Host().Network().ConnsToPeer(a.ID())) == 0
	})
	// The new life's connection stays (a closes only what is older).
	time.Sleep(500 * time.Millisecond)
	if !a.IsPeer(b2.ID()) || len(b2.Host().Network().ConnsToPeer(a.ID())) == 0 {
		t.Fatalf("a lost b's second life too: peer %v, b2's connections %d", a.IsPeer(b2.ID()), len(b2.Host().Network().ConnsToPeer(a.ID())))
	}
}

// fakeConn is a distinct network.Conn for earlierLives, which only compares
// them.
type fakeConn struct {
	network.Conn
	n int
}

func TestEarlierLives(t *testing.T) {
	c1, c2, c3, c4 := &fakeConn{n: 1}, &fakeConn{n: 2}, &fakeConn{n: 3}, &fakeConn{n: 4}
	verified := map[network.Conn]string{c1: "old", c2: "new", c3: "", c4: "older"}
	got := earlierLives(verified, c2, "new")
	slices.SortFunc(got, func(x, y network.Conn) int { return x.(*fakeConn).n - y.(*fakeConn).n })
	if len(got) != 2 || got[0] != c1 || got[1] != c4 {
		t.Fatalf("earlierLives = %v, want c1 and c4 (c3 sent no life)", got)
	}
	if got := earlierLives(verified, c3, ""); got != nil {
		t.Fatalf("a hello without life closed %v", got)
	}
	// The same life on another connection (two paths to one run) is kept.
	if got := earlierLives(map[network.Conn]string{c1: "x"}, c2, "x"); got != nil {
		t.Fatalf("a second connection of the same life closed %v", got)
	}
}

// TestRestartedPeerKept: a peer in use that is killed (its sockets frozen:
// no packet from it) and restarted with the same key before this node's
// liveness watcher gave up on it stays this node's peer. The watcher starts
// afresh for the new life: before, it went on counting the earlier life's
// missed pings (and the one that fails when that life's connection is
// closed), declared the peer gone and closed the new life's connection too,
// and the handshakes cut that way made the two refuse each other (the soak
// of 2026-12-06 00:36: hundreds of failed calls between live nodes).
func TestRestartedPeerKept(t *testing.T) {
	const realmName = "io.acme.orders"
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	a := startNode(t, realmName, "a", nil)
	var freeze func()
	b1 := startNode(t, realmName, "b", func(c *Config) {
		c.Key = key
		c.Bootstrap = bootstrapOf(a)
		freeze = freezableSockets(c)
	})
	eventually(t, 30*time.Second, "a and b to see each other", func() bool { return a.IsPeer(b1.ID()) && b1.IsPeer(a.ID()) })
	// b is in use all along: a pings it every second.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if v, ok := a.activity.peers.Load(b1.ID()); ok {
				u := v.(*peerUse)
				u.last.Store(time.Now().UnixNano())
				select {
				case u.wake <- struct{}{}:
				default:
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	defer func() { cancel(); <-done }()
	sub := a.Events().Subscribe(64, event.ConnectionDown)
	defer sub.Close()

	freeze()
	// One ping of a's misses (livenessTimeout), and the restart comes
	// before the second would.
	time.Sleep(livenessTimeout + livenessTimeout/4)
	b2 := startNode(t, realmName, "b", func(c *Config) { c.Key = key; c.Bootstrap = bootstrapOf(a) })
	eventually(t, 30*time.Second, "b's second life to be a's peer", func() bool { return a.IsPeer(b2.ID()) && b2.IsPeer(a.ID()) })
	// Three liveness periods with b in use: a keeps it.
	time.Sleep(3 * (livenessInterval + livenessTimeout))
	for {
		select {
		case e := <-sub.C:
			if e.Peer == b1.ID().String() && e.Reason == ReasonUnresponsive {
				t.Fatalf("a declared b's new life gone: %+v", e)
			}
			continue
		default:
		}
		break
	}
	if !a.IsPeer(b2.ID()) || a.gater.gone(b2.ID()) || a.gater.isRefused(b2.ID()) {
		t.Fatalf("a and b's new life: peer %v, gone %v, refused %v", a.IsPeer(b2.ID()), a.gater.gone(b2.ID()), a.gater.isRefused(b2.ID()))
	}
}
