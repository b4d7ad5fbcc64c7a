package node

import (
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/macula-io/macula/dht"
	"github.com/macula-io/macula/member"
)

// Trimming idle connections (issue 17).
//
// Every connection costs both ends QUIC's keep-alive (a packet and its
// acknowledgement every 15 s) and the registry's digests, whether or not
// it is used; a realm's DHT queries connect nearly every pair of a small
// realm, so an idle node of 50 held 49 connections, and the connection
// manager (which only acts above ConnHighWater) kept them all. The node
// therefore closes a connection it opened when nothing used the peer
// (calls, messages, lookups: activity.go) for idleClose, unless the
// connection is worth keeping:
//
//   - the membership's overlay links (protected: they carry heartbeats and
//     news) and autorelay's relays;
//   - anything a service tags in the connection manager, other than the
//     DHT's routing table (which needs no open connection): pubsub's
//     subscriber links (a rare publisher's next message must not wait
//     for a lookup), relay reservations and circuits, a secure realm's
//     registry links;
//   - the node's only peer;
//   - peers that are not DHT servers (behind a NAT: another connection may
//     need hole punching or a relay, which costs far more than keep-alives)
//     and relayed connections.
//
// Only the side that opened a connection closes it: the other side may be
// the one that needs it, and it is the dialer that knows why it dialed. A
// trimmed peer is dialed again when it is used: a call or lookup then pays a
// handshake (one round trip on a direct path). A bootstrap peer is trimmed
// too (or it would hold a connection to every node that ever bootstrapped
// through it: 49 in a realm of 50); its loop redials it only when the node
// has lost every peer (reconnect.go).
const (
	idleClose = 2 * time.Minute
	trimEvery = 30 * time.Second
)

// keptProtections are the connection manager's protections that keep a
// connection; the DHT's ("kbucket", for the peers of its two widest
// buckets) does not.
var keptProtections = []string{member.ConnProtectTag, "autorelay"}

// dhtTag is the DHT's tag and protection of its routing table's peers.
const dhtTag = "kbucket"

// trimLoop closes idle connections every trimEvery until the node closes.
func (n *Node) trimLoop() {
	defer n.wg.Done()
	every, idle := trimEvery, n.idleClose()
	if n.cfg.testTrimEvery > 0 {
		every = n.cfg.testTrimEvery
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case now := <-t.C:
			n.trimIdle(now, idle)
		}
	}
}

// trimIdle closes the connections that this node opened to realm peers
// idle for idle (idleClose) and not worth keeping; it returns how many.
func (n *Node) trimIdle(now time.Time, idle time.Duration) int {
	n.mu.Lock()
	up := n.upPeersLocked()
	var peers []peer.ID
	for p, ps := range n.peers {
		if _, boot := n.redial[p]; (boot && up <= 1) || ps.gone != "" {
			continue // a node's only peer stays, whatever it is
		}
		peers = append(peers, p)
	}
	n.mu.Unlock()
	closed := 0
	for _, p := range peers {
		if n.keepConns(p, now, idle) != "" {
			continue
		}
		for _, c := range n.host.Network().ConnsToPeer(p) {
			st := c.Stat()
			if st.Direction != network.DirOutbound || st.Limited || isRelayed(c.RemoteMultiaddr()) || now.Sub(st.Opened) < idle {
				continue
			}
			n.log.Debug("closing an idle connection", "peer", p, "addr", c.RemoteMultiaddr())
			n.mu.Lock()
			n.idleClosed[c] = true
			n.mu.Unlock()
			_ = c.CloseWithError(network.ConnGarbageCollected)
			n.trimmed.Add(1)
			closed++
		}
	}
	return closed
}

// keepConns says why p's connections stay whether or not it is in use now
// ("" if nothing keeps them): it was used within idle, or a service needs
// it.
func (n *Node) keepConns(p peer.ID, now time.Time, idle time.Duration) string {
	v, ok := n.activity.peers.Load(p)
	if !ok {
		return "no record of its use"
	}
	if now.UnixNano()-v.(*peerUse).last.Load() < int64(idle) {
		return "in use"
	}
	cm := n.host.ConnManager()
	for _, tag := range keptProtections {
		if cm.IsProtected(p, tag) {
			return "protected: " + tag
		}
	}
	if info := cm.GetTagInfo(p); info != nil {
		for tag := range info.Tags {
			if tag != dhtTag {
				return "tagged: " + tag
			}
		}
	}
	if server, _ := n.host.Peerstore().SupportsProtocols(p, dht.ProtocolPrefix(n.cfg.Realm)+"/kad/1.0.0"); len(server) == 0 {
		return "not a DHT server"
	}
	return ""
}

// idleClose is how long a peer goes unused before its connections are
// trimmed (a test may set it shorter).
func (n *Node) idleClose() time.Duration {
	if n.cfg.testIdleClose > 0 {
		return n.cfg.testIdleClose
	}
	return idleClose
}
