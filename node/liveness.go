package node

import (
	"context"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/macula-io/macula/internal/heard"
	"github.com/macula-io/macula/internal/rtt"
)

// Liveness: a peer that dies without closing its connections (kill -9, a
// cable) is only noticed by QUIC's idle timeout, 30s in libp2p. The node pings
// each realm peer in use every livenessInterval (below); one that misses livenessMisses
// pings in a row (each waited for livenessTimeout) has its connections
// closed and is declared gone (leave.go), so that every service drops it at
// once: rpc moves its calls to other providers, pubsub stops queueing for
// it, the DHT stops asking it. Two misses, not one, so that a node stalled
// for a moment (a GC pause, a loaded machine) keeps its peers. A ping
// that times out while the peer's packets kept arriving on a direct QUIC
// connection (its acknowledgement of the ping, at least) is not a miss:
// the peer is alive, only slow to answer, as every node is on a machine
// starting 50 of them on two cores, where dropping live peers and
// redialling them fed the load (thousands in a minute). A stopped or dead
// process sends nothing; over a relay the counts are the relay's, and a
// timeout is a miss.
//
// Only peers in use (activity.go: this node sent them calls or messages
// within activeFor; DHT requests have their own bound and probe,
// dht/sender.go) are pinged, every livenessInterval; an idle peer is not
// pinged at all, so that an idle node's cost does not grow with its realm.
// Its death is still found: by the membership, whose watchers on the
// overlay find a silent node within seconds and declare it failed (the
// node then checks the peer at once), and by QUIC, whose keep-alives
// close a dead peer's connection after its idle timeout (30 s). An idle
// peer is also checked at once when it is used again, so a dead one is
// found within the liveness window of the moment it matters. After a
// missed ping the next comes livenessInterval later, in use or not. (In a
// realm of 50 nodes, the idle pings, one every 30 s each way to each
// peer, were most of an idle node's packets.)
//
// A peer the node is using and that stops answering is found out sooner.
// When it leaves a DHT request unanswered past a bound set by its
// round-trip time (the DHT's Unresponsive), it is suspect: its watcher pings it at
// once, with a timeout of probeRTTs of its round-trip times but at least
// livenessProbeTimeout, and again at once after a miss. Two misses in a row
// declare it gone, as above: about 3 s after a kill, where a peer pinged
// every second takes 4 to 5 s. The first answer ends the suspicion (the
// DHT asks the peer again: Responsive).
const (
	livenessTimeout = 2 * time.Second
	livenessMisses  = 2
	// livenessProbeTimeout is the least wait for the answer to a suspect's
	// ping; probeRTTs of its round-trip times when that is longer, at most
	// livenessTimeout.
	livenessProbeTimeout = time.Second
	probeRTTs            = 10
)

// livenessInterval is a variable for tests only (a long one leaves
// suspects to be found out by probes alone).
var livenessInterval = time.Second

// suspect asks p's liveness watcher to ping it now: p left a request
// unanswered. It never blocks (a probe asked for already stands).
func (n *Node) suspect(p peer.ID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if ps := n.peers[p]; ps != nil && ps.probe != nil {
		select {
		case ps.probe <- struct{}{}:
		default:
		}
	}
}

// probeTimeout is the wait for a suspect's answer.
func (n *Node) probeTimeout(p peer.ID) time.Duration {
	return min(max(probeRTTs*rtt.Of(n.host, p), livenessProbeTimeout), livenessTimeout)
}

