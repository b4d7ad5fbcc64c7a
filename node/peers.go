package node

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/macula-io/macula/event"
	"github.com/macula-io/macula/peerdid"
	"github.com/macula-io/macula/realm"
)

// peerState is what the node knows of a connected peer.
type peerState struct {
	name  string
	agent string
	// verified holds the connections whose handshake succeeded, each with
	// the Life the peer's hello gave on it.
	verified map[network.Conn]string
	since    time.Time
	// stopWatch ends watchPeer; nil when none runs.
	stopWatch context.CancelFunc
	// probe asks watchPeer to ping now (suspect); set with stopWatch.
	probe chan struct{}
	// gone says why the peer is no peer any more although connections to
	// it may be left: ReasonLeft (it said goodbye) or ReasonUnresponsive
	// (it stopped answering pings). "" while it is a peer.
	gone string
}

// up reports whether the peer counts as a peer of the realm.
func (ps *peerState) up() bool { return len(ps.verified) > 0 && ps.gone == "" }

// PeerInfo describes a connected peer of the realm.
type PeerInfo struct {
	ID    peer.ID
	DID   string
	Alias string
	Name  string
	Agent string
	Addrs []ma.Multiaddr
	// Direction of the oldest connection: "inbound" or "outbound".
	Direction string
	// Path is "direct", or "relayed" when every connection goes through a
	// relay.
	Path string
	// RTT is the smoothed round-trip time to the peer (zero until measured).
	RTT   time.Duration
	Since time.Time
	// DirectSince is when the oldest direct connection to the peer opened
	// (zero while every connection is relayed): how long after a relayed
	// first contact the path became direct, by the node's own clock.
	DirectSince time.Time
}

// Peers returns the connected peers of the realm, sorted by peer ID.
func (n *Node) Peers() []PeerInfo {
	n.mu.Lock()
	var out []PeerInfo
	for id, ps := range n.peers {
		if !ps.up() {
			continue
		}
		out = append(out, PeerInfo{ID: id, Name: ps.name, Agent: ps.agent, Since: ps.since})
	}
	n.mu.Unlock()
	for i := range out {
		p := &out[i]
		p.DID = peerdid.Of(p.ID)
		if p.Name != "" && n.namedMember(p.ID, p.Name) {
			p.Alias = realm.Alias(n.cfg.Realm, p.Name)
		}
		conns := n.host.Network().ConnsToPeer(p.ID)
		sort.Slice(conns, func(i, j int) bool { return conns[i].Stat().Opened.Before(conns[j].Stat().Opened) })
		for _, c := range conns {
			p.Addrs = append(p.Addrs, c.RemoteMultiaddr())
		}
		if len(conns) > 0 {
			p.Direction = strings.ToLower(conns[0].Stat().Direction.String())
			p.Path = "relayed"
			for _, c := range conns {
				if !isRelayed(c.RemoteMultiaddr()) {
					if p.Path != "direct" {
						p.DirectSince = c.Stat().Opened
					}
					p.Path = "direct"
				}
			}
		}
		p.RTT = n.host.Peerstore().LatencyEWMA(p.ID)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// isRelayed reports whether a connection's address goes through a circuit
// relay.
func isRelayed(a ma.Multiaddr) bool {
	_, err := a.ValueForProtocol(ma.P_CIRCUIT)
	return err == nil
}

// IsPeer reports whether p is a connected peer of the realm.
func (n *Node) IsPeer(p peer.ID) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	ps, ok := n.peers[p]
	return ok && ps.up()
}

func (n *Node) onConnected(c network.Conn) {
	p := c.RemotePeer()
	n.mu.Lock()
	n.handshaking[p]++
	n.mu.Unlock()
	done := func() {
		n.mu.Lock()
		if n.handshaking[p]--; n.handshaking[p] <= 0 {
			delete(n.handshaking, p)
		}
		n.peerChangedLocked()
		n.mu.Unlock()
	}
	if !n.spawn(func() {
		defer done()
		h, err := n.handshake(n.ctx, c)
		if err != nil {
			if n.ctx.Err() != nil {
				return
			}
			n.handshakeFailed(c, err)
			return
		}
		n.onVerified(c, h)
	}) {
		done()
	}
}

// enter counts a running stream handler that Close waits for; the handler
// calls n.wg.Done when it returns. Once the node is closing it reports false.
func (n *Node) enter() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return false
	}
	n.wg.Add(1)
	return true
}

// spawn runs f in a goroutine that Close waits for. Once the node is closing
// it runs nothing and reports false.
func (n *Node) spawn(f func()) bool {
	if !n.enter() {
		return false
	}
	go func() {
		defer n.wg.Done()
		f()
	}()
	return true
}

