package punch

import (
	"context"
	"crypto/rand"
	"math"
	mrand "math/rand/v2"
	"net/netip"
	"strconv"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/macula-io/macula/nat"
)

// Birthday probing's bounds; the package doc explains the method.
const (
	bdaySockets      = 256  // B's extra sockets (mappings), by default
	bdaySocketsMax   = 1024 // the most Config.BirthdaySockets may ask for
	bdayProbesMax    = 1024 // A's probes at most
	bdayProbeBatch   = 32   // probes sent at once
	bdayProbePace    = 8 * time.Millisecond
	bdayHitWait      = 300 * time.Millisecond // after the last probe
	bdayTimeout      = 5 * time.Second        // one attempt, end to end
	bdayDialTimeout  = 2 * time.Second
	bdayInterval     = time.Minute // one attempt per peer and direction
	bdayMaxRunning   = 2
	bdayMaxListeners = 8
	bdayMaxPeers     = 1024 // peers remembered per direction
	bdayPortMin      = 1024
	bdayPortMax      = 65535
	bdayNonceLen     = 16
	bdayWatchEvery   = 2 * time.Second
)

// bdayRole is a side of the birthday probing.
type bdayRole int

const (
	bdayNone  bdayRole = iota
	bdayProbe          // A: endpoint-independent mapping; sends the probes, dials
	bdayOpen           // B: symmetric; opens the sockets, listens
)

// bdayRoleFor returns this node's role when a node of type self meets a
// peer of type peer, or bdayNone when birthday probing is not for them.
func bdayRoleFor(self, peer nat.Type) bdayRole {
	switch {
	case self == nat.TypePortRestricted && peer == nat.TypeSymmetric:
		return bdayProbe
	case self == nat.TypeSymmetric && peer == nat.TypePortRestricted:
		return bdayOpen
	}
	return bdayNone
}

// bdayPeerType is the NAT type of the peer of a node with role.
func bdayPeerType(role bdayRole) nat.Type {
	if role == bdayOpen {
		return nat.TypePortRestricted
	}
	return nat.TypeSymmetric
}

// HitChance is the chance that probes distinct random ports out of space
// hit at least one of mappings random ports: 1-(1-mappings/space)^probes,
// exactly, for probes without repetition.
func HitChance(mappings, probes, space int) float64 {
	if mappings <= 0 || probes <= 0 || space <= 0 {
		return 0
	}
	if mappings >= space || probes >= space {
		return 1
	}
	// Probes are distinct: the chance that all miss is
	// C(space-mappings, probes) / C(space, probes).
	miss := 0.0
	for i := 0; i < probes; i++ {
		if space-mappings-i <= 0 {
			return 1
		}
		miss += math.Log(float64(space-mappings-i)) - math.Log(float64(space-i))
	}
	return 1 - math.Exp(miss)
}

// bdayPorts returns n distinct ports in [lo, hi] in random order.
func bdayPorts(r *mrand.Rand, n, lo, hi int) []uint16 {
	if lo < 1 || hi > 65535 || lo > hi || n <= 0 {
		return nil
	}
	size := hi - lo + 1
	if n > size {
		n = size
	}
	// A partial Fisher-Yates shuffle over [0, size), sparse.
	swapped := make(map[int]int, 2*n)
	at := func(i int) int {
		if v, ok := swapped[i]; ok {
			return v
		}
		return i
	}
	out := make([]uint16, n)
	for i := 0; i < n; i++ {
		j := i + r.IntN(size-i)
		vi, vj := at(i), at(j)
		swapped[i], swapped[j] = vj, vi
		out[i] = uint16(lo + vj)
	}
	return out
}

// bdayState bounds the attempts; guarded by Service.mu.
type bdayState struct {
	// last attempt per peer: started by this node (out) or answered (in);
	// apart, so that two nodes that start at once both get an answer.
	last      [2]map[peer.ID]time.Time
	running   int
	listeners map[int]bool // local UDP ports of birthday listeners
}

