package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/macula-io/macula/nat"
)

// Birthday-paradox probing: a direct path between a node whose NAT maps
// endpoint-independently but filters by address and port (port-restricted,
// side A) and a node behind symmetric NAT (side B), which DCUtR cannot punch.
//
// A's public address A_pub (from STUN) is valid towards any destination. B's
// NAT gives each (socket, destination) a new random public port, so B opens
// bdaySockets extra UDP sockets and sends one packet from each to A_pub:
// bdaySockets random mappings on B's NAT, each of which lets A_pub in. A then
// sends up to bdayProbes probes from its QUIC socket to B's public IP at
// distinct random ports. A probe that hits one of B's mappings reaches B's
// socket k, and A's filter now lets B_ip:port_k in (A sent there): the path
// between A's QUIC socket and B's socket k is open both ways. The probe
// carries the port it was sent to, so B learns port_k. B closes its sockets,
// listens with QUIC (the host's swarm) on socket k's local port, and tells A
// the port; A dials B_ip:port_k directly. B keeps that listener while a
// connection uses it.
//
// With the ports of B's NAT uniformly random over 1024-65535 (Linux
// masquerade with random,fully-random, as in the NAT lab), the chance that
// N probes miss all K mappings is (1-K/64512)^N: with K=256 and N=1024, a
// hit in 98.3% of the attempts, after about 250 probes on average.
//
// The two nodes coordinate over the relayed connection on BirthdayProtocol,
// opened by the node that received the relayed connection, after the punch
// exchange (punch.go) told it the peer's NAT type. Messages (bdayMsg, each a
// 2-byte length and JSON): A, when it opened the stream, sends "start" with
// A_pub; B opens its sockets, sends its packets and then "ready" with its
// public IP (B, when it opened the stream, starts with "ready"); A probes;
// B sends "hit" with the port; A dials and sends "done". Everything is
// bounded: sockets, probes, bdayTimeout for the attempt, one attempt per peer
// per bdayInterval, bdayMaxRunning attempts and bdayMaxListeners listeners
// at once; only verified realm peers may start one.

// BirthdayProtocol returns the protocol ID of the birthday probing exchange.
func BirthdayProtocol(realmName string) protocol.ID {
	return protocol.ID("/macula/" + realmName + "/birthday/1.0.0")
}

const (
	bdaySockets      = 256  // B's extra sockets (mappings)
	bdayProbes       = 1024 // A's probes at most
	bdayProbeBatch   = 32   // probes sent at once
	bdayProbePace    = 8 * time.Millisecond
	bdayHitWait      = 300 * time.Millisecond // after the last probe
	bdayTimeout      = 5 * time.Second        // one attempt, end to end
	bdayDialTimeout  = 2 * time.Second
	bdayInterval     = time.Minute // one attempt per peer
	bdayMaxRunning   = 2
	bdayMaxListeners = 8
	bdayPortMin      = 1024
	bdayPortMax      = 65535
	bdayMsgMax       = 512
	bdayNonceLen     = 16
	bdayWatchEvery   = 2 * time.Second
)

// bdayMagic starts every probe and opening packet: not QUIC (the first
// byte has the fixed bit clear) and not STUN.
var bdayMagic = []byte("\x00macula-bday")

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