// handshakeFailed closes a connection whose realm handshake failed and
// refuses its peer: at once when it is of another realm, after maxStrikes
// failures otherwise (it may have closed first, hiding why).
func (n *Node) handshakeFailed(c network.Conn, err error) {
	p := c.RemotePeer()
	if errors.Is(err, errRefusedByPeer) {
		// The peer is fine: it refused this node, whose own membership is
		// missing, expired or revoked.
		n.refusedByPeer(p, err)
		_ = c.CloseWithError(codeHandshakeFailed)
		return
	}
	refused := false
	if errors.Is(err, ErrNotMember) {
		n.gater.refuse(p, nonMemberRefuseFor, refusedNonMember)
		refused = true
	} else if errors.Is(err, ErrOtherRealm) {
		n.gater.refuse(p, n.cfg.RefuseFor, refusedOtherRealm)
		refused = true
	} else if !isRelayed(c.RemoteMultiaddr()) && strikeWorthy(err) {
		// No strike for a relayed connection: its handshake fails with the
		// path (a relay that died, a circuit reset while both ends redial
		// after a relay's death), and counting those refused live peers
		// of the realm for RefuseFor (seen in the NAT lab's relay failover).
		refused = n.gater.strike(p, n.cfg.RefuseFor)
	}
	switch {
	case errors.Is(err, ErrNotMember):
		n.log.Warn("peer refused: no valid membership grant from the realm authority", "peer", p, "addr", c.RemoteMultiaddr(), "err", err)
	case errors.Is(err, ErrOtherRealm):
		n.log.Warn("peer refused: not in this realm", "peer", p, "addr", c.RemoteMultiaddr(), "err", err)
	case refused:
		n.log.Warn("peer refused: realm handshake failed repeatedly", "peer", p, "addr", c.RemoteMultiaddr(), "err", err)
	default:
		n.log.Debug("realm handshake failed", "peer", p, "addr", c.RemoteMultiaddr(), "err", err)
	}
	n.peerChanged()
	if refused {
		n.events.Emit(event.Event{Kind: event.PeerRefused, Peer: p.String(), Addr: c.RemoteMultiaddr().String(), Reason: err.Error()})
	}
	if errors.Is(err, ErrNotMember) {
		// Let the peer read why first (our refusal frame on its handshake
		// stream); until then it has no verdict, so nothing serves it.
		time.AfterFunc(refusalGrace, func() { _ = c.CloseWithError(codeRefused) })
		return
	}
	switch {
	case refused:
		_ = c.CloseWithError(codeRefused)
	case strikeWorthy(err):
		_ = c.CloseWithError(network.ConnProtocolViolation)
	default:
		_ = c.CloseWithError(codeHandshakeFailed)
	}
}

// notePeerName records the name a peer gave in its own hello.
func (n *Node) notePeerName(p peer.ID, h hello) {
	n.mu.Lock()
	defer n.mu.Unlock()
	ps := n.peers[p]
	if ps == nil {
		ps = &peerState{verified: map[network.Conn]string{}}
		n.peers[p] = ps
	}
	ps.name, ps.agent = h.Name, h.Agent
}