// bdayBegin reserves an attempt with p, started by this node (out) or by
// p; false if one ran within bdayInterval or too many run.
func (s *Service) bdayBegin(p peer.ID, out bool, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := &s.bday
	i := 0
	if out {
		i = 1
	}
	if b.last[i] == nil {
		b.last[i] = make(map[peer.ID]time.Time)
	}
	last := b.last[i]
	// The peer's next attempt comes bdayInterval after it began its last,
	// which it began before we answered it (up to an attempt's time, and
	// a loaded machine's delays): an answer waits less, or the peer's
	// retry was refused and the pair waited another minute (a NAT matrix
	// cell stayed relayed for 2 min in CI, "stream reset by remote").
	interval := bdayInterval
	if !out {
		interval -= 2 * bdayTimeout
	}
	if t, ok := last[p]; ok && now.Sub(t) < interval {
		return false
	}
	if b.running >= bdayMaxRunning {
		return false
	}
	if len(last) >= bdayMaxPeers {
		for q, t := range last {
			if now.Sub(t) >= bdayInterval {
				delete(last, q)
			}
		}
		if len(last) >= bdayMaxPeers {
			return false
		}
	}
	last[p] = now
	b.running++
	return true
}

func (s *Service) bdayEnd() {
	s.mu.Lock()
	s.bday.running--
	s.mu.Unlock()
}

// runBirthday runs an attempt with p from the node that received the
// relayed connection (after the punch exchange). peerAddr is the peer's
// public address from that exchange. It reports whether a direct
// connection was made.
func (s *Service) runBirthday(role bdayRole, p peer.ID, self nat.Info, peerAddr string) bool {
	pub, ok := self.PublicAddr()
	if !ok || !publicUnicast(pub.Addr()) {
		return false
	}
	peerAP, err := netip.ParseAddrPort(peerAddr)
	if err != nil || !publicUnicast(peerAP.Addr()) {
		return false
	}
	if !s.bdayBegin(p, true, time.Now()) {
		s.log.Debug("birthday: not now (one attempt per peer per minute)", "peer", p)
		return false
	}
	defer s.bdayEnd()
	ctx, cancel := context.WithTimeout(s.ctx, bdayTimeout)
	defer cancel()
	sctx := network.WithNoDial(network.WithAllowLimitedConn(ctx, "macula-birthday"), "macula-birthday")
	st, err := s.h.NewStream(sctx, p, BirthdayProtocol(s.cfg.Realm))
	if err != nil {
		s.log.Debug("birthday: no stream", "peer", p, "err", err)
		return false
	}
	defer st.Close()
	_ = st.SetDeadline(time.Now().Add(bdayTimeout))
	nonce := make([]byte, bdayNonceLen)
	_, _ = rand.Read(nonce)
	switch role {
	case bdayProbe:
		if err := writeBdayMsg(st, bdayMsg{Kind: typeStart, Nonce: nonce, Addr: pub.String()}); err != nil {
			st.Reset()
			return false
		}
		m, err := readBdayMsg(st)
		if err != nil || m.Kind != typeReady || string(m.Nonce) != string(nonce) {
			st.Reset()
			return false
		}
		return s.probeSide(ctx, st, p, nonce, peerAP.Addr())
	case bdayOpen:
		return s.openSide(ctx, st, p, nonce, peerAP, pub.Addr())
	}
	return false
}