// bdayHitChance is the chance that probes distinct random ports out of
// space hit at least one of mappings random ports.
func bdayHitChance(mappings, probes, space int) float64 {
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
		miss += math.Log(float64(space-mappings-i)) - math.Log(float64(space-i))
		if space-mappings-i <= 0 {
			return 1
		}
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

// bdayMsg is one message of the BirthdayProtocol exchange.
type bdayMsg struct {
	Kind string `json:"kind"` // start, ready, hit, done
	// Nonce (start, ready): bdayNonceLen bytes that the packets carry.
	Nonce []byte `json:"nonce,omitempty"`
	// Addr: start, A's public ip:port; ready, B's public IP.
	Addr string `json:"addr,omitempty"`
	// Port (hit): B's public port that a probe came in on.
	Port uint16 `json:"port,omitempty"`
	// OK (done): A made the direct connection. Probes: how many A sent.
	OK     bool `json:"ok,omitempty"`
	Probes int  `json:"probes,omitempty"`
}

var errBdayMsg = errors.New("birthday: bad message")

// decodeBdayMsg parses and checks a message body.
func decodeBdayMsg(b []byte) (bdayMsg, error) {
	if len(b) > bdayMsgMax {
		return bdayMsg{}, errBdayMsg
	}
	var m bdayMsg
	if err := json.Unmarshal(b, &m); err != nil {
		return bdayMsg{}, fmt.Errorf("%w: %v", errBdayMsg, err)
	}
	switch m.Kind {
	case "start":
		ap, err := netip.ParseAddrPort(m.Addr)
		if err != nil || !publicUnicast(ap.Addr()) || ap.Port() == 0 || len(m.Nonce) != bdayNonceLen {
			return bdayMsg{}, errBdayMsg
		}
	case "ready":
		ip, err := netip.ParseAddr(m.Addr)
		if err != nil || !publicUnicast(ip) || len(m.Nonce) != bdayNonceLen {
			return bdayMsg{}, errBdayMsg
		}
	case "hit":
		if m.Port < bdayPortMin {
			return bdayMsg{}, errBdayMsg
		}
	case "done":
		if m.Probes < 0 || m.Probes > bdayProbes {
			return bdayMsg{}, errBdayMsg
		}
	default:
		return bdayMsg{}, errBdayMsg
	}
	return m, nil
}

// publicUnicast: an address that probes may go to (no loopback, multicast,
// unspecified or link-local address; IPv4 only for now, as the sockets).
func publicUnicast(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip.Is4() && ip.IsGlobalUnicast() && !ip.IsLinkLocalUnicast() && !ip.IsMulticast()
}

func writeBdayMsg(w io.Writer, m bdayMsg) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if len(b) > bdayMsgMax {
		return errBdayMsg
	}
	var hdr [2]byte
	binary.BigEndian.PutUint16(hdr[:], uint16(len(b)))
	_, err = w.Write(append(hdr[:], b...))
	return err
}

func readBdayMsg(r io.Reader) (bdayMsg, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return bdayMsg{}, err
	}
	l := int(binary.BigEndian.Uint16(hdr[:]))
	if l > bdayMsgMax {
		return bdayMsg{}, errBdayMsg
	}
	b := make([]byte, l)
	if _, err := io.ReadFull(r, b); err != nil {
		return bdayMsg{}, err
	}
	return decodeBdayMsg(b)
}

// bdayPacket is a probe (port: where it was sent) or an opening packet
// (port 0).
func bdayPacket(nonce []byte, port uint16) []byte {
	b := make([]byte, 0, len(bdayMagic)+bdayNonceLen+2)
	b = append(b, bdayMagic...)
	b = append(b, nonce...)
	return binary.BigEndian.AppendUint16(b, port)
}

// parseBdayPacket returns the port a probe carries, if b is a probe with
// the nonce.
func parseBdayPacket(b, nonce []byte) (uint16, bool) {
	if len(b) != len(bdayMagic)+bdayNonceLen+2 || len(nonce) != bdayNonceLen ||
		!bytes.HasPrefix(b, bdayMagic) || !bytes.Equal(b[len(bdayMagic):len(bdayMagic)+bdayNonceLen], nonce) {
		return 0, false
	}
	port := binary.BigEndian.Uint16(b[len(b)-2:])
	if port < bdayPortMin {
		return 0, false
	}
	return port, true
}

// bdayState bounds the attempts; guarded by punchState.mu.
type bdayState struct {
	// last attempt per peer: started by this node (out) or answered (in);
	// apart, so that two nodes that start at once both get an answer.
	last      [2]map[peer.ID]time.Time
	running   int
	listeners map[int]bool // local UDP ports of birthday listeners
}

// bdayBegin reserves an attempt with p, started by this node (out) or by
// p; false if one ran within bdayInterval or too many run.
func (n *Node) bdayBegin(p peer.ID, out bool, now time.Time) bool {
	n.punch.mu.Lock()
	defer n.punch.mu.Unlock()
	b := &n.punch.bday
	i := 0
	if out {
		i = 1
	}
	if b.last[i] == nil {
		b.last[i] = make(map[peer.ID]time.Time)
	}
	last := b.last[i]
	if t, ok := last[p]; ok && now.Sub(t) < bdayInterval {
		return false
	}
	if b.running >= bdayMaxRunning {
		return false
	}
	if len(last) >= 1024 {
		for q, t := range last {
			if now.Sub(t) >= bdayInterval {
				delete(last, q)
			}
		}
		if len(last) >= 1024 {
			return false
		}
	}
	last[p] = now
	b.running++
	return true
}

func (n *Node) bdayEnd() {
	n.punch.mu.Lock()
	n.punch.bday.running--
	n.punch.mu.Unlock()
}

// bdayListenPort reports whether port is a birthday listener's.
func (n *Node) bdayListenPort(port int) bool {
	n.punch.mu.Lock()
	defer n.punch.mu.Unlock()
	return n.punch.bday.listeners[port]
}

