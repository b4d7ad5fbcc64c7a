package node

import (
	"context"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	ma "github.com/multiformats/go-multiaddr"
)

// Liveness: a peer that dies without closing its connections (kill -9, a
// cable) is only noticed by QUIC's idle timeout, 30s in libp2p. The node pings
// each realm peer every livenessInterval; one that misses livenessMisses
// pings in a row (each waited for livenessTimeout) has its connections
// closed and is declared gone (leave.go), so that every service drops it at
// once: rpc moves its calls to other providers, pubsub stops queueing for
// it, the DHT stops asking it. Two misses, not one, so that a node stalled
// for a moment (a GC pause, a loaded machine) keeps its peers.
//
// Only peers in use (activity.go: calls, messages or lookups within
// activeFor) are pinged every livenessInterval; an idle peer is pinged
// every livenessIdleInterval, so that an idle node's cost does not grow
// with its realm. An idle peer is checked at once when it is used again,
// and when the membership declares it failed (its watchers on the
// membership's overlay found it silent): either way a dead peer is found
// within the liveness window of the moment it matters. After a missed ping
// the next comes livenessInterval later, in use or not. (The watcher's
// ticker still ticks every livenessInterval: a tick of an idle peer costs a
// goroutine wake-up, not a ping.)
const (
	livenessInterval     = time.Second
	livenessIdleInterval = 30 * time.Second
	livenessTimeout      = 2 * time.Second
	livenessMisses       = 2
)

func (n *Node) watchPeer(ctx context.Context, p peer.ID, u *peerUse) {
	defer n.wg.Done()
	t := time.NewTicker(livenessInterval)
	defer t.Stop()
	misses := 0
	var last time.Time // of the last ping
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			// An idle peer that answered waits out the idle interval.
			if now := time.Now(); misses == 0 && !u.inUse(now) && now.Sub(last) < livenessIdleInterval {
				continue
			}
		case <-u.wake:
		}
		last = time.Now()
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
			// Over relayed connections only, it is the path that failed
			// (often the relay died), not necessarily the peer: it may be
			// reachable through another relay, so it is not declared
			// departed, only disconnected.
			relayedOnly := true
			for _, c := range n.host.Network().ConnsToPeer(p) {
				if !isRelayed(c.RemoteMultiaddr()) {
					relayedOnly = false
				}
			}
			n.log.Warn("peer does not answer pings; closing its connections", "peer", p, "misses", misses, "relayed", relayedOnly)
			n.declareGone(p, ReasonUnresponsive, !relayedOnly)
			_ = n.host.Network().ClosePeer(p)
			n.forgetRelay(p)
			return
		}
	}
}

// forgetRelay drops, from the peerstore, every address that goes through the
// circuit relay p, which stopped answering: a redial of a peer behind NAT
// then goes through its other relays at once, instead of first waiting out
// a QUIC handshake timeout towards the dead one. Addresses come back with
// the peer's next identify or DHT record if the relay returns.
func (n *Node) forgetRelay(p peer.ID) {
	ps := n.host.Peerstore()
	forgotten := 0
	for _, q := range ps.PeersWithAddrs() {
		for _, a := range ps.Addrs(q) {
			if viaRelay(a, p) {
				ps.SetAddr(q, a, 0) // a TTL of 0 removes the address
				forgotten++
			}
		}
	}
	if forgotten > 0 {
		n.log.Info("forgot addresses through a dead relay", "relay", p, "addrs", forgotten)
	}
}

// viaRelay reports whether a is a circuit address through relay r:
// .../p2p/<r>/p2p-circuit/...
func viaRelay(a ma.Multiaddr, r peer.ID) bool {
	var last peer.ID
	for _, c := range a {
		switch c.Protocol().Code {
		case ma.P_P2P:
			if id, err := peer.Decode(c.Value()); err == nil {
				last = id
			}
		case ma.P_CIRCUIT:
			return last == r
		}
	}
	return false
}