// handleBirthday answers a peer's birthday stream: "start" makes this node
// the symmetric side, "ready" the probing side.
func (s *Service) handleBirthday(st network.Stream) {
	if !s.enter() {
		st.Reset()
		return
	}
	defer s.wg.Done()
	defer st.Close()
	p := st.Conn().RemotePeer()
	_ = st.SetDeadline(time.Now().Add(bdayTimeout))
	// Only realm peers may make this node send packets, over a relayed
	// connection (the case this is for).
	if !isRelayed(st.Conn().RemoteMultiaddr()) || !s.verified(s.ctx, p) {
		st.Reset()
		return
	}
	m, err := readBdayMsg(st)
	if err != nil {
		s.log.Debug("birthday: bad first message", "peer", p, "err", err)
		st.Reset()
		return
	}
	self := s.cfg.Self()
	pub, ok := self.PublicAddr()
	if !ok || !publicUnicast(pub.Addr()) {
		st.Reset()
		return
	}
	var role bdayRole
	switch m.Kind {
	case typeStart:
		role = bdayOpen
	case typeReady:
		role = bdayProbe
	default:
		st.Reset()
		return
	}
	if bdayRoleFor(self.Type, bdayPeerType(role)) != role || !s.bdayBegin(p, false, time.Now()) {
		st.Reset()
		return
	}
	defer s.bdayEnd()
	ctx, cancel := context.WithTimeout(s.ctx, bdayTimeout)
	defer cancel()
	switch role {
	case bdayOpen:
		aPub := netip.MustParseAddrPort(m.Addr) // checked in decodeBdayMsg
		s.openSide(ctx, st, p, m.Nonce, aPub, pub.Addr())
	case bdayProbe:
		s.probeSide(ctx, st, p, m.Nonce, netip.MustParseAddr(m.Addr))
	}
}

// bdayAddListener records a birthday listener's port; false when there
// are too many.
func (s *Service) bdayAddListener(port int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := &s.bday
	if len(b.listeners) >= bdayMaxListeners {
		return false
	}
	if b.listeners == nil {
		b.listeners = make(map[int]bool)
	}
	b.listeners[port] = true
	return true
}

// bdayRemoveListener closes a birthday listener (laddr, if not nil) and
// forgets its port.
func (s *Service) bdayRemoveListener(port int, laddr ma.Multiaddr) {
	if laddr != nil {
		if lc, ok := s.h.Network().(interface{ ListenClose(...ma.Multiaddr) }); ok {
			lc.ListenClose(laddr)
		}
	}
	s.mu.Lock()
	delete(s.bday.listeners, port)
	s.mu.Unlock()
}

// bdayListenPort reports whether port is a birthday listener's.
func (s *Service) bdayListenPort(port int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bday.listeners[port]
}

// WithoutListeners returns addrs without the addresses of birthday
// listeners: they are no change of the node's own addresses, and STUN and
// punch packets go from the node's QUIC socket, not from theirs.
func (s *Service) WithoutListeners(addrs []ma.Multiaddr) []ma.Multiaddr {
	out := make([]ma.Multiaddr, 0, len(addrs))
	for _, a := range addrs {
		if v, err := a.ValueForProtocol(ma.P_UDP); err == nil {
			if port, err := strconv.Atoi(v); err == nil && s.bdayListenPort(port) {
				continue
			}
		}
		out = append(out, a)
	}
	return out
}

// bdayWatch closes a birthday listener once no connection uses it (or the
// service closes).
func (s *Service) bdayWatch(port int, laddr ma.Multiaddr) {
	if !s.spawn(func() {
		defer s.bdayRemoveListener(port, laddr)
		t := time.NewTicker(bdayWatchEvery)
		defer t.Stop()
		for {
			select {
			case <-s.ctx.Done():
				return
			case <-t.C:
			}
			used := s.bdayListenerUsed(port)
			s.watchChecks.Add(1)
			if !used {
				s.log.Debug("birthday: closing the listener, no connection uses it", "port", port)
				return
			}
		}
	}) {
		s.bdayRemoveListener(port, laddr)
	}
}

// bdayListenerUsed reports whether a direct connection has local UDP port
// port.
func (s *Service) bdayListenerUsed(port int) bool {
	for _, c := range s.h.Network().Conns() {
		if isRelayed(c.RemoteMultiaddr()) {
			continue
		}
		if v, err := c.LocalMultiaddr().ValueForProtocol(ma.P_UDP); err == nil && v == strconv.Itoa(port) {
			return true
		}
	}
	return false
}
