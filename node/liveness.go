package node

import (
	"context"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
)

// Liveness: a peer that dies without closing its connections (kill -9, a
// cable) is only noticed by QUIC's idle timeout, 30s in libp2p. The node pings
// each realm peer every livenessInterval; one that misses livenessMisses
// pings in a row (each waited for livenessTimeout) has its connections
// closed, so that every service sees it go at once: rpc moves its calls to
// other providers, pubsub stops queueing for it. Two misses, not one, so that
// a node stalled for a moment (a GC pause, a loaded machine) keeps its peers.
const (
	livenessInterval = time.Second
	livenessTimeout  = 2 * time.Second
	livenessMisses   = 2
)

func (n *Node) watchPeer(ctx context.Context, p peer.ID) {
	defer n.wg.Done()
	t := time.NewTicker(livenessInterval)
	defer t.Stop()
	misses := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, livenessTimeout)
		res, ok := <-ping.Ping(network.WithAllowLimitedConn(pctx, "macula liveness"), n.host, p)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if ok && res.Error == nil {
			misses = 0
			continue
		}
		if misses++; misses >= livenessMisses {
			n.log.Warn("peer does not answer pings; closing its connections", "peer", p, "misses", misses)
			_ = n.host.Network().ClosePeer(p)
			return
		}
	}
}
