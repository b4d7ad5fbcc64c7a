package node

import (
	"context"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
)

// Relay failover for the peers behind a relay. When a node's last
// connection to a realm peer was relayed and it closed (its relay died,
// most often: liveness closes a relayed connection whose pings stop), the
// peer itself is probably alive behind its other relay. Nothing tells this
// node its new relayed address: the peer's identify push goes only to the
// peers it is connected to, and a caller's provider cache keeps the old
// addresses until its next DHT lookup. Two symmetric-NAT nodes then stayed
// apart for 10-27 s in the NAT lab (calls failing all along), until a
// provider lookup happened to bring the new address.
//
// So the node asks the DHT for the peer's addresses at once (FindPeer: a
// DHT server connected to the peer, such as its new relay, answers with the
// peer's current addresses) and reconnects; again every refindEvery while it
// fails, for refindFor (the peer needs a few seconds to notice the relay's
// death and reserve with another). A peer that said goodbye or that this
// node declared departed is left alone (the gater refuses it anyway).

const (
	refindEvery   = 2 * time.Second
	refindFor     = 40 * time.Second
	refindTimeout = 5 * time.Second // one lookup and dial
	// maxRefinds bounds the peers looked for at once.
	maxRefinds = 64
)

// refinds is the set of peers being looked for after their relayed
// connections closed.
type refinds struct {
	mu    sync.Mutex
	peers map[peer.ID]bool
}

// watchRelayedLoss makes the notifiee that starts a refind when the last
// connection to a realm peer closes and was relayed.
func (n *Node) watchRelayedLoss() *network.NotifyBundle {
	return &network.NotifyBundle{DisconnectedF: func(_ network.Network, c network.Conn) {
		p := c.RemotePeer()
		if !isRelayed(c.RemoteMultiaddr()) || len(n.host.Network().ConnsToPeer(p)) > 0 || n.isLeaving() || n.gater.gone(p) {
			return
		}
		// Realm peers only: identify recorded our handshake protocol.
		if ok, _ := n.host.Peerstore().SupportsProtocols(p, HandshakeProtocol(n.cfg.Realm)); len(ok) == 0 {
			return
		}
		n.nat.refind.mu.Lock()
		if n.nat.refind.peers == nil {
			n.nat.refind.peers = make(map[peer.ID]bool)
		}
		if n.nat.refind.peers[p] || len(n.nat.refind.peers) >= maxRefinds {
			n.nat.refind.mu.Unlock()
			return
		}
		n.nat.refind.peers[p] = true
		n.nat.refind.mu.Unlock()
		if !n.spawn(func() { n.refindPeer(p) }) {
			n.refindDone(p)
		}
	}}
}

func (n *Node) refindDone(p peer.ID) {
	n.nat.refind.mu.Lock()
	delete(n.nat.refind.peers, p)
	n.nat.refind.mu.Unlock()
}

// refindPeer looks p up in the DHT and dials it, every refindEvery until it
// is connected again, refindFor has passed, or the node closes.
func (n *Node) refindPeer(p peer.ID) {
	defer n.refindDone(p)
	t := time.NewTicker(refindEvery)
	defer t.Stop()
	end := time.Now().Add(refindFor)
	for time.Now().Before(end) {
		if n.host.Network().Connectedness(p) != network.NotConnected || n.gater.gone(p) {
			return
		}
		ctx, cancel := context.WithTimeout(n.ctx, refindTimeout)
		ai, err := n.dht.Kad().FindPeer(ctx, p)
		if err == nil && len(ai.Addrs) > 0 {
			n.host.Peerstore().AddAddrs(p, ai.Addrs, peerstore.TempAddrTTL)
			err = n.host.Connect(network.WithAllowLimitedConn(ctx, "macula refind"), ai)
		}
		cancel()
		if err == nil && n.host.Network().Connectedness(p) != network.NotConnected {
			n.log.Info("reconnected to a peer after its relayed connection closed", "peer", p)
			return
		}
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
	}
	n.log.Debug("peer not found again after its relayed connection closed", "peer", p)
}
