package node

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/macula-io/macula/nat"
)

// NAT-aware punching: who dials is chosen by the NAT types the two nodes
// measured (STUN), instead of DCUtR's fixed roles.
//
// The case it handles: a node behind symmetric NAT receives a relayed
// connection from a peer whose NAT maps endpoint-independently and filters
// by at most the remote address (full cone, restricted). go-libp2p's DCUtR
// makes the symmetric node, which receives the relayed connection, wait for
// the peer's QUIC dial on its first two attempts; the peer dials the
// symmetric node's observed ports, which are not the ports its NAT maps
// towards this peer, so both attempts time out (5 s each) and only the third,
// with the roles switched, gets through (about 10.5 s). The symmetric node
// can dial such a peer at once: a full cone accepts any source, and a
// restricted cone accepts any port of an address it has sent to.
//
// So when a relayed connection comes in to a symmetric node, it asks the
// peer over that connection (PunchProtocol) for its NAT type and STUN
// address. A restricted peer first sends a few UDP packets from its QUIC
// socket to the symmetric node's public IP, opening its filter for that
// address. If the peer is full cone or restricted, the symmetric node dials
// the peer's STUN address directly (one QUIC dial, bounded by
// punchDialTimeout). Meanwhile DCUtR, which starts at about the same time,
// is held in its address filter (punchFilter, at most punchDecideWait): were
// its first hole punch (which only waits for an inbound QUIC connection from
// the peer's address) pending, the swarm would merge our dial to the same
// address into it, and both would fail ("hole punching attempted; no active
// dial"). When the dial works, the filter gives DCUtR no addresses and it
// stops; when it fails, for any other peer type, or when the exchange fails,
// DCUtR runs as before.

// PunchProtocol returns the protocol ID of the NAT-type exchange.
func PunchProtocol(realmName string) protocol.ID {
	return protocol.ID("/macula/" + realmName + "/punch/1.0.0")
}

const (
	// punchVerifyWait bounds the wait for the realm handshake before the
	// exchange (requester) or before answering (responder).
	punchVerifyWait = 5 * time.Second
	// punchStreamTimeout bounds the exchange on the stream.
	punchStreamTimeout = 3 * time.Second
	// punchDialTimeout bounds the direct dial (QUIC resends its first
	// packets within it).
	punchDialTimeout = 2 * time.Second
	// punchDecideWait bounds how long DCUtR's address filter waits for the
	// exchange and the dial.
	punchDecideWait = 4 * time.Second
	// punchOpenPackets is how many packets a restricted-cone peer sends to
	// open its filter.
	punchOpenPackets = 3
	punchMsgMax      = 1024
)

// punchOpenPayload is what a restricted-cone node sends to open its NAT's
// filter: not QUIC (its first byte has the fixed bit clear) and not STUN.
var punchOpenPayload = []byte("\x00macula-punch")

// punchMsg is the one message each side sends on a PunchProtocol stream.
type punchMsg struct {
	// Type is the sender's NAT type (nat.Type).
	Type string `json:"type"`
	// Addr is the sender's public ip:port from STUN (empty when unknown).
	// From a symmetric node it only carries its public IP.
	Addr string `json:"addr,omitempty"`
	// Opened: the sender has sent packets to the requester's IP.
	Opened bool `json:"opened,omitempty"`
}

// punchState tracks the punches a node runs, one per peer at most.
type punchState struct {
	mu    sync.Mutex
	tries map[peer.ID]*punchTry
	bday  bdayState
}

// punchTry is one running punch; done is closed once ours is set.
type punchTry struct {
	done chan struct{}
	ours bool // we dial; DCUtR must not punch towards this peer
}

func (t *punchTry) decide(ours bool) {
	select {
	case <-t.done:
	default:
		t.ours = ours
		close(t.done)
	}
}

// holePunchOptions are the options of go-libp2p's hole punching service.
func (n *Node) holePunchOptions() []holepunch.Option {
	return []holepunch.Option{holepunch.WithAddrFilter(punchFilter{n})}
}

// punchFilter is DCUtR's address filter: it hides a peer's addresses from
// DCUtR while our own punch towards it is decided for.
type punchFilter struct{ n *Node }

func (f punchFilter) FilterLocal(_ peer.ID, addrs []ma.Multiaddr) []ma.Multiaddr { return addrs }

