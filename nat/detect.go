package nat

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// serverProbe is step 1 with one server.
type serverProbe struct {
	sv   server
	addr netip.AddrPort // resolved
	res  result
	err  error
}

func (sp serverProbe) report() ServerResult {
	r := ServerResult{Server: sp.sv.name}
	if sp.addr.IsValid() {
		r.Addr = sp.addr.String()
	}
	if sp.err != nil {
		r.Error = sp.err.Error()
		return r
	}
	r.OK = true
	r.RFC5780 = sp.res.other.IsValid()
	r.Mapped = sp.res.mapped.String()
	r.RTTMS = float64(sp.res.rtt.Microseconds()) / 1000
	return r
}

// probeRun is one probe: the state shared by its steps.
type probeRun struct {
	p       *Prober
	servers []server
	local   netip.AddrPort // the shared socket's local address
}

// run does the probe described in the package doc and returns its Info,
// and an error if no server answered.
func (r *probeRun) run(ctx context.Context) (Info, error) {
	cfg := r.p.cfg
	info := Info{
		Type:      TypeUnknown,
		Mapping:   BehaviorUnknown,
		Filtering: BehaviorUnknown,
		LocalAddr: r.local.String(),
		Servers:   []ServerResult{},
	}
	if len(r.servers) == 0 {
		info.Error = ErrNoServers.Error() + " configured"
		return info, ErrNoServers
	}

	// Step 1: every server at once.
	probes := make([]serverProbe, len(r.servers))
	var wg sync.WaitGroup
	for i, sv := range r.servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			probes[i] = r.bindServer(ctx, sv)
		}()
	}
	wg.Wait()
	var errs []string
	var primary *serverProbe
	for i := range probes {
		sp := &probes[i]
		info.Servers = append(info.Servers, sp.report())
		if sp.err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", sp.sv.name, sp.err))
			continue
		}
		// The first server that answered, unless a later one can run the
		// behaviour tests and the first cannot.
		if primary == nil || (!primary.res.other.IsValid() && sp.res.other.IsValid()) {
			primary = sp
		}
	}
	if primary == nil {
		info.Error = fmt.Sprintf("%v: %s", ErrNoAnswer, strings.Join(errs, "; "))
		return info, fmt.Errorf("%w: %s", ErrNoAnswer, strings.Join(errs, "; "))
	}
	m1 := primary.res.mapped
	info.PublicIP, info.PublicPort = m1.Addr(), m1.Port()
	open := r.isLocal(m1)
	if cfg.NoBehaviorTests {
		if open {
			info.Type, info.Mapping = TypeOpen, BehaviorEndpointIndependent
		}
		info.Error = strings.Join(errs, "; ")
		return info, nil
	}

	// Steps 2 to 4. The filtering and hairpin tests use a second socket; if
	// none can be opened, filtering runs on the shared socket before the
	// mapping test can open pinholes towards the server's other address.
	var (
		mapping, filtering = BehaviorUnknown, BehaviorUnknown
		mapErr, filtErr    error
		hairpin            *bool
		hairErr            error
	)
	fresh, ferr := r.openSecond()
	if ferr != nil {
		errs = append(errs, fmt.Sprintf("second socket: %v (filtering tested on the QUIC socket, no hairpin test)", ferr))
		filtering, filtErr = r.filteringTest(ctx, r.p.ep, primary)
		mapping, mapErr = r.mappingTest(ctx, primary, probes)
	} else {
		defer fresh.close()
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			mapping, mapErr = r.mappingTest(ctx, primary, probes)
		}()
		go func() {
			defer wg.Done()
			filtering, filtErr = r.filteringTest(ctx, fresh, primary)
		}()
		if !open {
			wg.Add(1)
			go func() {
				defer wg.Done()
				hairpin, hairErr = r.hairpinTest(ctx, fresh, m1)
			}()
		}
		wg.Wait()
	}
	for _, e := range []error{mapErr, filtErr, hairErr} {
		if e != nil {
			errs = append(errs, e.Error())
		}
	}
	info.Mapping, info.Filtering, info.Hairpin = mapping, filtering, hairpin
	if open {
		info.Type, info.Mapping = TypeOpen, BehaviorEndpointIndependent
	} else {
		info.Type = classify(mapping, filtering)
	}
	info.Error = strings.Join(errs, "; ")
	return info, nil
}

