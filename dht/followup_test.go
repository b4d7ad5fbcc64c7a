package dht

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	pb "github.com/libp2p/go-libp2p-kad-dht/pb"
	kb "github.com/libp2p/go-libp2p-kbucket"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-msgio/pbio"
)

// A lookup waits on a silent peer once: kad-dht's follow-up asks again
// every one of the closest peers whose answer was awaited when the query
// ended, and before the sender refused suspects, a killed node that made a
// lookup wait its bound made it wait a second time (a not-found call in a
// 20-node realm took two bounds, 1.1 s). The silent peer is picked so
// that the query can end while its answer is awaited: not among the beta
// closest to the key, within the k closest.
func TestLookupAsksASilentPeerOnce(t *testing.T) {
	const realm = "io.acme.orders"
	const n = 8
	hosts := make([]host.Host, n)
	dhts := make([]*DHT, n)
	for i := range hosts {
		hosts[i] = newHost(t)
		dhts[i] = newDHT(t, hosts[i], realm)
	}
	for i, x := range hosts {
		for _, y := range hosts[i+1:] {
			connect(t, x, y)
		}
	}
	a := dhts[0]
	var others []peer.ID
	for _, h := range hosts[1:] {
		others = append(others, h.ID())
	}
	waitRoutingTable(t, a, others...)
	// A key whose fourth-closest peer (from a) is the one to silence.
	var key string
	var s host.Host
	for i := 0; s == nil; i++ {
		key = fmt.Sprint("nobody-provides-", i)
		order := kb.SortClosestPeers(others, kb.ConvertKey(string(KeyCID(realm, key).Hash())))
		for _, h := range hosts[1:] {
			if h.ID() == order[3] {
				s = h
			}
		}
	}
	// Queries have measured every peer's round-trip time by now.
	var asked atomic.Int32
	proto := ProtocolPrefix(realm) + "/kad/1.0.0"
	s.SetStreamHandler(proto, func(str network.Stream) {
		// Only the lookup's requests count: a's own background queries
		// (a routing-table refresh: FIND_NODE) may ask s meanwhile, and
		// the others refresh their tables too.
		var m pb.Message
		if err := pbio.NewDelimitedReader(str, 1<<20).ReadMsg(&m); err == nil &&
			str.Conn().RemotePeer() == hosts[0].ID() && m.GetType() == pb.Message_GET_PROVIDERS {
			asked.Add(1)
		}
		_, _ = io.Copy(io.Discard, str)
		_ = str.Reset()
	})
	for _, c := range s.Network().Conns() {
		for _, str := range c.GetStreams() {
			if str.Protocol() == proto {
				_ = str.Reset()
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	provs, err := a.Lookup(ctx, key, 0)
	if err != nil || len(provs) != 0 {
		t.Fatalf("lookup: %v, %v", provs, err)
	}
	if got := asked.Load(); got != 1 {
		t.Fatalf("the silent peer was asked %d times in one lookup, want once", got)
	}
	if !a.suspected(s.ID()) || slices.Contains(a.RoutingTablePeers(), s.ID()) {
		t.Fatalf("the silent peer: suspect %v, routing table %v", a.suspected(s.ID()), a.RoutingTablePeers())
	}
}