// withoutBdayListeners drops the birthday listeners' addresses from addrs.
func (n *Node) withoutBdayListeners(addrs []ma.Multiaddr) []ma.Multiaddr {
	out := make([]ma.Multiaddr, 0, len(addrs))
	for _, a := range addrs {
		if s, err := a.ValueForProtocol(ma.P_UDP); err == nil {
			if port, err := strconv.Atoi(s); err == nil && n.bdayListenPort(port) {
				continue
			}
		}
		out = append(out, a)
	}
	return out
}

// runBirthday runs an attempt with p from the node that received the
// relayed connection (after the punch exchange). peerAddr is the peer's
// public address from that exchange. It reports whether a direct
// connection was made.
func (n *Node) runBirthday(role bdayRole, p peer.ID, self nat.Info, peerAddr string) bool {
	pub, ok := self.PublicAddr()
	if !ok || !publicUnicast(pub.Addr()) {
		return false
	}
	peerAP, err := netip.ParseAddrPort(peerAddr)
	if err != nil || !publicUnicast(peerAP.Addr()) {
		return false
	}
	if !n.bdayBegin(p, true, time.Now()) {
		n.log.Debug("birthday: not now (one attempt per peer per minute)", "peer", p)
		return false
	}
	defer n.bdayEnd()
	ctx, cancel := context.WithTimeout(n.ctx, bdayTimeout)
	defer cancel()
	sctx := network.WithNoDial(network.WithAllowLimitedConn(ctx, "macula-birthday"), "macula-birthday")
	s, err := n.host.NewStream(sctx, p, BirthdayProtocol(n.cfg.Realm))
	if err != nil {
		n.log.Debug("birthday: no stream", "peer", p, "err", err)
		return false
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(bdayTimeout))
	nonce := make([]byte, bdayNonceLen)
	_, _ = rand.Read(nonce)
	switch role {
	case bdayProbe:
		if err := writeBdayMsg(s, bdayMsg{Kind: "start", Nonce: nonce, Addr: pub.String()}); err != nil {
			s.Reset()
			return false
		}
		m, err := readBdayMsg(s)
		if err != nil || m.Kind != "ready" || !bytes.Equal(m.Nonce, nonce) {
			s.Reset()
			return false
		}
		return n.bdayProbeSide(ctx, s, p, nonce, peerAP.Addr())
	case bdayOpen:
		return n.bdayOpenSide(ctx, s, p, nonce, peerAP, pub.Addr())
	}
	return false
}

// handleBirthday answers a peer's BirthdayProtocol stream.
func (n *Node) handleBirthday(s network.Stream) {
	defer s.Close()
	p := s.Conn().RemotePeer()
	_ = s.SetDeadline(time.Now().Add(bdayTimeout))
	// Only realm peers may make this node send packets, over a relayed
	// connection (the case this is for).
	if !isRelayed(s.Conn().RemoteMultiaddr()) || !n.waitPeer(n.ctx, p, punchVerifyWait) {
		s.Reset()
		return
	}
	m, err := readBdayMsg(s)
	if err != nil {
		s.Reset()
		return
	}
	self := n.NAT()
	pub, ok := self.PublicAddr()
	if !ok || !publicUnicast(pub.Addr()) {
		s.Reset()
		return
	}
	var role bdayRole
	switch m.Kind {
	case "start":
		role = bdayOpen
	case "ready":
		role = bdayProbe
	default:
		s.Reset()
		return
	}
	if bdayRoleFor(self.Type, bdayPeerType(role)) != role || !n.bdayBegin(p, false, time.Now()) {
		s.Reset()
		return
	}
	defer n.bdayEnd()
	ctx, cancel := context.WithTimeout(n.ctx, bdayTimeout)
	defer cancel()
	switch role {
	case bdayOpen:
		aPub := netip.MustParseAddrPort(m.Addr) // checked in decodeBdayMsg
		n.bdayOpenSide(ctx, s, p, m.Nonce, aPub, pub.Addr())
	case bdayProbe:
		n.bdayProbeSide(ctx, s, p, m.Nonce, netip.MustParseAddr(m.Addr))
	}
}

// bdayPeerType is the NAT type of the peer of a node with role.
func bdayPeerType(role bdayRole) nat.Type {
	if role == bdayOpen {
		return nat.TypePortRestricted
	}
	return nat.TypeSymmetric
}