func (n *Node) onVerified(c network.Conn, h hello) {
	p := c.RemotePeer()
	n.mu.Lock()
	if n.closed || c.IsClosed() {
		n.mu.Unlock()
		return
	}
	ps := n.peers[p]
	if ps == nil {
		ps = &peerState{verified: map[network.Conn]string{}}
		n.peers[p] = ps
	}
	// A peer that left or was declared dead and is back on a new
	// connection is a new arrival.
	first := !ps.up()
	if ps.gone != "" {
		for vc := range ps.verified {
			if vc.IsClosed() {
				delete(ps.verified, vc)
			}
		}
		ps.gone = ""
	}
	earlier := earlierLives(ps.verified, c, h.Life)
	ps.verified[c] = h.Life
	ps.name, ps.agent = h.Name, h.Agent
	delete(n.refusedBy, p)
	n.peerChangedLocked()
	if first {
		ps.since = time.Now()
	}
	if len(earlier) > 0 && ps.stopWatch != nil {
		// The peer restarted: the misses its watcher counted against the
		// earlier life (pings a killed process never answered, and the
		// one that fails when that life's connection closes below) say
		// nothing of this one. Left to go on, the watcher declared the new
		// life gone and closed its fresh connection with the old; the
		// handshakes cut that way counted as strikes on both sides, and
		// the two nodes refused each other for minutes (the soak of
		// 2026-12-06: hundreds of failed calls between live nodes, once
		// the membership's slower failure detection no longer closed the
		// earlier life before the restart).
		ps.stopWatch()
		ps.stopWatch = nil
	}
	if (first || len(earlier) > 0) && ps.stopWatch == nil {
		var wctx context.Context
		wctx, ps.stopWatch = context.WithCancel(n.ctx)
		ps.probe = make(chan struct{}, 1)
		n.wg.Add(1)
		go n.watchPeer(wctx, p, n.activity.track(p), ps.probe)
	}
	n.mu.Unlock()
	for _, old := range earlier {
		// Dead since the peer restarted, and not closed by QUIC until its
		// idle timeout (~20 s): a node that was itself stopped (SIGSTOP, a
		// suspended VM) while its peer was killed and restarted kept
		// calling over the old connection, whose rpc stream libp2p prefers,
		// while its pings answered over the new one.
		n.log.Info("closing a connection of the peer's earlier life", "peer", p, "addr", old.RemoteMultiaddr())
		_ = old.CloseWithError(codeEarlierLife)
	}
	n.gater.returned(p) // dialable again, if it had gone
	if !first {
		return
	}
	n.log.Info("peer connected", "peer", p, "name", h.Name, "addr", c.RemoteMultiaddr())
	n.checkPeerName(p, h.Name)
	path := "direct"
	if isRelayed(c.RemoteMultiaddr()) {
		path = "relayed"
	}
	e := event.Event{Kind: event.ConnectionUp, Peer: p.String(), Name: h.Name,
		Addr: c.RemoteMultiaddr().String(), Direction: strings.ToLower(c.Stat().Direction.String()), Path: path,
		DID: peerdid.Of(p)}
	n.events.Emit(e)
	if x := n.rev.Load(); x != nil {
		x.SendAll(p)
	}
	n.aliasPub.Wake() // a record not published yet has a peer to go to
}

// earlierLives returns the verified connections, other than c, whose Life
// is not life: the peer gave life on c, in a handshake just done, so those
// are of a run of it that has ended. Connections of a peer that sends no
// Life are never in it.
func earlierLives(verified map[network.Conn]string, c network.Conn, life string) []network.Conn {
	if life == "" {
		return nil
	}
	var out []network.Conn
	for vc, l := range verified {
		if vc != c && l != "" && l != life {
			out = append(out, vc)
		}
	}
	return out
}

func (n *Node) onDisconnected(c network.Conn) {
	p := c.RemotePeer()
	n.mu.Lock()
	ps := n.peers[p]
	wasUp := false
	if ps != nil {
		_, wasUp = ps.verified[c]
		delete(ps.verified, c)
		if len(ps.verified) == 0 && ps.stopWatch != nil {
			ps.stopWatch()
			ps.stopWatch = nil
			n.activity.forget(p)
		}
		if len(ps.verified) == 0 && n.host.Network().Connectedness(p) != network.Connected {
			delete(n.peers, p)
		}
	}
	if n.host.Network().Connectedness(p) != network.Connected {
		// Also for a peer admitted by its own handshake whose connection
		// closed before ours verified it.
		n.forgetVerdict(p)
	}
	// A peer already declared gone had its connection_down then.
	down := wasUp && ps != nil && ps.gone == "" && len(ps.verified) == 0
	idle := n.idleClosed[c]
	delete(n.idleClosed, c)
	if ch, ok := n.redial[p]; ok && n.host.Network().Connectedness(p) != network.Connected {
		// Closed as idle by this node: redialed only when the node has
		// no peer left (or the membership says the peer failed or left).
		// Any other close is a drop, redialed at once: the peer's refusal
		// (the node must hear it, to say how to renew its membership), or
		// this node's own stop (SIGSTOP: its peers dropped it, and the
		// redial is how it comes back), or the peer's trimming of a
		// connection it opened (one connection, which this node trims in
		// turn; the redial refreshes the routing table only when the node
		// was alone, see maintain).
		notifyRedial(ch, idle)
	}
	if wasUp && n.upPeersLocked() == 0 {
		// The node lost its last peer: the bootstrap peers whose idle
		// connections it trimmed are redialed now (trim.go).
		for bp, ch := range n.redial {
			if bp != p && n.host.Network().Connectedness(bp) != network.Connected {
				notifyRedial(ch, false)
			}
		}
	}
	n.peerChangedLocked()
	closed := n.closed
	n.mu.Unlock()
	if down && !closed {
		reason := ReasonDisconnected
		if idle {
			reason = ReasonIdle
		}
		// A live member's connection closing is routine (this node or the
		// peer trimmed it as idle: trim.go); its death or departure is the
		// membership's to report. Anything else is worth a line.
		if _, member := n.members.Get(p); idle || member {
			n.log.Debug("peer disconnected", "peer", p, "reason", reason)
		} else {
			n.log.Info("peer disconnected", "peer", p)
		}
		n.events.Emit(event.Event{Kind: event.ConnectionDown, Peer: p.String(), Addr: c.RemoteMultiaddr().String(), Reason: reason})
	}
}

