package node

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/metrics"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/macula-io/macula/dht"
	"github.com/macula-io/macula/member"
	"github.com/macula-io/macula/pubsub"
	"github.com/macula-io/macula/rpc"
)

// Which peers are in use.
//
// The node pings a peer every livenessInterval only while it depends on
// that peer: while this node sent it calls or pub/sub messages within
// activeFor (liveness.go). An idle peer is not pinged (the membership and
// QUIC's keep-alives find it dead), so that the idle cost of a node does
// not grow with the number of peers of its realm. rpc and pub/sub tell the
// node of each call and message they send (their Config.Depends): the
// traffic of their protocols is no such sign, since a node sends its
// advertisements and interests over the same streams to every peer it
// links to, so every new connection between two nodes that advertise or
// subscribe, a DHT lookup's say, set off pings both ways for activeFor
// (and a callee pinged its callers). A callee's or a subscriber's death
// matters to the node that sends to it; the sender's death does not.
//
// The traffic itself, seen through libp2p's bandwidth reporter hook (called
// on every read and write of a stream), counts only as use of the
// connection, which trimming keeps (trim.go): calls, messages and their
// links, and DHT requests. The membership's heartbeats, the registry's
// digests, identify and the pings themselves do not count (they run
// whether or not the peer is used). A DHT request is no dependency either:
// the DHT bounds each request by the peer's round-trip time and has a peer
// that leaves one unanswered probed at once (dht/sender.go, Node.suspect),
// which finds a dead peer sooner than pings every second would. Counted as
// one, every lookup made the looking node and each peer it asked ping each
// other at once and then every second for activeFor, both ways: in a
// 50-node realm under lookups those pings were three times the CPU of the
// DHT's own work (perf).

const (
	// activeFor is how long after its last call or message a peer counts
	// as in use.
	activeFor = 10 * time.Second
	// activityResolution: a peer's times of last use are updated at most
	// this often (a stream read or write costs one atomic load then).
	activityResolution = 100 * time.Millisecond
)

// activity records, per realm peer, when it was last used. It implements
// libp2p's metrics.Reporter; only the per-stream calls do anything.
type activity struct {
	counted map[protocol.ID]bool // read-only after newActivity
	peers   sync.Map             // peer.ID -> *peerUse, for the realm's peers only
}

// peerUse is one peer's times of last use, and the wake-up of its watcher
// when it goes from idle to in use.
type peerUse struct {
	last atomic.Int64 // unix nanoseconds, of any counted traffic (trimming)
	dep  atomic.Int64 // unix nanoseconds, of calls and messages sent (liveness)
	wake chan struct{}
}

func newActivity(realmName string) *activity {
	return &activity{counted: map[protocol.ID]bool{
		rpc.Protocol(realmName):                      true,
		rpc.ProtocolTrace(realmName):                 true, // what callers open first
		pubsub.Protocol(realmName):                   true,
		dht.ProtocolPrefix(realmName) + "/kad/1.0.0": true,
	}}
}

// track starts recording p's use and returns its record. A new peer's
// connection counts as used (it was opened for a reason, and trimming
// spares it a while), but the node does not depend on the peer until it
// sends it calls or messages.
func (a *activity) track(p peer.ID) *peerUse {
	u := &peerUse{wake: make(chan struct{}, 1)}
	u.last.Store(time.Now().UnixNano())
	v, _ := a.peers.LoadOrStore(p, u)
	return v.(*peerUse)
}

// forget stops recording p (its last connection closed).
func (a *activity) forget(p peer.ID) { a.peers.Delete(p) }

// inUse reports whether this node sent calls or messages to p within
// activeFor: whether its watcher pings it.
func (u *peerUse) inUse(now time.Time) bool {
	return now.UnixNano()-u.dep.Load() < int64(activeFor)
}

// wakeUp makes p's watcher ping at once (a ping that fails then is
// followed by the next one livenessInterval later).
func (a *activity) wakeUp(p peer.ID) {
	if v, ok := a.peers.Load(p); ok {
		select {
		case v.(*peerUse).wake <- struct{}{}:
		default:
		}
	}
}