// bdayProbeSide is A: probe B's public IP at random ports until B reports a
// hit, then dial B there. B's "ready" has been read.
func (n *Node) bdayProbeSide(ctx context.Context, s network.Stream, p peer.ID, nonce []byte, bIP netip.Addr) bool {
	if n.nat.cm == nil {
		s.Reset()
		return false
	}
	conn, err := nat.SharedQUICConn(n.nat.cm, n.withoutBdayListeners(n.host.Network().ListenAddresses()))
	if err != nil {
		s.Reset()
		return false
	}
	defer conn.Close()

	hits := make(chan uint16, 1)
	var rwg sync.WaitGroup
	rwg.Add(1)
	go func() {
		defer rwg.Done()
		defer close(hits)
		m, err := readBdayMsg(s)
		if err == nil && m.Kind == "hit" {
			hits <- m.Port
		}
	}()
	defer rwg.Wait()

	start := time.Now()
	ports := bdayPorts(mrand.New(mrand.NewPCG(mrand.Uint64(), mrand.Uint64())), bdayProbes, bdayPortMin, bdayPortMax)
	probed := make(map[uint16]bool, len(ports))
	sent := 0
	var hit uint16
	var got bool
	ticker := time.NewTicker(bdayProbePace)
	defer ticker.Stop()
probing:
	for sent < len(ports) {
		for i := 0; i < bdayProbeBatch && sent < len(ports); i++ {
			port := ports[sent]
			if _, err := conn.WriteTo(bdayPacket(nonce, port), net.UDPAddrFromAddrPort(netip.AddrPortFrom(bIP, port))); err != nil {
				break probing
			}
			probed[port] = true
			sent++
		}
		select {
		case hit, got = <-hits:
			break probing
		case <-ctx.Done():
			break probing
		case <-ticker.C:
		}
	}
	if !got && ctx.Err() == nil {
		select {
		case hit, got = <-hits:
		case <-time.After(bdayHitWait):
		case <-ctx.Done():
		}
	}
	if !got || !probed[hit] {
		n.log.Info("birthday: no hit", "peer", p, "probes", sent, "took", time.Since(start).Round(time.Millisecond))
		_ = writeBdayMsg(s, bdayMsg{Kind: "done", Probes: sent})
		_ = s.CloseWrite()
		_ = s.SetReadDeadline(time.Now().Add(bdayHitWait)) // the reader ends soon
		return false
	}
	target, err := manet.FromNetAddr(net.UDPAddrFromAddrPort(netip.AddrPortFrom(bIP, hit)))
	if err != nil {
		s.Reset()
		return false
	}
	target = target.Encapsulate(ma.StringCast("/quic-v1"))
	dctx, dcancel := context.WithTimeout(network.WithForceDirectDial(ctx, "macula-birthday"), bdayDialTimeout)
	err = n.host.Connect(dctx, peer.AddrInfo{ID: p, Addrs: []ma.Multiaddr{target}})
	dcancel()
	ok := err == nil && directConn(n, p)
	_ = writeBdayMsg(s, bdayMsg{Kind: "done", OK: ok, Probes: sent})
	_ = s.CloseWrite()
	if !ok {
		n.log.Info("birthday: dial after the hit failed", "peer", p, "addr", target, "probes", sent, "err", err)
		return false
	}
	n.log.Info("birthday: direct path to a peer (birthday probing)", "peer", p, "addr", target,
		"probes", sent, "took", time.Since(start).Round(time.Millisecond))
	return true
}

