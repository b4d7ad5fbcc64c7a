package punch

import (
	"context"
	"net"
	"net/netip"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/macula-io/macula/nat"
)

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
)

// runPunch asks the peer of c for its NAT type, then runs birthday probing
// (port-restricted with symmetric) or dials the peer directly (symmetric
// with a full cone or restricted peer). DCUtR waits in Filter meanwhile and
// goes on unless t is decided "ours".
func (s *Service) runPunch(c network.Conn, t *try, self nat.Info) {
	p := c.RemotePeer()
	ctx, cancel := context.WithTimeout(s.ctx, punchVerifyWait+punchStreamTimeout+punchDialTimeout)
	defer cancel()
	if !s.verified(ctx, p) || s.directConn(p) {
		return
	}
	if s.punch(ctx, p, self, false) {
		t.decide(true)
	}
}

// punch exchanges NAT types with p over the relayed connection and then
// does what the pair allows: birthday probing (port-restricted with
// symmetric), a direct dial from a symmetric node to a full-cone or
// restricted peer, and, on a retry (retry.go) between two nodes whose NATs
// map endpoint-independently, a direct dial to the peer's public address
// once the peer has opened its filter for ours. It reports whether a
// direct connection was made.
func (s *Service) punch(ctx context.Context, p peer.ID, self nat.Info, retry bool) bool {
	req := punchMsg{Type: string(self.Type), Dial: retry && eiMapping(self.Type)}
	if ap, ok := self.PublicAddr(); ok {
		req.Addr = ap.String()
	}
	reply, err := s.exchange(ctx, p, req)
	if err != nil {
		s.log.Debug("punch: exchange failed; DCUtR goes on", "peer", p, "err", err)
		return false
	}
	if role := bdayRoleFor(self.Type, reply.peerType()); role != bdayNone {
		if retry && self.Type != nat.TypeSymmetric {
			return false // the symmetric side retries birthday probing
		}
		return s.runBirthday(role, p, self, reply.Addr)
	}
	timeout := punchDialTimeout
	if retry {
		timeout = retryDialTimeout
	}
	if self.Type == nat.TypeSymmetric {
		target, ok := punchTarget(reply)
		if !ok {
			s.log.Debug("punch: peer's NAT needs DCUtR", "peer", p, "type", reply.Type)
			return false
		}
		return s.dialDirect(ctx, p, target, reply.Type, timeout)
	}
	if !retry || !req.Dial || !reply.Opened || !eiMapping(reply.peerType()) {
		return false
	}
	// Our NAT maps our QUIC socket to req.Addr whatever the destination,
	// and the peer's filter now lets that address in; our dial opens our
	// own filter for the peer's address.
	target, ok := quicTarget(reply.Addr)
	if !ok {
		return false
	}
	return s.dialDirect(ctx, p, target, reply.Type, timeout)
}

// dialDirect makes one direct QUIC dial to target, bounded by timeout,
// while DCUtR waits (in Filter) so that it does not start its own punch
// towards the same address, which the swarm would merge with this dial.
func (s *Service) dialDirect(ctx context.Context, p peer.ID, target ma.Multiaddr, peerType string, timeout time.Duration) bool {
	s.log.Debug("punch: dialing the peer's public address", "peer", p, "type", peerType, "addr", target)
	start := time.Now()
	dctx, cancel := context.WithTimeout(network.WithForceDirectDial(ctx, "macula-punch"), timeout)
	err := s.h.Connect(dctx, peer.AddrInfo{ID: p, Addrs: []ma.Multiaddr{target}})
	cancel()
	if err != nil {
		s.log.Info("punch: NAT-aware dial failed; DCUtR goes on", "peer", p, "type", peerType, "addr", target, "err", err)
		return false
	}
	s.log.Info("punch: direct path to a peer (NAT-aware dial)", "peer", p, "type", peerType,
		"addr", target, "took", time.Since(start).Round(time.Millisecond))
	return true
}

// eiMapping reports whether a NAT of type t maps a socket to one public
// address whatever the destination (or there is no NAT): a peer can reach
// that address once the filter lets it in.
func eiMapping(t nat.Type) bool {
	switch t {
	case nat.TypeOpen, nat.TypeFullCone, nat.TypeRestricted, nat.TypePortRestricted:
		return true
	}
	return false
}

