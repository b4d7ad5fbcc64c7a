package nat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/pion/stun/v3"
)

// Prober measures the public address and NAT behaviour of one UDP socket,
// on a timer and on demand, and answers STUN on it if asked to.
//
// Lock order: probeMu before mu.
type Prober struct {
	cfg   settings        // read-only after New (cfg.servers is replaced under mu)
	log   *slog.Logger    // read-only
	ep    *endpoint       // the shared socket; read-only
	resp  *responder      // nil unless cfg.Respond; read-only
	local netip.AddrPort  // the shared socket's address; read-only
	ctx   context.Context // lifetime: cancelled by Close
	stop  context.CancelFunc
	kick  chan struct{}  // capacity 1: a probe is wanted soon
	wg    sync.WaitGroup // the timer loop

	// Hooks, replaced by tests before the first probe (export_test.go).
	listen   func(laddr *net.UDPAddr) (net.PacketConn, error)
	localIPs func() ([]netip.Addr, error)
	lookup   func(ctx context.Context, network, host string) ([]netip.Addr, error)

	probeMu sync.Mutex // one probe at a time

	mu      sync.Mutex // guards the fields below
	servers []server
	info    Info
	last    netip.AddrPort // the last public address measured
	closed  bool
}

// New starts a Prober on conn, which it owns from then on and closes in
// Close. conn is normally the QUIC listener's socket, shared through
// SharedQUICConn; a plain *net.UDPConn works too. Unless cfg.Interval is
// negative, the first probe starts at once in the background; Info reports
// TypeUnknown until it ends.
func New(cfg Config, conn net.PacketConn) (*Prober, error) {
	s, err := validate(cfg)
	if err != nil {
		return nil, err
	}
	if conn == nil {
		return nil, fmt.Errorf("%w: conn is nil", ErrConfig)
	}
	p := &Prober{
		cfg:      s,
		log:      s.Logger,
		local:    addrPortOf(conn.LocalAddr()),
		kick:     make(chan struct{}, 1),
		listen:   func(laddr *net.UDPAddr) (net.PacketConn, error) { return net.ListenUDP("udp", laddr) },
		localIPs: interfaceIPs,
		lookup:   net.DefaultResolver.LookupNetIP,
		servers:  s.servers,
		info: Info{
			Type: TypeUnknown, Mapping: BehaviorUnknown, Filtering: BehaviorUnknown,
			Servers: []ServerResult{},
		},
	}
	p.info.LocalAddr = p.local.String()
	var onRequest func(*stun.Message, netip.AddrPort)
	if s.Respond {
		var addrs [4]netip.AddrPort
		addrs[sockPrimary] = p.local
		p.resp = newResponder(s.Server, addrs, false)
		// The read loop may answer before p.ep is set: answer on conn.
		onRequest = func(m *stun.Message, from netip.AddrPort) { p.answer(conn, m, from) }
	}
	p.ctx, p.stop = context.WithCancel(context.Background())
	p.ep = newEndpoint(conn, p.log, onRequest)
	p.wg.Add(1)
	go p.loop(s.Interval >= 0)
	return p, nil
}

// answer is the responder on the shared socket (called by its read loop).
func (p *Prober) answer(conn net.PacketConn, m *stun.Message, from netip.AddrPort) {
	out, _, ok := p.resp.handle(m, from, sockPrimary)
	if !ok {
		return
	}
	if _, err := conn.WriteTo(out, net.UDPAddrFromAddrPort(from)); err != nil {
		p.log.Debug("nat: stun response", "to", from, "err", err)
	}
}

// Close stops the timer, aborts a probe in progress, closes the socket and
// waits for the Prober's goroutines. Safe to call more than once.
func (p *Prober) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	// Cancel first: a probe in progress ends its transactions, and the loop
	// returns; then the socket can go, which ends the read loop.
	p.stop()
	p.wg.Wait()
	p.probeMu.Lock() // wait for a Probe call of the caller's that is still running
	defer p.probeMu.Unlock()
	return p.ep.close()
}

// Info returns the result of the last probe (a copy).
func (p *Prober) Info() Info {
	p.mu.Lock()
	defer p.mu.Unlock()
	return cloneInfo(p.info)
}

// Stats returns the counters of the responder (zero without Config.Respond).
func (p *Prober) Stats() ServerStats {
	if p.resp == nil {
		return ServerStats{}
	}
	return p.resp.stats()
}