func (f punchFilter) FilterRemote(p peer.ID, addrs []ma.Multiaddr) []ma.Multiaddr {
	n := f.n
	n.punch.mu.Lock()
	t := n.punch.tries[p]
	n.punch.mu.Unlock()
	if t == nil {
		return addrs
	}
	timer := time.NewTimer(punchDecideWait)
	defer timer.Stop()
	select {
	case <-t.done:
		if t.ours {
			n.log.Debug("punch: DCUtR left out; this node dials", "peer", p)
			return nil
		}
	case <-timer.C:
	case <-n.ctx.Done():
	}
	return addrs
}

// startPunch starts a punch for a relayed connection that came in, when
// this node is behind symmetric or port-restricted NAT (birthday probing,
// birthday.go). Called for every new connection.
func (n *Node) startPunch(c network.Conn) {
	if c.Stat().Direction != network.DirInbound || !isRelayed(c.RemoteMultiaddr()) {
		return
	}
	self := n.NAT()
	if self.Type != nat.TypeSymmetric && self.Type != nat.TypePortRestricted {
		return
	}
	p := c.RemotePeer()
	n.punch.mu.Lock()
	if n.punch.tries == nil {
		n.punch.tries = make(map[peer.ID]*punchTry)
	}
	if n.punch.tries[p] != nil {
		n.punch.mu.Unlock()
		return
	}
	t := &punchTry{done: make(chan struct{})}
	n.punch.tries[p] = t
	n.punch.mu.Unlock()

	if !n.spawn(func() {
		defer n.endPunch(p, t)
		n.runPunch(c, t, self)
	}) {
		n.endPunch(p, t)
	}
}

func (n *Node) endPunch(p peer.ID, t *punchTry) {
	t.decide(false)
	n.punch.mu.Lock()
	if n.punch.tries[p] == t {
		delete(n.punch.tries, p)
	}
	n.punch.mu.Unlock()
}

// directConn reports whether the node has a direct connection to p.
func directConn(n *Node, p peer.ID) bool {
	for _, c := range n.host.Network().ConnsToPeer(p) {
		if !isRelayed(c.RemoteMultiaddr()) {
			return true
		}
	}
	return false
}

// waitPeer waits until p is a verified peer of the realm, for at most d.
func (n *Node) waitPeer(ctx context.Context, p peer.ID, d time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return n.awaitPeer(ctx, p, func() bool { return n.IsPeer(p) }, true) == nil
}

// runPunch asks the peer of c for its NAT type and dials it directly when
// its NAT lets a symmetric node through.
func (n *Node) runPunch(c network.Conn, t *punchTry, self nat.Info) {
	p := c.RemotePeer()
	ctx, cancel := context.WithTimeout(n.ctx, punchVerifyWait+punchStreamTimeout+punchDialTimeout)
	defer cancel()
	if !n.waitPeer(ctx, p, punchVerifyWait) || directConn(n, p) {
		return
	}
	req := punchMsg{Type: string(self.Type)}
	if ap, ok := self.PublicAddr(); ok {
		req.Addr = ap.String()
	}
	reply, err := n.punchExchange(ctx, p, req)
	if err != nil {
		n.log.Debug("punch: exchange failed; DCUtR goes on", "peer", p, "err", err)
		return
	}
	// Port-restricted with symmetric: birthday probing (birthday.go), while
	// DCUtR waits; DCUtR goes on when it fails.
	if role := bdayRoleFor(self.Type, nat.Type(reply.Type)); role != bdayNone {
		if n.runBirthday(role, p, self, reply.Addr) {
			t.decide(true)
		}
		return
	}
	if self.Type != nat.TypeSymmetric {
		return
	}
	target, ok := punchTarget(reply)
	if !ok {
		n.log.Debug("punch: peer's NAT needs DCUtR", "peer", p, "type", reply.Type)
		return
	}
	// DCUtR waits (in punchFilter) while this dial runs, so that it does
	// not start its own punch towards the same address, which the swarm
	// would merge with this dial. Only when the dial fails does DCUtR go on.
	n.log.Debug("punch: dialing the peer's public address", "peer", p, "type", reply.Type, "addr", target)
	start := time.Now()
	dctx, dcancel := context.WithTimeout(network.WithForceDirectDial(ctx, "macula-punch"), punchDialTimeout)
	err = n.host.Connect(dctx, peer.AddrInfo{ID: p, Addrs: []ma.Multiaddr{target}})
	dcancel()
	if err != nil {
		n.log.Info("punch: NAT-aware dial failed; DCUtR goes on", "peer", p, "type", reply.Type, "addr", target, "err", err)
		return
	}
	t.decide(true)
	n.log.Info("punch: direct path to a peer (NAT-aware dial)", "peer", p, "type", reply.Type,
		"addr", target, "took", time.Since(start).Round(time.Millisecond))
}