// quicTarget returns the QUIC multiaddr of a public ip:port.
func quicTarget(addr string) (ma.Multiaddr, bool) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || ap.Port() == 0 || !ap.Addr().IsValid() {
		return nil, false
	}
	a, err := manet.FromNetAddr(net.UDPAddrFromAddrPort(ap))
	if err != nil {
		return nil, false
	}
	return a.Encapsulate(ma.StringCast("/quic-v1")), true
}

// punchTarget returns the QUIC address to dial when a symmetric node can
// reach the peer that replied: no NAT, full cone, or restricted with its
// filter opened for us.
func punchTarget(reply punchMsg) (ma.Multiaddr, bool) {
	switch reply.peerType() {
	case nat.TypeFullCone, nat.TypeOpen:
	case nat.TypeRestricted:
		if !reply.Opened {
			return nil, false
		}
	default:
		return nil, false
	}
	return quicTarget(reply.Addr)
}

// exchange sends req on a new stream over the (relayed) connection and
// reads the peer's reply.
func (s *Service) exchange(ctx context.Context, p peer.ID, req punchMsg) (punchMsg, error) {
	sctx := network.WithNoDial(network.WithAllowLimitedConn(ctx, "macula-punch"), "macula-punch")
	st, err := s.h.NewStream(sctx, p, Protocol(s.cfg.Realm))
	if err != nil {
		return punchMsg{}, err
	}
	defer st.Close()
	_ = st.SetDeadline(time.Now().Add(punchStreamTimeout))
	if err := writePunchMsg(st, req); err != nil {
		st.Reset()
		return punchMsg{}, err
	}
	_ = st.CloseWrite()
	reply, err := readPunchMsg(st)
	if err != nil {
		st.Reset()
		return punchMsg{}, err
	}
	return reply, nil
}

// handlePunch answers a peer's punch request with this node's NAT type and
// STUN address; behind a restricted cone it first sends a few packets to
// the requester's public IP so that its dial gets in.
func (s *Service) handlePunch(st network.Stream) {
	if !s.enter() {
		st.Reset()
		return
	}
	defer s.wg.Done()
	_ = st.SetDeadline(time.Now().Add(punchVerifyWait + punchStreamTimeout))
	p := st.Conn().RemotePeer()
	// Only realm peers may make this node send packets.
	if !s.verified(s.ctx, p) {
		st.Reset()
		return
	}
	req, err := readPunchMsg(st)
	if err != nil {
		s.log.Debug("punch: bad request", "peer", p, "err", err)
		st.Reset()
		return
	}
	self := s.cfg.Self()
	reply := punchMsg{Type: string(self.Type)}
	if ap, ok := self.PublicAddr(); ok {
		reply.Addr = ap.String()
	}
	// Packets only to a peer reached through a relay that will dial us,
	// and only to its own public address: a symmetric peer (it dials a
	// restricted cone), or, on a retry, a peer whose NAT maps
	// endpoint-independently as ours does. A full cone lets it in anyway.
	relayed := isRelayed(st.Conn().RemoteMultiaddr())
	symDials := self.Type == nat.TypeRestricted && req.peerType() == nat.TypeSymmetric
	retryDials := req.Dial && eiMapping(self.Type) && eiMapping(req.peerType())
	switch {
	case !relayed || !symDials && !retryDials:
	case self.Type == nat.TypeOpen || self.Type == nat.TypeFullCone:
		reply.Opened = true
	default:
		if to, err := netip.ParseAddrPort(req.Addr); err == nil && to.Addr().IsValid() && to.Port() != 0 {
			if err := s.openFilter(to); err != nil {
				s.log.Debug("punch: could not open the NAT filter", "peer", p, "to", to, "err", err)
			} else {
				reply.Opened = true
			}
		}
	}
	if err := writePunchMsg(st, reply); err != nil {
		st.Reset()
		return
	}
	_ = st.Close()
}

// openFilter sends a few packets from the QUIC socket to the given address,
// so that an address-restricted NAT lets that address's packets in.
func (s *Service) openFilter(to netip.AddrPort) error {
	conn, err := s.quicConn()
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

// quicConn returns a conn on the host's QUIC socket (not a birthday
// listener's) for packets that are not QUIC; the caller closes it.
func (s *Service) quicConn() (net.PacketConn, error) {
	if s.cfg.Sockets == nil {
		return nil, ErrConfig
	}
	return nat.SharedQUICConn(s.cfg.Sockets, s.WithoutListeners(s.h.Network().ListenAddresses()))
}
