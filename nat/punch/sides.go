package punch

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// The two sides of a birthday attempt, after the first messages: probeSide
// is A (port-restricted), openSide is B (symmetric).

// probeSide is A: probe B's public IP at random ports until B reports a
// hit, then dial B there. B's "ready" has been read.
func (s *Service) probeSide(ctx context.Context, st network.Stream, p peer.ID, nonce []byte, bIP netip.Addr) bool {
	conn, err := s.quicConn()
	if err != nil {
		st.Reset()
		return false
	}
	defer conn.Close()
	hits, readDone := readHit(st)
	defer readDone()

	start := time.Now()
	pr := s.sendProbes(ctx, conn, nonce, bIP, hits)
	if !pr.got || !pr.probed[pr.hit] {
		s.log.Info("birthday: no hit", "peer", p, "probes", pr.sent, "took", time.Since(start).Round(time.Millisecond))
		_ = writeBdayMsg(st, bdayMsg{Kind: typeDone, Probes: pr.sent})
		_ = st.CloseWrite()
		_ = st.SetReadDeadline(time.Now().Add(bdayHitWait)) // the reader ends soon
		return false
	}
	return s.dialHit(ctx, st, p, netip.AddrPortFrom(bIP, pr.hit), pr.sent, start)
}

// readHit reads B's next message in the background: the port of a "hit",
// or nothing when B sends anything else or the stream ends. done waits for
// the reader.
func readHit(st network.Stream) (hits <-chan uint16, done func()) {
	ch := make(chan uint16, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(ch)
		m, err := readBdayMsg(st)
		if err == nil && m.Kind == typeHit {
			ch <- m.Port
		}
	}()
	return ch, wg.Wait
}

// probeRun is what sendProbes did.
type probeRun struct {
	sent   int
	probed map[uint16]bool
	hit    uint16
	got    bool
}

// sendProbes sends up to Config.BirthdayProbes probes to distinct random
// ports of bIP, bdayProbeBatch every bdayProbePace, until hits reports one
// (or closes); then it waits bdayHitWait more for a late hit.
func (s *Service) sendProbes(ctx context.Context, conn net.PacketConn, nonce []byte, bIP netip.Addr, hits <-chan uint16) probeRun {
	ports := bdayPorts(mrand.New(mrand.NewPCG(mrand.Uint64(), mrand.Uint64())), s.cfg.BirthdayProbes, bdayPortMin, bdayPortMax)
	r := probeRun{probed: make(map[uint16]bool, len(ports))}
	ticker := time.NewTicker(bdayProbePace)
	defer ticker.Stop()
probing:
	for r.sent < len(ports) {
		for i := 0; i < bdayProbeBatch && r.sent < len(ports); i++ {
			port := ports[r.sent]
			if _, err := conn.WriteTo(bdayPacket(nonce, port), net.UDPAddrFromAddrPort(netip.AddrPortFrom(bIP, port))); err != nil {
				break probing
			}
			r.probed[port] = true
			r.sent++
		}
		select {
		case r.hit, r.got = <-hits:
			break probing
		case <-ctx.Done():
			break probing
		case <-ticker.C:
		}
	}
	if !r.got && ctx.Err() == nil {
		select {
		case r.hit, r.got = <-hits:
		case <-time.After(bdayHitWait):
		case <-ctx.Done():
		}
	}
	return r
}

// dialHit is A after B's hit: dial B's public address that the probe went
// to, from the QUIC socket, and tell B how it went.
func (s *Service) dialHit(ctx context.Context, st network.Stream, p peer.ID, to netip.AddrPort, sent int, start time.Time) bool {
	target, err := manet.FromNetAddr(net.UDPAddrFromAddrPort(to))
	if err != nil {
		st.Reset()
		return false
	}
	target = target.Encapsulate(ma.StringCast("/quic-v1"))
	dctx, cancel := context.WithTimeout(network.WithForceDirectDial(ctx, "macula-birthday"), bdayDialTimeout)
	err = s.h.Connect(dctx, peer.AddrInfo{ID: p, Addrs: []ma.Multiaddr{target}})
	cancel()
	ok := err == nil && s.directConn(p)
	_ = writeBdayMsg(st, bdayMsg{Kind: typeDone, OK: ok, Probes: sent})
	_ = st.CloseWrite()
	if !ok {
		s.log.Info("birthday: dial after the hit failed", "peer", p, "addr", target, "probes", sent, "err", err)
		return false
	}
	s.log.Info("birthday: direct path to a peer (birthday probing)", "peer", p, "addr", target,
		"probes", sent, "took", time.Since(start).Round(time.Millisecond))
	return true
}