// ExpectRequest returns a channel that is closed when a STUN Binding request
// with transaction ID txid arrives on the Prober's socket, from anyone, and
// a function that stops waiting (call it in any case). Such a request is not
// answered. A dial-back check (package nat/reach) gives txid to a peer, which
// sends the request from a socket this node has never sent to: if it
// arrives, the socket is reachable from outside.
func (p *Prober) ExpectRequest(txid [stun.TransactionIDSize]byte) (<-chan struct{}, func()) {
	return p.ep.watchFor(txid)
}

// LocalAddr is the address of the probed socket.
func (p *Prober) LocalAddr() netip.AddrPort { return p.local }

// SetServers replaces the STUN servers (same format and limit as
// Config.Servers) and asks for a probe soon.
func (p *Prober) SetServers(servers []string) error {
	parsed, err := parseServers(servers)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.servers = parsed
	p.mu.Unlock()
	p.Reprobe()
	return nil
}

// Reprobe asks for a probe soon, in the background; call it when the local
// address changes. Requests made while one is pending are merged.
func (p *Prober) Reprobe() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Probe runs a probe now (waiting for one in progress first), stores and
// returns its Info. The error is ErrNoServers or ErrNoAnswer (wrapped) when
// no public address could be learnt, ErrClosed after Close, or ctx's error;
// a partial result (say, filtering unknown) is no error and is described in
// Info.Error.
func (p *Prober) Probe(ctx context.Context) (Info, error) {
	p.probeMu.Lock()
	defer p.probeMu.Unlock()
	p.mu.Lock()
	closed, servers := p.closed, p.servers
	p.mu.Unlock()
	if closed || p.ctx.Err() != nil {
		return Info{}, ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.ProbeTimeout)
	defer cancel()
	stop := context.AfterFunc(p.ctx, cancel) // Close aborts the probe
	defer stop()

	start := time.Now()
	run := &probeRun{p: p, servers: servers, local: p.local}
	info, err := run.run(ctx)
	if ctxErr := ctx.Err(); ctxErr != nil {
		if p.ctx.Err() != nil {
			return Info{}, ErrClosed
		}
		// Cut short (ProbeTimeout or the caller): what was measured stays,
		// and the tests that were aborted say so in Info.Error.
		info.Error = strings.TrimPrefix(info.Error+"; probe cut short: "+ctxErr.Error(), "; ")
		if err == nil {
			err = ctxErr
		}
	}
	info.MeasuredAt = time.Now()
	info.DurationMS = float64(time.Since(start).Microseconds()) / 1000

	p.mu.Lock()
	if pub, ok := info.PublicAddr(); ok && err == nil {
		p.last = pub
	} else if p.last.IsValid() {
		info.PublicIP, info.PublicPort, info.Stale = p.last.Addr(), p.last.Port(), true
	}
	p.info = info
	out := cloneInfo(info)
	p.mu.Unlock()

	switch {
	case errors.Is(err, ErrNoServers):
		p.log.Debug("nat probe: no STUN servers")
	case err != nil:
		p.log.Warn("nat probe failed", "err", err)
	default:
		p.log.Debug("nat probe", "type", info.Type, "mapping", info.Mapping, "filtering", info.Filtering,
			"public", fmt.Sprintf("%v:%d", info.PublicIP, info.PublicPort), "ms", info.DurationMS, "err", info.Error)
	}
	if p.cfg.OnUpdate != nil {
		p.cfg.OnUpdate(cloneInfo(info))
	}
	return out, err
}

// loop probes at start and every Interval (with jitter), and when kicked.
func (p *Prober) loop(timed bool) {
	defer p.wg.Done()
	var tick <-chan time.Time
	var timer *time.Timer
	if timed {
		timer = time.NewTimer(0)
		defer timer.Stop()
		tick = timer.C
	}
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-tick:
		case <-p.kick:
		}
		p.Probe(p.ctx) //nolint:errcheck // logged and stored in Info
		if timed {
			timer.Reset(jitter(p.cfg.Interval))
		}
	}
}

// jitter varies d by up to 10% either way.
func jitter(d time.Duration) time.Duration {
	return d - d/10 + rand.N(d/5+1)
}

func cloneInfo(i Info) Info {
	i.Servers = append([]ServerResult{}, i.Servers...)
	if i.Hairpin != nil {
		h := *i.Hairpin
		i.Hairpin = &h
	}
	return i
}

// interfaceIPs lists the host's own addresses (to tell "no NAT").
func interfaceIPs() ([]netip.Addr, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if pfx, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, pfx.Addr().Unmap())
		}
	}
	return out, nil
}