// Connect dials a peer and waits for the realm handshake on the connection.
func (n *Node) Connect(ctx context.Context, ai peer.AddrInfo) error {
	if err := n.host.Connect(ctx, ai); err != nil {
		return err
	}
	return n.awaitPeer(ctx, ai.ID, func() bool { return n.IsPeer(ai.ID) }, true)
}

// errHandshakeLost: the peer's last connection closed before the realm
// handshake on it ended.
var errHandshakeLost = errors.New("connection closed during the realm handshake")

// awaitPeer is the one way the node waits for a peer's state: until ready
// holds for p. It fails when p is refused (ErrNotMember or ErrOtherRealm),
// when ctx or the node ends, and, if connected is set, as soon as p has no
// connection left (a relayed one counts). It wakes on every change of a peer's state (changed),
// never by polling.
func (n *Node) awaitPeer(ctx context.Context, p peer.ID, ready func() bool, connected bool) error {
	for {
		n.mu.Lock()
		ch := n.changed
		n.mu.Unlock()
		if ready() {
			return nil
		}
		if err := n.refusalOf(p); err != nil {
			return err
		}
		// A relayed connection is Limited, not Connected: it counts. A
		// handshake still running on a closed connection ends soon (its
		// stream fails), having perhaps read why the peer refused us.
		if connected && n.host.Network().Connectedness(p) == network.NotConnected && !n.handshakeRunning(p) {
			return fmt.Errorf("%s: %w", p, errHandshakeLost)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-n.ctx.Done():
			return ErrClosed
		}
	}
}

// handshakeRunning reports whether a realm handshake with p is running.
func (n *Node) handshakeRunning(p peer.ID) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.handshaking[p] > 0
}

// errHandshakesFailing: the peer is refused after repeated failed
// handshakes whose cause could not be told.
var errHandshakesFailing = errors.New("realm handshake failed repeatedly")

// refusalOf returns why p is refused (by this node's gater, or p refused
// this node), nil when it is not.
func (n *Node) refusalOf(p peer.ID) error {
	n.mu.Lock()
	err := n.refusedBy[p]
	n.mu.Unlock()
	if err != nil {
		return err
	}
	r, ok := n.gater.refusalOf(p)
	switch {
	case !ok:
		return nil
	case r.why == refusedNonMember:
		return fmt.Errorf("%w: %s presented no valid membership grant", ErrNotMember, p)
	case r.why == refusedStrikes:
		return fmt.Errorf("%s: %w", p, errHandshakesFailing)
	}
	return fmt.Errorf("%w: %s refused the realm handshake", ErrOtherRealm, p)
}

// peerChanged wakes every awaitPeer.
func (n *Node) peerChanged() {
	n.mu.Lock()
	n.peerChangedLocked()
	n.mu.Unlock()
}

func (n *Node) peerChangedLocked() {
	close(n.changed)
	n.changed = make(chan struct{})
}

// checkPeerName says, on the side of the nodes that know a binding, that a
// peer came with the name of an alias bound to another key: the impostor
// learns that its alias is taken and does not publish it, so without this
// line only the impostor's own log would tell.
func (n *Node) checkPeerName(p peer.ID, name string) {
	a := realm.Alias(n.cfg.Realm, name)
	did := peerdid.Of(p)
	holder, ok := n.did, name == n.cfg.Name
	if !ok {
		holder, ok = n.aliasV.BoundTo(a)
	}
	if ok && did != "" && holder != did {
		n.log.Warn("refused alias claim by another key: a peer uses a name whose alias is bound to another key", "alias", a,
			"bound_to", holder, "claimed_by", did, "peer", p)
	}
}

// upPeersLocked counts the realm peers the node has.
func (n *Node) upPeersLocked() int {
	up := 0
	for _, ps := range n.peers {
		if ps.up() {
			up++
		}
	}
	return up
}

// notifyRedial tells a bootstrap loop that its peer's connection closed:
// trimmed (as idle, by this node) or not (redial). The channel holds one
// notice, and a redial is never overwritten by a trim: only the loop
// receives, and only onDisconnected sends, under Node.mu.
func notifyRedial(ch chan bool, trimmed bool) {
	select {
	case ch <- trimmed:
		return
	default:
	}
	if trimmed {
		return // a notice stands; either it says the same, or it asks for a redial
	}
	select {
	case <-ch:
	default:
	}
	select {
	case ch <- false:
	default:
	}
}