// openSide is B: open the sockets towards A's public address, say "ready",
// wait for a probe, then listen on the socket's port and report the hit.
func (s *Service) openSide(ctx context.Context, st network.Stream, p peer.ID, nonce []byte, aPub netip.AddrPort, selfIP netip.Addr) bool {
	start := time.Now()
	socks := openSockets(s.cfg.BirthdaySockets, aPub, nonce)
	if socks.len() == 0 {
		st.Reset()
		return false
	}
	hits := socks.watch(aPub, nonce)
	defer socks.wait()
	defer socks.close() // runs before wait: the readers return
	if err := writeBdayMsg(st, bdayMsg{Kind: typeReady, Nonce: nonce, Addr: selfIP.String()}); err != nil {
		st.Reset()
		return false
	}
	// The next message from A: "done" after our hit, or the end of the
	// stream when A gave up before.
	msgs, readDone := readNext(st)
	defer readDone()
	defer st.Reset() // ends that read if it still runs
	var h sockHit
	select {
	case h = <-hits:
	case m := <-msgs:
		s.log.Info("birthday: the peer stopped probing without a hit", "peer", p, "sockets", socks.len(), "probes", m.m.Probes, "err", m.err)
		return false
	case <-ctx.Done():
		s.log.Info("birthday: no probe came in", "peer", p, "sockets", socks.len())
		return false
	}
	local := socks.localPort(h.k)
	socks.close()
	laddr, ok := s.listenForHit(st, p, local, h.port)
	if !ok {
		return false
	}
	var m bdayMsg
	var err error
	select {
	case r := <-msgs:
		m, err = r.m, r.err
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil || m.Kind != typeDone || !m.OK || !s.directConn(p) {
		s.bdayRemoveListener(local, laddr)
		s.log.Info("birthday: no direct connection after the hit", "peer", p, "port", h.port, "err", err)
		return false
	}
	s.log.Info("birthday: direct path to a peer (birthday probing)", "peer", p, "public_port", h.port,
		"local_port", local, "probes", m.Probes, "took", time.Since(start).Round(time.Millisecond))
	s.bdayWatch(local, laddr)
	return true
}

// listenForHit is B after a probe came in on the socket whose local port
// is local (now closed): listen with the host's QUIC transport on that
// port, so that A's dial to the hit's public port reaches the host, and
// tell A the port. It reports the listener's address.
func (s *Service) listenForHit(st network.Stream, p peer.ID, local int, public uint16) (ma.Multiaddr, bool) {
	laddr, err := ma.NewMultiaddr(fmt.Sprintf("/ip4/0.0.0.0/udp/%d/quic-v1", local))
	if err != nil || !s.bdayAddListener(local) {
		st.Reset()
		return nil, false
	}
	if err := s.h.Network().Listen(laddr); err != nil {
		s.bdayRemoveListener(local, nil)
		s.log.Info("birthday: could not listen on the probed socket's port", "peer", p, "port", local, "err", err)
		st.Reset()
		return nil, false
	}
	if err := writeBdayMsg(st, bdayMsg{Kind: typeHit, Port: public}); err != nil {
		s.bdayRemoveListener(local, laddr)
		st.Reset()
		return nil, false
	}
	_ = st.CloseWrite()
	return laddr, true
}

// msgOrErr is one read from a stream.
type msgOrErr struct {
	m   bdayMsg
	err error
}

// readNext reads the next message in the background; done waits for the
// reader.
func readNext(st network.Stream) (msgs <-chan msgOrErr, done func()) {
	ch := make(chan msgOrErr, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		m, err := readBdayMsg(st)
		ch <- msgOrErr{m, err}
	}()
	return ch, wg.Wait
}

// bdaySocks are B's extra sockets of one attempt.
type bdaySocks struct {
	socks []*net.UDPConn
	wg    sync.WaitGroup // the readers of watch
	once  sync.Once
}

// sockHit: socket k received a probe sent to public port port.
type sockHit struct {
	k    int
	port uint16
}

// openSockets opens up to n UDP sockets and sends one opening packet from
// each to to: n random mappings on a symmetric NAT, each letting to in.
func openSockets(n int, to netip.AddrPort, nonce []byte) *bdaySocks {
	b := &bdaySocks{socks: make([]*net.UDPConn, 0, n)}
	ua := net.UDPAddrFromAddrPort(to)
	open := bdayPacket(nonce, 0)
	for i := 0; i < n; i++ {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero})
		if err != nil {
			break
		}
		b.socks = append(b.socks, c)
		_, _ = c.WriteToUDP(open, ua)
	}
	return b
}

func (b *bdaySocks) len() int { return len(b.socks) }

func (b *bdaySocks) localPort(k int) int { return b.socks[k].LocalAddr().(*net.UDPAddr).Port }

// watch reads every socket until it is closed; the first probe from from
// with the nonce is reported (once).
func (b *bdaySocks) watch(from netip.AddrPort, nonce []byte) <-chan sockHit {
	hits := make(chan sockHit, 1)
	for k, c := range b.socks {
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			buf := make([]byte, 64)
			for {
				l, src, err := c.ReadFromUDPAddrPort(buf)
				if err != nil {
					return
				}
				if netip.AddrPortFrom(src.Addr().Unmap(), src.Port()) != from {
					continue
				}
				if port, ok := parseBdayPacket(buf[:l], nonce); ok {
					select {
					case hits <- sockHit{k, port}:
					default:
					}
					return
				}
			}
		}()
	}
	return hits
}

// close closes every socket (once), which ends the readers.
func (b *bdaySocks) close() {
	b.once.Do(func() {
		for _, c := range b.socks {
			c.Close()
		}
	})
}

// wait waits for the readers of watch.
func (b *bdaySocks) wait() { b.wg.Wait() }
