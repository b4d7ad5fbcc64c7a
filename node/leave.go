package node

import (
	"context"
	"io"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/macula-io/macula/event"
	"github.com/macula-io/macula/frame"
)

// Leaving and dying.
//
// A node that closes says goodbye first: on the connection it has to each
// peer of the realm it opens a handshake stream that starts with a goodbye
// frame, and waits (at most goodbyeTimeout for all of them) for the peer to
// close the stream, which it does once it has dropped the node. Only then
// do the node's services close (pubsub still flushes what it queued: the
// peers keep reading what the leaving node sends until its connections
// close).
//
// A peer that gets a goodbye, or whose liveness pings fail on a direct
// connection (liveness.go), declares the peer gone at once: it is no peer
// any more (event connection_down with reason left or unresponsive), it
// leaves the DHT's routing table and no DHT query dials it, rpc forgets it
// as a provider, pubsub stops sending to it, its addresses leave the
// peerstore (so provider records held here are served without them), and
// the gater refuses to dial it for departedFor. It comes back as a new
// arrival when it connects again and passes the handshake, which ends the
// refusal. A peer declared dead by mistake (a network blip of several
// seconds) is therefore reachable again by the first connection either side
// makes, at most departedFor later; when pings declared it, the node makes
// that connection itself, recheckAfter later, if the membership still holds
// the peer live (liveness.go).
//
// Pings that fail over relayed connections only say that the path failed
// (the relay died, most often), not the peer: its connections are closed
// and it is no peer any more, but it is not declared departed, since it may
// be reachable through another relay at once.

// Reasons of a connection_down event (event.Event.Reason).
const (
	// ReasonLeft: the peer said goodbye; it closed cleanly.
	ReasonLeft = "left"
	// ReasonUnresponsive: the peer stopped answering pings (killed, cut
	// off, or frozen): the node closed its connections.
	ReasonUnresponsive = "unresponsive"
	// ReasonDisconnected: the peer's last connection closed without a
	// goodbye (a network error, a refusal, a revoked membership).
	ReasonDisconnected = "disconnected"
	// ReasonIdle: this node closed its idle connection to the peer
	// (trim.go); it is dialed again when used.
	ReasonIdle = "idle"
)

const (
	// goodbyeTimeout bounds the goodbyes of a closing node, all peers
	// together.
	goodbyeTimeout = time.Second
	// leaveGrace is how long a peer that said goodbye may keep its
	// connections open (the leaving node flushes pubsub for up to 2 s)
	// before this node closes them.
	leaveGrace = 5 * time.Second
	// departedFor is how long a peer that left or died is not dialed,
	// unless it connects first. It is short because a peer declared dead
	// by mistake (frozen for a few seconds) must become reachable again;
	// by then every routing table that held it has dropped it.
	departedFor = time.Minute
)

// Leave tells the realm that this node leaves: every connected peer drops
// it at once, as when it closes, so that no new call or message comes; then
// it waits, until ctx ends, for the calls it is serving to end. The node
// runs on (its connections stay open, its bootstrap loops stop) until
// Close, which says no second goodbye. A program that stops a node calls
// Leave, closes what it built on the node (its API), then calls Close:
// calls in flight when it stops then end normally.
func (n *Node) Leave(ctx context.Context) error {
	n.mu.Lock()
	if n.closed || n.leaving {
		n.mu.Unlock()
		return nil
	}
	n.leaving = true
	n.mu.Unlock()
	if n.members != nil {
		_ = n.members.Close() // first: see Close
	}
	n.sayGoodbye()
	return n.rpc.Drain(ctx)
}

// sayGoodbye tells every peer of the realm that this node leaves, and waits
// until each has dropped it, for at most goodbyeTimeout in all. It runs in
// Leave, or in Close before the services close.
func (n *Node) sayGoodbye() {
	// Every connected peer, not only those verified here: a peer may have
	// admitted this node before this node's side of the handshake ended.
	peers := n.host.Network().Peers()
	if len(peers) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), goodbyeTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, p := range peers {
		if ok, err := n.host.Peerstore().SupportsProtocols(p, HandshakeProtocol(n.cfg.Realm)); err != nil || len(ok) == 0 {
			if !n.IsPeer(p) {
				continue // of no realm of ours (a relay of another realm, say)
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := n.goodbye(ctx, p); err != nil {
				n.log.Debug("goodbye not confirmed", "peer", p, "err", err)
			}
		}()
	}
	wg.Wait()
}

// goodbye says goodbye to p on an existing connection and waits for p to
// close the stream.
func (n *Node) goodbye(ctx context.Context, p peer.ID) error {
	ctx = network.WithNoDial(network.WithAllowLimitedConn(ctx, "macula goodbye"), "macula goodbye")
	s, err := n.host.NewStream(ctx, p, HandshakeProtocol(n.cfg.Realm))
	if err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	if err := frame.Write(s, frameGoodbye, helloVersion, nil); err != nil {
		_ = s.Reset()
		return err
	}
	_ = s.CloseWrite()
	// The peer closes its side once it has dropped us; it sends nothing.
	_, err = io.Copy(io.Discard, io.LimitReader(s, 1))
	_ = s.Close()
	return err
}

// onGoodbye handles a peer's goodbye.
func (n *Node) onGoodbye(p peer.ID) {
	if n.declareGone(p, ReasonLeft, true) {
		n.log.Info("peer left", "peer", p)
	}
	if n.members != nil {
		n.members.Departed(p)
	}
	// It closes its connections itself once its services have closed;
	// should it not, they are closed here.
	n.spawn(func() {
		t := time.NewTimer(leaveGrace)
		defer t.Stop()
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		n.mu.Lock()
		ps := n.peers[p]
		still := ps != nil && ps.gone == ReasonLeft
		n.mu.Unlock()
		if still {
			closeConns(n.host.Network(), p, network.ConnShutdown)
		}
	})
}

// declareGone makes p no peer of the realm any more, for reason; with
// departed, it also drops p from every service at once (see above). It
// reports whether p was a peer until now; its connection_down event is
// emitted then.
func (n *Node) declareGone(p peer.ID, reason string, departed bool) bool {
	n.mu.Lock()
	ps := n.peers[p]
	wasUp := ps != nil && ps.up()
	if ps != nil {
		ps.gone = reason
		if ps.stopWatch != nil {
			ps.stopWatch()
			ps.stopWatch = nil
		}
	}
	n.peerChangedLocked()
	closed := n.closed
	n.mu.Unlock()
	if closed {
		return false
	}
	if !departed {
		if wasUp {
			n.events.Emit(event.Event{Kind: event.ConnectionDown, Peer: p.String(), Reason: reason})
		}
		return wasUp
	}
	n.gater.depart(p, departedFor)
	n.host.Peerstore().ClearAddrs(p)
	n.dht.ForgetPeer(p)
	n.rpc.PeerGone(p)
	n.pubsub.PeerGone(p)
	if wasUp {
		n.events.Emit(event.Event{Kind: event.ConnectionDown, Peer: p.String(), Reason: reason})
	}
	return wasUp
}