// used records traffic of proto with p: use of the connection.
func (a *activity) used(proto protocol.ID, p peer.ID) {
	if !a.counted[proto] {
		return
	}
	if v, ok := a.peers.Load(p); ok {
		touch(&v.(*peerUse).last, time.Now().UnixNano())
	}
}

// depends records that this node sent p a call or a message (rpc's and
// pub/sub's Config.Depends): p is in use, and pinged while it stays so.
func (a *activity) depends(p peer.ID) {
	v, ok := a.peers.Load(p)
	if !ok {
		return
	}
	u := v.(*peerUse)
	now := time.Now().UnixNano()
	touch(&u.last, now)
	if last, ok := touch(&u.dep, now); ok && now-last >= int64(activeFor) {
		// Idle until now: the watcher checks the peer at once, so that a
		// call to a peer that died while idle fails within the liveness
		// window, not when the membership or QUIC's idle timeout
		// finds it.
		select {
		case u.wake <- struct{}{}:
		default:
		}
	}
}

// touch sets t to now unless it was set within activityResolution (a
// stream read or write then costs one atomic load); it returns t's earlier
// value and whether it set it.
func touch(t *atomic.Int64, now int64) (before int64, set bool) {
	before = t.Load()
	if now-before < int64(activityResolution) || !t.CompareAndSwap(before, now) {
		return before, false
	}
	return before, true
}

// A read or write of nothing is no use: a stream that ends reads nothing
// (a connection closing as idle looked used the moment it closed).
func (a *activity) LogSentMessageStream(n int64, proto protocol.ID, p peer.ID) {
	if n > 0 {
		a.used(proto, p)
	}
}

func (a *activity) LogRecvMessageStream(n int64, proto protocol.ID, p peer.ID) {
	if n > 0 {
		a.used(proto, p)
	}
}

// The rest of metrics.Reporter: no bandwidth is counted.

func (a *activity) LogSentMessage(int64)                                  {}
func (a *activity) LogRecvMessage(int64)                                  {}
func (a *activity) GetBandwidthForPeer(peer.ID) metrics.Stats             { return metrics.Stats{} }
func (a *activity) GetBandwidthForProtocol(protocol.ID) metrics.Stats     { return metrics.Stats{} }
func (a *activity) GetBandwidthTotals() metrics.Stats                     { return metrics.Stats{} }
func (a *activity) GetBandwidthByPeer() map[peer.ID]metrics.Stats         { return nil }
func (a *activity) GetBandwidthByProtocol() map[protocol.ID]metrics.Stats { return nil }
func (a *activity) Reset()                                                {}
func (a *activity) TrimIdle(time.Time)                                    {}

var _ metrics.Reporter = (*activity)(nil)

// watchFailures makes the liveness watcher of a peer that the membership
// declares failed check it at once: an idle peer is not pinged, and the
// membership's overlay watches every member at a cost that does not grow
// with the realm. A bootstrap peer that fails or leaves is redialed (see
// onDisconnected).
func (n *Node) watchFailures() {
	defer n.wg.Done()
	for c := range n.members.Watch(n.ctx) {
		if c.Kind == member.Failed {
			n.activity.wakeUp(c.Member.ID)
		}
		if c.Kind == member.Joined && n.gater.gone(c.Member.ID) {
			// A member back from a failure that this node had declared
			// gone for missed pings: it was stalled, not dead (its
			// failure may have been declared before the recheck).
			p := c.Member.ID
			n.spawn(func() { n.recheckGone(p, 0) })
		}
		if c.Kind == member.Failed || c.Kind == member.Left {
			// A bootstrap peer waiting to be redialed only when the node
			// is alone (its connection closed as idle) is gone: its loop
			// redials it from now on, as for any drop.
			n.mu.Lock()
			if ch, ok := n.redial[c.Member.ID]; ok && n.host.Network().Connectedness(c.Member.ID) != network.Connected {
				notifyRedial(ch, false)
			}
			n.mu.Unlock()
		}
	}
}