// watchPeer pings p until ctx ends or p is declared gone; u says whether
// p is in use, probe asks for a ping now (suspect).
func (n *Node) watchPeer(ctx context.Context, p peer.ID, u *peerUse, probe <-chan struct{}) {
	defer n.wg.Done()
	// A timer set for the next ping that may be due, not a ticker: an idle
	// peer's watcher sleeps until the peer is used (u.wake) or suspect, so
	// that a node's idle peers cost it no wake-up at all.
	t := time.NewTimer(livenessInterval)
	defer t.Stop()
	misses := 0
	urgent := false // suspect: ping at once, with probeTimeout, until it answers
	for {
		if !urgent {
			select { // a probe asked for goes before a tick
			case <-probe:
				urgent = true
			default:
			}
		}
		if !urgent {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				// An idle peer that answered is not pinged: the timer
				// stays stopped until its use wakes the watcher.
				if misses == 0 && !u.inUse(time.Now()) {
					continue
				}
			case <-u.wake:
			case <-probe:
				urgent = true
			}
		} else if ctx.Err() != nil {
			return
		}
		// The next ping that may be due, in use or after a miss; an idle
		// peer's is dropped when the timer fires (above).
		t.Reset(livenessInterval)
		timeout := livenessTimeout
		if urgent {
			timeout = n.probeTimeout(p)
			n.probes.Add(1)
		}
		pctx, cancel := context.WithTimeout(ctx, timeout)
		before, direct := heard.Packets(n.host, p)
		res, ok := <-ping.Ping(network.WithAllowLimitedConn(pctx, "macula liveness"), n.host, p)
		timedOut := pctx.Err() != nil
		cancel()
		if ctx.Err() != nil {
			return
		}
		answered := ok && res.Error == nil
		if !answered && timedOut && direct {
			// The peer's packets still arrive (QUIC acknowledged the
			// ping, at least): it is alive, only slow to answer, as on
			// a machine so loaded that the handler waits for a core;
			// declaring it gone would drop and redial it, and feed the
			// load. A dead or frozen process sends nothing.
			if after, _ := heard.Packets(n.host, p); after > before {
				n.pingsLate.Add(1)
				n.log.Debug("peer's ping answer is late, but its packets arrive; it stays", "peer", p, "timeout", timeout)
				answered = true
			}
		}
		if answered {
			misses = 0
			if urgent {
				urgent = false
				n.probesAnswered.Add(1)
				n.dht.Responsive(p)
			}
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
			n.log.Warn("peer does not answer pings; closing its connections", "peer", p, "misses", misses, "suspect", urgent, "relayed", relayedOnly)
			n.declareGone(p, ReasonUnresponsive, !relayedOnly)
			closeConns(n.host.Network(), p, codeUnresponsive)
			n.forgetRelay(p)
			if !relayedOnly {
				n.spawn(func() { n.recheckGone(p, recheckAfter) })
			}
			return
		}
	}
}

// recheckAfter is how long after declaring a peer gone for missed pings
// the node asks the membership whether it was right. By then a dead peer
// is failed there too (its watchers hear nothing for the membership's
// ProbeTimeout, 5 s; this node's own suspicion, raised when it closed the
// connections, needs one confirmation), and a live one has refuted the
// suspicion.
const recheckAfter = 10 * time.Second

// recheckGone dials p once, recheckAfter after the node declared it gone
// for missed pings, if the membership still holds it live: its pings were
// lost to a stall (this node's or its own: a machine so loaded that
// neither side sent for seconds), not to its death. Otherwise the gater
// would refuse to dial it for departedFor unless it dialed first (and it
// may have declared this node gone too), and calls to it would fail for a
// minute while the rest of the realm reaches it. The connection, once
// through the handshake, makes it a peer of every service again; a dial
// that fails leaves it gone. The membership's own verdict may come first:
// a member it declared failed and that comes back (Joined) is rechecked at
// once (watchFailures), since the check after recheckAfter may have found
// it failed.
func (n *Node) recheckGone(p peer.ID, after time.Duration) {
	t := time.NewTimer(after)
	defer t.Stop()
	select {
	case <-n.ctx.Done():
		return
	case <-t.C:
	}
	if n.members == nil || n.isLeaving() || !n.gater.gone(p) {
		return // it came back already (it dialed), or its departure ended
	}
	addrs := n.members.Addrs(p)
	if len(addrs) == 0 {
		return // failed or left: the membership agrees
	}
	ctx, cancel := context.WithTimeout(n.ctx, dialTimeout)
	defer cancel()
	allowed := n.gater.allowDial(p)
	defer allowed()
	n.rechecks.Add(1)
	if err := n.Connect(ctx, peer.AddrInfo{ID: p, Addrs: addrs}); err != nil {
		n.log.Info("peer declared gone is still a member but does not answer a dial; it stays gone", "peer", p, "err", err)
		return
	}
	n.log.Info("peer declared gone for missed pings was alive: connected again", "peer", p)
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