// bindServer resolves a server and runs a Binding transaction with it.
func (r *probeRun) bindServer(ctx context.Context, sv server) serverProbe {
	sp := serverProbe{sv: sv}
	ip, err := r.resolve(ctx, sv.host)
	if err != nil {
		sp.err = err
		return sp
	}
	sp.addr = netip.AddrPortFrom(ip, sv.port)
	sp.res, sp.err = r.p.ep.roundTrip(ctx, sp.addr, 0, r.p.cfg.RTO, r.p.cfg.Retransmits)
	// An OTHER-ADDRESS must differ from the server's address in both IP and
	// port (RFC 5780 section 4.1), or the behaviour tests would compare a
	// destination with itself and call any NAT endpoint-independent.
	if o := sp.res.other; o.IsValid() && (o.Addr() == sp.addr.Addr() || o.Port() == sp.addr.Port() || o.Addr().Is4() != sp.addr.Addr().Is4()) {
		sp.res.other = netip.AddrPort{}
	}
	return sp
}

// resolve gives one address of host in the shared socket's family.
func (r *probeRun) resolve(ctx context.Context, host string) (netip.Addr, error) {
	want6 := r.local.Addr().Is6() && !r.local.Addr().Is4In6() && !r.local.Addr().IsUnspecified()
	if ip, err := netip.ParseAddr(host); err == nil {
		ip = ip.Unmap()
		if want6 != ip.Is6() && !r.local.Addr().IsUnspecified() {
			return netip.Addr{}, fmt.Errorf("%w: %v is not of the socket's family (%v)", ErrUnreachable, ip, r.local)
		}
		return ip, nil
	}
	network := "ip4"
	if want6 {
		network = "ip6"
	}
	ips, err := r.p.lookup(ctx, network, host)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%w: resolve %s: %v", ErrUnreachable, host, err)
	}
	if len(ips) == 0 {
		return netip.Addr{}, fmt.Errorf("%w: %s has no %s address", ErrUnreachable, host, network)
	}
	return ips[0].Unmap(), nil
}

// isLocal: the mapped address is the socket's own, so there is no NAT.
func (r *probeRun) isLocal(m netip.AddrPort) bool {
	if m.Port() != r.local.Port() {
		return false
	}
	if !r.local.Addr().IsUnspecified() {
		return m.Addr() == r.local.Addr()
	}
	ips, err := r.p.localIPs()
	if err != nil {
		return false
	}
	for _, ip := range ips {
		if ip == m.Addr() {
			return true
		}
	}
	return false
}

// openSecond opens the fresh socket for the filtering and hairpin tests, on
// the shared socket's IP.
func (r *probeRun) openSecond() (*endpoint, error) {
	conn, err := r.p.listen(net.UDPAddrFromAddrPort(netip.AddrPortFrom(r.local.Addr(), 0)))
	if err != nil {
		return nil, err
	}
	return newEndpoint(conn, r.p.log, nil), nil
}