// punchTarget returns the QUIC address to dial when a symmetric node can
// reach the peer that replied: no NAT, full cone, or restricted with its
// filter opened for us.
func punchTarget(reply punchMsg) (ma.Multiaddr, bool) {
	switch nat.Type(reply.Type) {
	case nat.TypeFullCone, nat.TypeOpen:
	case nat.TypeRestricted:
		if !reply.Opened {
			return nil, false
		}
	default:
		return nil, false
	}
	ap, err := netip.ParseAddrPort(reply.Addr)
	if err != nil || ap.Port() == 0 || !ap.Addr().IsValid() {
		return nil, false
	}
	a, err := manet.FromNetAddr(net.UDPAddrFromAddrPort(ap))
	if err != nil {
		return nil, false
	}
	return a.Encapsulate(ma.StringCast("/quic-v1")), true
}

// punchExchange sends req on a new stream over the (relayed) connection and
// reads the peer's reply.
func (n *Node) punchExchange(ctx context.Context, p peer.ID, req punchMsg) (punchMsg, error) {
	sctx := network.WithNoDial(network.WithAllowLimitedConn(ctx, "macula-punch"), "macula-punch")
	s, err := n.host.NewStream(sctx, p, PunchProtocol(n.cfg.Realm))
	if err != nil {
		return punchMsg{}, err
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(punchStreamTimeout))
	if err := json.NewEncoder(s).Encode(req); err != nil {
		s.Reset()
		return punchMsg{}, err
	}
	_ = s.CloseWrite()
	var reply punchMsg
	if err := json.NewDecoder(io.LimitReader(s, punchMsgMax)).Decode(&reply); err != nil {
		s.Reset()
		return punchMsg{}, err
	}
	return reply, nil
}

// handlePunch answers a symmetric peer's PunchProtocol request with this
// node's NAT type and STUN address; behind a restricted cone it first sends
// a few packets to the requester's public IP so that its dial gets in.
func (n *Node) handlePunch(s network.Stream) {
	_ = s.SetDeadline(time.Now().Add(punchVerifyWait + punchStreamTimeout))
	p := s.Conn().RemotePeer()
	// Only realm peers may make this node send packets.
	if !n.waitPeer(n.ctx, p, punchVerifyWait) {
		s.Reset()
		return
	}
	var req punchMsg
	if err := json.NewDecoder(io.LimitReader(s, punchMsgMax)).Decode(&req); err != nil {
		s.Reset()
		return
	}
	self := n.NAT()
	reply := punchMsg{Type: string(self.Type)}
	if ap, ok := self.PublicAddr(); ok {
		reply.Addr = ap.String()
	}
	// Packets only for a symmetric peer that is reached through a relay,
	// the one case they are for, and only to its own public address.
	if self.Type == nat.TypeRestricted && nat.Type(req.Type) == nat.TypeSymmetric && isRelayed(s.Conn().RemoteMultiaddr()) {
		if to, err := netip.ParseAddrPort(req.Addr); err == nil && to.Addr().IsValid() && to.Port() != 0 {
			if err := n.punchOpen(to); err != nil {
				n.log.Debug("punch: could not open the NAT filter", "peer", p, "to", to, "err", err)
			} else {
				reply.Opened = true
			}
		}
	}
	if err := json.NewEncoder(s).Encode(reply); err != nil {
		s.Reset()
		return
	}
	_ = s.Close()
}

// punchOpen sends a few packets from the QUIC socket to the given address,
// so that an address-restricted NAT lets that address's packets in.
func (n *Node) punchOpen(to netip.AddrPort) error {
	if n.nat.cm == nil {
		return nat.ErrConfig
	}
	conn, err := nat.SharedQUICConn(n.nat.cm, n.withoutBdayListeners(n.host.Network().ListenAddresses()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ua := net.UDPAddrFromAddrPort(to)
	for i := 0; i < punchOpenPackets; i++ {
		if _, err := conn.WriteTo(punchOpenPayload, ua); err != nil {
			return err
		}
	}
	return nil
}
