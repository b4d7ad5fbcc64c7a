package reach

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/macula-io/macula/frame"
	"github.com/macula-io/macula/nat"
)

// Frame types of the reach protocol (append only).
const (
	typeCheck   uint8 = 1 // requester -> peer: the transaction ID (12 bytes)
	typeSent    uint8 = 2 // peer -> requester: sent (empty payload)
	typeRefused uint8 = 3 // peer -> requester: not sent; the reason as text
)

const (
	wireVersion = 1
	maxPayload  = 256
	// dialBackPackets is how many requests a peer sends (loss), dialBackGap
	// apart.
	dialBackPackets = 3
	dialBackGap     = 50 * time.Millisecond
)

var errMsg = errors.New("reach: bad message")

// check asks up to askPeers peers to send a Binding request from a new
// socket to the address they see for this node. It returns reached if any
// arrived, blocked if a peer sent and none arrived, none otherwise, and how
// many peers answered at all.
func (s *Service) check(ctx context.Context, info nat.Info) (nat.DialBack, int) {
	cands := s.candidates(info)
	if len(cands) == 0 {
		return nat.DialBackNone, 0
	}
	type outcome struct {
		sent, arrived bool
	}
	out := make([]outcome, len(cands))
	var wg sync.WaitGroup
	for i, p := range cands {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sent, arrived, err := s.ask(ctx, p)
			if err != nil {
				s.log.Debug("dial-back: peer did not check", "peer", p, "err", err)
			}
			out[i] = outcome{sent, arrived}
		}()
	}
	wg.Wait()
	res, asked := nat.DialBackNone, 0
	for _, o := range out {
		if o.sent {
			asked++
			if res == nat.DialBackNone {
				res = nat.DialBackBlocked
			}
		}
		if o.arrived {
			res = nat.DialBackReached
		}
	}
	return res, asked
}

// candidates are the peers that can check: connected directly from a
// public address (a peer behind the same NAT would come back through NAT
// loopback, not from outside), other than this node's public IP, one per
// IP, at most askPeers, longest connected first.
func (s *Service) candidates(info nat.Info) []peer.ID {
	type cand struct {
		p      peer.ID
		ip     netip.Addr
		opened time.Time
	}
	var all []cand
	for _, c := range s.h.Network().Conns() {
		if isRelayed(c.RemoteMultiaddr()) {
			continue
		}
		ap, ok := udpAddr(c.RemoteMultiaddr())
		if !ok || ap.Addr() == info.PublicIP || !s.cfg.allowPrivate && !manet.IsPublicAddr(c.RemoteMultiaddr()) {
			continue
		}
		all = append(all, cand{c.RemotePeer(), ap.Addr(), c.Stat().Opened})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].opened.Before(all[j].opened) })
	var out []peer.ID
	seenIP, seenPeer := map[netip.Addr]bool{}, map[peer.ID]bool{}
	for _, c := range all {
		if len(out) == askPeers {
			break
		}
		if (seenIP[c.ip] && !s.cfg.allowPrivate) || seenPeer[c.p] {
			continue
		}
		seenIP[c.ip], seenPeer[c.p] = true, true
		out = append(out, c.p)
	}
	return out
}

// ask runs one check with p: whether p sent, and whether its packet
// arrived.
func (s *Service) ask(ctx context.Context, p peer.ID) (sent, arrived bool, err error) {
	vctx, cancel := context.WithTimeout(ctx, verifyWait)
	ok := s.cfg.Verified(vctx, p)
	cancel()
	if !ok {
		return false, false, errors.New("not a verified peer")
	}
	var txid TxID
	_, _ = rand.Read(txid[:])
	got, stop := s.cfg.Expect(txid)
	defer stop()
	sctx, cancel := context.WithTimeout(ctx, streamTimeout)
	defer cancel()
	// No limited (relayed) connection: the peer must see this node's own
	// address.
	st, err := s.h.NewStream(network.WithNoDial(sctx, "macula-reach"), p, Protocol(s.cfg.Realm))
	if err != nil {
		return false, false, err
	}
	defer st.Close()
	_ = st.SetDeadline(time.Now().Add(streamTimeout))
	if err := frame.Write(st, typeCheck, wireVersion, txid[:]); err != nil {
		st.Reset()
		return false, false, err
	}
	_ = st.CloseWrite()
	h, payload, err := frame.NewReader(st, maxPayload).Next()
	if err != nil {
		st.Reset()
		return false, false, err
	}
	switch {
	case h.Version != wireVersion:
		return false, false, fmt.Errorf("%w: version %d", errMsg, h.Version)
	case h.Type == typeRefused:
		return false, false, fmt.Errorf("refused: %.100q", payload)
	case h.Type != typeSent:
		return false, false, fmt.Errorf("%w: type %d", errMsg, h.Type)
	}
	t := time.NewTimer(arriveWait)
	defer t.Stop()
	select {
	case <-got:
		return true, true, nil
	case <-t.C:
		return true, false, nil
	case <-ctx.Done():
		return true, false, ctx.Err()
	}
}