// mappingTest is RFC 5780 section 4.3, or, without a server that supports
// it, a comparison of the mapped addresses from servers on different IPs.
func (r *probeRun) mappingTest(ctx context.Context, primary *serverProbe, all []serverProbe) (Behavior, error) {
	cfg := r.p.cfg
	m1 := primary.res.mapped
	if other := primary.res.other; other.IsValid() {
		// Test II: the other IP, the primary port.
		a2p1 := netip.AddrPortFrom(other.Addr(), primary.addr.Port())
		r2, err := r.p.ep.roundTrip(ctx, a2p1, 0, cfg.RTO, cfg.Retransmits)
		if err != nil {
			return BehaviorUnknown, fmt.Errorf("mapping test to %v (OTHER-ADDRESS of %s): %w", a2p1, primary.sv.name, err)
		}
		if r2.mapped == m1 {
			return BehaviorEndpointIndependent, nil
		}
		// Test III: the other IP and port.
		r3, err := r.p.ep.roundTrip(ctx, other, 0, cfg.RTO, cfg.Retransmits)
		if err != nil {
			// Test II already shows the mapping depends on the address.
			return BehaviorAddressDependent, fmt.Errorf("mapping test to %v: %w (mapping is at least address-dependent)", other, err)
		}
		if r3.mapped == r2.mapped {
			return BehaviorAddressDependent, nil
		}
		return BehaviorAddressAndPortDependent, nil
	}
	// Without RFC 5780: a mapping that changes between server IPs is at
	// least address-dependent; one that changes between ports of one IP is
	// address-and-port-dependent.
	otherIP := false
	for _, sp := range all {
		if sp.err != nil || sp.addr == primary.addr {
			continue
		}
		if sp.addr.Addr() == primary.addr.Addr() {
			if sp.res.mapped != m1 {
				return BehaviorAddressAndPortDependent, nil
			}
			continue
		}
		otherIP = true
		if sp.res.mapped != m1 {
			return BehaviorAddressDependent, nil
		}
	}
	if otherIP {
		return BehaviorEndpointIndependent, nil
	}
	return BehaviorUnknown, fmt.Errorf("mapping: no server supports RFC 5780 (OTHER-ADDRESS) and no second server IP to compare with")
}

// filteringTest is RFC 5780 section 4.4, both requests at once from ep.
func (r *probeRun) filteringTest(ctx context.Context, ep *endpoint, primary *serverProbe) (Behavior, error) {
	cfg := r.p.cfg
	if !primary.res.other.IsValid() {
		return BehaviorUnknown, fmt.Errorf("filtering: %s does not support RFC 5780 (no OTHER-ADDRESS)", primary.sv.name)
	}
	dst := primary.addr
	var both, port result
	var bothErr, portErr error
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		both, bothErr = ep.roundTrip(ctx, dst, changeIP|changePort, cfg.RTO, cfg.Retransmits)
	}()
	go func() {
		defer wg.Done()
		port, portErr = ep.roundTrip(ctx, dst, changePort, cfg.RTO, cfg.Retransmits)
	}()
	wg.Wait()
	ignored := func(res result) error {
		return fmt.Errorf("filtering: %s ignored CHANGE-REQUEST (answered from %v)", primary.sv.name, res.from)
	}
	switch {
	case bothErr == nil:
		if res := both; res.from.Addr() == dst.Addr() || res.from.Port() == dst.Port() {
			return BehaviorUnknown, ignored(res)
		}
		return BehaviorEndpointIndependent, nil
	case !errors.Is(bothErr, ErrTimeout):
		return BehaviorUnknown, fmt.Errorf("filtering test (change IP and port) with %s: %w", primary.sv.name, bothErr)
	case portErr == nil:
		if res := port; res.from.Addr() != dst.Addr() || res.from.Port() == dst.Port() {
			return BehaviorUnknown, ignored(res)
		}
		return BehaviorAddressDependent, nil
	case errors.Is(portErr, ErrTimeout):
		return BehaviorAddressAndPortDependent, nil
	default:
		return BehaviorUnknown, fmt.Errorf("filtering test (change port) with %s: %w", primary.sv.name, portErr)
	}
}

// hairpinTest is RFC 5780 section 4.6: a request from the second socket to
// the shared socket's public address; hairpinning works if it arrives.
func (r *probeRun) hairpinTest(ctx context.Context, from *endpoint, public netip.AddrPort) (*bool, error) {
	cfg := r.p.cfg
	req, err := newRequest(0)
	if err != nil {
		return nil, err
	}
	arrived, stop := r.p.ep.watchFor(req.TransactionID)
	defer stop()
	to := net.UDPAddrFromAddrPort(public)
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	yes, no := true, false
	for attempt := 0; attempt <= cfg.Retransmits; attempt++ {
		if _, err := from.conn.WriteTo(req.Raw, to); err != nil {
			return nil, fmt.Errorf("hairpin test: %w", err)
		}
		timer.Reset(cfg.RTO << attempt)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-arrived:
			return &yes, nil
		case <-timer.C:
		}
	}
	return &no, nil
}
