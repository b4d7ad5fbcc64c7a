package dht

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	kad "github.com/libp2p/go-libp2p-kad-dht"
	pb "github.com/libp2p/go-libp2p-kad-dht/pb"
	kb "github.com/libp2p/go-libp2p-kbucket"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/macula-io/macula/internal/testnet"
)

// TestJoinLooksUpItsOwnKey: a node joining a realm of 30 looks up its own
// key, and so becomes known to the peers closest to it, without also
// looking up a random key of every common-prefix length (which had it ask
// nearly every node of a small realm). The realm's other nodes are plain
// kad-dht servers that record what the joining node asks them.
func TestJoinLooksUpItsOwnKey(t *testing.T) {
	const n, realm = 30, "io.acme.orders"
	var (
		mu     sync.Mutex
		joiner peer.ID
		asked  = map[string]int{} // FIND_NODE keys the joiner asked for
		askers = map[peer.ID]bool{}
	)
	hs := make([]host.Host, n)
	ks := make([]*kad.IpfsDHT, n)
	for i := range hs {
		hs[i] = newHost(t)
		self := hs[i].ID()
		k, err := kad.New(hs[i], kad.ProtocolPrefix(ProtocolPrefix(realm)), kad.Mode(kad.ModeServer),
			kad.OnRequestHook(func(_ context.Context, s network.Stream, m *pb.Message) {
				mu.Lock()
				defer mu.Unlock()
				if s.Conn().RemotePeer() != joiner || m.GetType() != pb.Message_FIND_NODE {
					return
				}
				askers[self] = true
				if key := peer.ID(m.GetKey()); key != self { // a check that self answers (kad-dht's lookupCheck)
					asked[key.String()]++
				}
			}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { k.Close() })
		ks[i] = k
		if i > 0 {
			connect(t, hs[i], hs[0])
		}
	}
	testnet.Eventually(t, 30*time.Second, func() error {
		for i, k := range ks {
			if k.RoutingTable().Size() < 3 {
				return fmt.Errorf("node %d's routing table holds %d peers", i, k.RoutingTable().Size())
			}
		}
		return nil
	})

	x := newHost(t)
	mu.Lock()
	joiner = x.ID()
	mu.Unlock()
	d := newDHT(t, x, realm)
	connect(t, x, hs[n/2])
	waitRoutingTable(t, d, hs[n/2].ID())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.RefreshRoutingTable(ctx); err != nil {
		t.Fatal(err)
	}

	mu.Lock()
	defer mu.Unlock()
	if asked[x.ID().String()] == 0 {
		t.Fatalf("the joining node did not look up its own key; it asked for %v", asked)
	}
	delete(asked, x.ID().String())
	if len(asked) > 0 {
		t.Fatalf("the joining node looked up other keys too: %v (asked %d of %d nodes)", asked, len(askers), n)
	}
	// Kademlia's join: the peers closest to the new node's key know it.
	ids := make([]peer.ID, n)
	for i, h := range hs {
		ids[i] = h.ID()
	}
	closest := kb.SortClosestPeers(ids, kb.ConvertPeerID(x.ID()))[:3]
	testnet.Eventually(t, 10*time.Second, func() error {
		for _, p := range closest {
			i := slices.IndexFunc(hs, func(h host.Host) bool { return h.ID() == p })
			if ks[i].RoutingTable().Find(x.ID()) == "" {
				return fmt.Errorf("node %d, among the 3 closest to the joining node, does not hold it", i)
			}
		}
		return nil
	})
	t.Logf("the join asked %d of %d nodes; its routing table holds %d", len(askers), n, d.kad.RoutingTable().Size())
}