// bdayOpenSide is B: open the sockets towards A's public address, say
// "ready", wait for a probe, then listen on the socket's port and report
// the hit.
func (n *Node) bdayOpenSide(ctx context.Context, s network.Stream, p peer.ID, nonce []byte, aPub netip.AddrPort, selfIP netip.Addr) bool {
	start := time.Now()
	type hitT struct {
		k    int
		port uint16
	}
	socks := make([]*net.UDPConn, 0, bdaySockets)
	closeAll := func() {
		for _, c := range socks {
			c.Close()
		}
	}
	to := net.UDPAddrFromAddrPort(aPub)
	open := bdayPacket(nonce, 0)
	for i := 0; i < bdaySockets; i++ {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero})
		if err != nil {
			break
		}
		socks = append(socks, c)
		_, _ = c.WriteToUDP(open, to)
	}
	if len(socks) == 0 {
		s.Reset()
		return false
	}
	hits := make(chan hitT, 1)
	var rwg sync.WaitGroup
	for k, c := range socks {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			buf := make([]byte, 64)
			for {
				l, from, err := c.ReadFromUDPAddrPort(buf)
				if err != nil {
					return
				}
				if netip.AddrPortFrom(from.Addr().Unmap(), from.Port()) != aPub {
					continue
				}
				if port, ok := parseBdayPacket(buf[:l], nonce); ok {
					select {
					case hits <- hitT{k, port}:
					default:
					}
					return
				}
			}
		}()
	}
	defer rwg.Wait()
	defer closeAll() // runs before rwg.Wait: the readers return

	if err := writeBdayMsg(s, bdayMsg{Kind: "ready", Nonce: nonce, Addr: selfIP.String()}); err != nil {
		s.Reset()
		return false
	}
	// The next message from A: "done" after our hit, or the end of the
	// stream when A gave up before.
	type msgT struct {
		m   bdayMsg
		err error
	}
	msgs := make(chan msgT, 1)
	rwg.Add(1)
	go func() {
		defer rwg.Done()
		m, err := readBdayMsg(s)
		msgs <- msgT{m, err}
	}()
	defer s.Reset() // ends that read if it still runs
	var h hitT
	select {
	case h = <-hits:
	case m := <-msgs:
		n.log.Info("birthday: the peer stopped probing without a hit", "peer", p, "sockets", len(socks), "probes", m.m.Probes, "err", m.err)
		return false
	case <-ctx.Done():
		n.log.Info("birthday: no probe came in", "peer", p, "sockets", len(socks))
		return false
	}
	local := socks[h.k].LocalAddr().(*net.UDPAddr).Port
	closeAll()
	laddr, err := ma.NewMultiaddr(fmt.Sprintf("/ip4/0.0.0.0/udp/%d/quic-v1", local))
	if err != nil || !n.bdayAddListener(local) {
		s.Reset()
		return false
	}
	if err := n.host.Network().Listen(laddr); err != nil {
		n.bdayRemoveListener(local, nil)
		n.log.Info("birthday: could not listen on the probed socket's port", "peer", p, "port", local, "err", err)
		s.Reset()
		return false
	}
	if err := writeBdayMsg(s, bdayMsg{Kind: "hit", Port: h.port}); err != nil {
		n.bdayRemoveListener(local, laddr)
		s.Reset()
		return false
	}
	_ = s.CloseWrite()
	var m bdayMsg
	select {
	case r := <-msgs:
		m, err = r.m, r.err
	case <-ctx.Done():
		err = ctx.Err()
	}
	ok := err == nil && m.Kind == "done" && m.OK && directConn(n, p)
	if !ok {
		n.bdayRemoveListener(local, laddr)
		n.log.Info("birthday: no direct connection after the hit", "peer", p, "port", h.port, "err", err)
		return false
	}
	n.log.Info("birthday: direct path to a peer (birthday probing)", "peer", p, "public_port", h.port,
		"local_port", local, "probes", m.Probes, "took", time.Since(start).Round(time.Millisecond))
	n.bdayWatch(local, laddr)
	return true
}

// bdayAddListener records a birthday listener's port; false when there
// are too many.
func (n *Node) bdayAddListener(port int) bool {
	n.punch.mu.Lock()
	defer n.punch.mu.Unlock()
	b := &n.punch.bday
	if len(b.listeners) >= bdayMaxListeners {
		return false
	}
	if b.listeners == nil {
		b.listeners = make(map[int]bool)
	}
	b.listeners[port] = true
	return true
}

func (n *Node) bdayRemoveListener(port int, laddr ma.Multiaddr) {
	if laddr != nil {
		if lc, ok := n.host.Network().(interface{ ListenClose(...ma.Multiaddr) }); ok {
			lc.ListenClose(laddr)
		}
	}
	n.punch.mu.Lock()
	delete(n.punch.bday.listeners, port)
	n.punch.mu.Unlock()
}

// bdayWatch closes a birthday listener once no connection uses it (or the
// node closes).
func (n *Node) bdayWatch(port int, laddr ma.Multiaddr) {
	if !n.spawn(func() {
		defer n.bdayRemoveListener(port, laddr)
		t := time.NewTicker(bdayWatchEvery)
		defer t.Stop()
		for {
			select {
			case <-n.ctx.Done():
				return
			case <-t.C:
			}
			if !n.bdayListenerUsed(port) {
				n.log.Debug("birthday: closing the listener, no connection uses it", "port", port)
				return
			}
		}
	}) {
		n.bdayRemoveListener(port, laddr)
	}
}

// bdayListenerUsed reports whether a direct connection has local UDP port
// port.
func (n *Node) bdayListenerUsed(port int) bool {
	for _, c := range n.host.Network().Conns() {
		if isRelayed(c.RemoteMultiaddr()) {
			continue
		}
		if s, err := c.LocalMultiaddr().ValueForProtocol(ma.P_UDP); err == nil && s == strconv.Itoa(port) {
			return true
		}
	}
	return false
}