// handle answers a peer's check: a Binding request with its transaction ID,
// sent dialBackPackets times from a new socket to the address this node
// sees for the peer (nothing else: the peer cannot aim it elsewhere).
func (s *Service) handle(st network.Stream) {
	if !s.enter() {
		st.Reset()
		return
	}
	defer s.wg.Done()
	defer st.Close()
	_ = st.SetDeadline(time.Now().Add(verifyWait + streamTimeout))
	p := st.Conn().RemotePeer()
	vctx, cancel := context.WithTimeout(s.ctx, verifyWait)
	ok := s.cfg.Verified(vctx, p)
	cancel()
	if !ok {
		st.Reset()
		return
	}
	h, payload, err := frame.NewReader(st, maxPayload).Next()
	if err != nil || h.Type != typeCheck || h.Version != wireVersion || len(payload) != len(TxID{}) {
		st.Reset()
		return
	}
	var txid TxID
	copy(txid[:], payload)
	to, why := s.target(st.Conn())
	if why == "" && !s.limiter.allow(p, time.Now()) {
		why = "too many checks"
	}
	if why == "" {
		if err := sendDialBack(s.ctx, to, txid); err != nil {
			why = err.Error()
		}
	}
	if why != "" {
		s.log.Debug("dial-back: refused", "peer", p, "why", why)
		_ = frame.Write(st, typeRefused, wireVersion, []byte(why))
		return
	}
	_ = frame.Write(st, typeSent, wireVersion, nil)
}

// target is where a check on c goes: c's remote address, if direct, UDP
// and public.
func (s *Service) target(c network.Conn) (netip.AddrPort, string) {
	if isRelayed(c.RemoteMultiaddr()) {
		return netip.AddrPort{}, "relayed connection"
	}
	ap, ok := udpAddr(c.RemoteMultiaddr())
	if !ok {
		return netip.AddrPort{}, "not a UDP address"
	}
	if !s.cfg.allowPrivate && !manet.IsPublicAddr(c.RemoteMultiaddr()) {
		return netip.AddrPort{}, "not a public address"
	}
	return ap, ""
}

// sendDialBack sends the Binding request from a new socket.
func sendDialBack(ctx context.Context, to netip.AddrPort, txid TxID) error {
	req, err := nat.BindingRequest(txid)
	if err != nil {
		return err
	}
	network := "udp4"
	if to.Addr().Is6() {
		network = "udp6"
	}
	c, err := net.ListenUDP(network, nil)
	if err != nil {
		return err
	}
	defer c.Close()
	ua := net.UDPAddrFromAddrPort(to)
	for i := 0; i < dialBackPackets; i++ {
		if i > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(dialBackGap):
			}
		}
		if _, err := c.WriteToUDP(req, ua); err != nil {
			return err
		}
	}
	return nil
}

func isRelayed(a ma.Multiaddr) bool {
	_, err := a.ValueForProtocol(ma.P_CIRCUIT)
	return err == nil
}

// udpAddr is the IP and UDP port of a multiaddr, if it has them.
func udpAddr(a ma.Multiaddr) (netip.AddrPort, bool) {
	network, hostport, err := manet.DialArgs(a)
	if err != nil || (network != "udp4" && network != "udp6" && network != "udp") {
		return netip.AddrPort{}, false
	}
	ap, err := netip.ParseAddrPort(hostport)
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
}

// limiter bounds the checks a node does for others: one per peer per
// peerGap, and at most burst within window overall.
type limiter struct {
	mu     sync.Mutex // guards the fields below
	last   map[peer.ID]time.Time
	recent []time.Time
}

const (
	limitPeerGap = 10 * time.Second
	limitWindow  = time.Second
	limitBurst   = 20
	limitPeers   = 4096
)

func newLimiter() *limiter { return &limiter{last: make(map[peer.ID]time.Time)} }

func (l *limiter) allow(p peer.ID, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t, ok := l.last[p]; ok && now.Sub(t) < limitPeerGap {
		return false
	}
	keep := l.recent[:0]
	for _, t := range l.recent {
		if now.Sub(t) < limitWindow {
			keep = append(keep, t)
		}
	}
	l.recent = keep
	if len(l.recent) >= limitBurst {
		return false
	}
	if len(l.last) >= limitPeers {
		for q, t := range l.last {
			if now.Sub(t) >= limitPeerGap {
				delete(l.last, q)
			}
		}
		if len(l.last) >= limitPeers {
			return false
		}
	}
	l.last[p] = now
	l.recent = append(l.recent, now)
	return true
}
