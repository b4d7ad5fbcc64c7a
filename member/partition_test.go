package member

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pquic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	ma "github.com/multiformats/go-multiaddr"
)

// splitter is a connection gater that can cut the realm in two sides.
type splitter struct {
	mu   sync.Mutex
	cut  bool
	side map[peer.ID]int
	self peer.ID
}

func (s *splitter) blocked(p peer.ID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cut && s.side[p] != s.side[s.self]
}

func (s *splitter) InterceptPeerDial(p peer.ID) bool                 { return !s.blocked(p) }
func (s *splitter) InterceptAddrDial(p peer.ID, _ ma.Multiaddr) bool { return !s.blocked(p) }
func (s *splitter) InterceptAccept(network.ConnMultiaddrs) bool      { return true }
func (s *splitter) InterceptSecured(_ network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	return !s.blocked(p)
}
func (s *splitter) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }

// split is the shared state of the gaters of one test.
type split struct {
	mu    sync.Mutex
	side  map[peer.ID]int
	gates []*splitter
}

func (sp *split) host(t *testing.T, side int) host.Host {
	t.Helper()
	g := &splitter{side: sp.side}
	h, err := libp2p.New(
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/udp/0/quic-v1"),
		libp2p.Transport(libp2pquic.NewTransport),
		libp2p.DisableRelay(), libp2p.DisableMetrics(),
		libp2p.ConnectionGater(g),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	g.self = h.ID()
	sp.mu.Lock()
	sp.side[h.ID()] = side
	sp.gates = append(sp.gates, g)
	sp.mu.Unlock()
	return h
}

func (sp *split) setCut(cut bool) {
	for _, g := range sp.gates {
		g.mu.Lock()
		g.cut = cut
		g.mu.Unlock()
	}
}

// TestPartitionHeals: a realm cut in two declares the other side failed on
// each side, goes on changing on both, and after the cut is healed
// becomes one realm again by itself (no bootstrap link crosses the cut):
// the changes of both sides are seen everywhere, the member that left
// during the cut stays gone, and no member is declared failed on its own
// side while the two merge.
func TestPartitionHeals(t *testing.T) {
	sp := &split{side: make(map[peer.ID]int)}
	var ms []*testMember
	for i := 0; i < 6; i++ {
		m := newMemberOn(t, sp.host(t, i/3), string(rune('a'+i)), nil)
		ms = append(ms, m)
		if i > 0 {
			connect(t, m.h, ms[0].h)
		}
	}
	eventually(t, 30*time.Second, "one realm", func() bool { return sees(ms, ms...) })
	a, b := ms[:3], ms[3:]

	sp.setCut(true)
	for _, x := range a {
		for _, y := range b {
			_ = x.h.Network().ClosePeer(y.h.ID())
		}
	}
	cutAt := time.Now()
	eventually(t, 30*time.Second, "two realms", func() bool { return sees(a, a...) && sees(b, b...) })
	t.Logf("two realms %v after the cut", time.Since(cutAt).Round(time.Millisecond))

	// Changes on both sides during the cut.
	if err := a[1].m.SetCapabilities(context.Background(), []string{"game"}); err != nil {
		t.Fatal(err)
	}
	if err := b[2].m.JoinCluster(context.Background(), "eu"); err != nil {
		t.Fatal(err)
	}
	b[1].m.Close()
	rest := []*testMember{a[0], a[1], a[2], b[0], b[2]}
	eventually(t, 30*time.Second, "b's departure seen on its side", func() bool { return sees([]*testMember{b[0], b[2]}, b[0], b[2]) })

	// Watch each side for failures of its own members during the merge.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type obs struct {
		side  []*testMember
		watch <-chan Change
	}
	var watches []obs
	for _, x := range rest {
		side := a
		if x == b[0] || x == b[2] {
			side = b
		}
		w := x.m.Watch(ctx)
		for range x.m.List() {
			<-w // the initial joins
		}
		watches = append(watches, obs{side: side, watch: w})
	}

	start := time.Now()
	sp.setCut(false)
	eventually(t, 30*time.Second, "one realm again", func() bool { return sees(rest, rest...) })
	t.Logf("healed in %v after the cut was lifted", time.Since(start).Round(time.Millisecond))
	for _, x := range rest {
		if got := x.m.WithCapability("game"); len(got) != 1 || got[0].ID != a[1].h.ID() {
			t.Fatalf("%s: game served by %v", x.m.Self().Name, ids(got))
		}
		if got := x.m.InCluster("eu"); len(got) != 1 || got[0].ID != b[2].h.ID() {
			t.Fatalf("%s: eu holds %v", x.m.Self().Name, ids(got))
		}
	}
	for _, o := range watches {
	drain:
		for {
			select {
			case c := <-o.watch:
				for _, s := range o.side {
					if c.Member.ID == s.h.ID() && (c.Kind == Failed || c.Kind == Left) {
						t.Errorf("a member of its own side %s during the merge: %+v", c.Kind, c)
					}
				}
			default:
				break drain
			}
		}
	}
}
