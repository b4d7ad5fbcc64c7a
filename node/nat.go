package node

import (
	"context"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/config"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/host/autorelay"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
	"github.com/libp2p/go-libp2p/p2p/transport/quicreuse"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/macula-io/macula/dht"
	"github.com/macula-io/macula/event"
	"github.com/macula-io/macula/nat"
	"github.com/macula-io/macula/nat/punch"
	"github.com/macula-io/macula/nat/reach"
)

// natState is the node's NAT prober: STUN from the QUIC socket itself, so the
// mapping it learns is the one QUIC traffic gets, and a STUN responder on the
// same socket, so that every Macula node is a STUN server for its mesh.
type natState struct {
	// peers is the notifiee that makes connected peers STUN servers when
	// no configured one answers (peerSTUN); set in startNAT.
	peers *network.NotifyBundle
	// stunMu guards stunSet, the servers last given to the prober.
	stunMu  sync.Mutex
	stunSet []string

	cm     *quicreuse.ConnManager        // filled by fx when the host is built
	prober atomic.Pointer[nat.Prober]    // nil until started
	last   atomic.Pointer[nat.Info]      // the latest finished probe
	reach  atomic.Pointer[reach.Service] // nil until started

	// lost is the notifiee that looks for a peer again when its last,
	// relayed, connection closed (refind.go); set in startReach.
	lost   *network.NotifyBundle
	refind refinds
}

// info returns the latest NAT information (zero before the first probe).
func (s *natState) info() nat.Info {
	if p := s.prober.Load(); p != nil {
		return p.Info()
	}
	return nat.Info{Type: nat.TypeUnknown}
}

// stunServers lists the configured STUN servers and, after them, the
// bootstrap peers' QUIC sockets: Macula nodes answer STUN there.
func stunServers(cfg []string, bootstrap []peer.AddrInfo) []string {
	out := append([]string(nil), cfg...)
	seen := map[string]bool{}
	for _, s := range out {
		seen[s] = true
	}
	for _, ai := range bootstrap {
		for _, a := range ai.Addrs {
			if _, err := a.ValueForProtocol(ma.P_QUIC_V1); err != nil {
				continue
			}
			_, hostport, err := manet.DialArgs(a)
			if err != nil || seen[hostport] {
				continue
			}
			if host, _, err := net.SplitHostPort(hostport); err != nil || net.ParseIP(host) == nil {
				continue
			}
			seen[hostport] = true
			out = append(out, hostport)
		}
	}
	if len(out) > 16 {
		out = out[:16]
	}
	return out
}

// startNAT starts the prober on the host's QUIC socket. A failure here is
// not fatal: the node works without knowing its NAT, and says so in Info.
func (n *Node) startNAT() {
	if n.nat.cm == nil {
		n.log.Warn("no QUIC connection manager; NAT probing is off")
		return
	}
	conn, err := nat.SharedQUICConn(n.nat.cm, n.host.Network().ListenAddresses())
	if err != nil {
		n.log.Warn("NAT probing is off", "err", err)
		return
	}
	cfg := nat.DefaultConfig()
	cfg.Servers = stunServers(n.cfg.STUN, n.cfg.bootstrap)
	if n.cfg.NATInterval != 0 {
		cfg.Interval = n.cfg.NATInterval
	}
	cfg.Respond = true
	cfg.Logger = n.log
	cfg.OnUpdate = n.natUpdated
	p, err := nat.New(cfg, conn)
	if err != nil {
		conn.Close()
		n.log.Warn("NAT probing is off", "err", err)
		return
	}
	n.nat.prober.Store(p)
	base := cfg.Servers
	n.nat.peers = &network.NotifyBundle{ConnectedF: func(_ network.Network, c network.Conn) { n.peerSTUN(p, base) }}
	n.host.Network().Notify(n.nat.peers)
	n.wg.Add(1)
	go n.watchInterfaces(p)
}

// natUpdated is the prober's OnUpdate: an event per probe (for who wants
// them), a log line and an event when the NAT changed, and the reach
// service told to decide again.
func (n *Node) natUpdated(i nat.Info) {
	public := ""
	if ap, ok := i.PublicAddr(); ok {
		public = ap.String()
	}
	if n.events.Wants(event.NATProbe) {
		n.events.Emit(event.Event{Kind: event.NATProbe, Outcome: string(i.Type), Addr: public, Reason: i.Error,
			Duration: time.Duration(i.DurationMS * float64(time.Millisecond))})
	}
	prev := n.nat.last.Swap(&i)
	if prev == nil || prev.Type != i.Type || prev.PublicIP != i.PublicIP || prev.PublicPort != i.PublicPort {
		n.log.Info("NAT probed", "type", i.Type, "public", public, "err", i.Error)
		n.events.Emit(event.Event{Kind: event.NATChanged, Outcome: string(i.Type), Addr: public, Reason: i.Error})
	}
	if r := n.nat.reach.Load(); r != nil {
		r.Update()
	}
}

// watchInterfaces probes the NAT again when the host's own addresses change
// (a new interface, a new local IP, another network): the mapping may have
// changed with them. The host's own address events come from interface
// lists that go-libp2p caches for a minute; the interfaces are cheap to
// read. It returns when the node closes.
func (n *Node) watchInterfaces(p *nat.Prober) {
	defer n.wg.Done()
	t := time.NewTicker(ifaceCheckEvery)
	defer t.Stop()
	last := interfaceKey()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		key := interfaceKey()
		if key != last {
			n.log.Info("local addresses changed; probing the NAT again", "addrs", key)
			p.Reprobe()
		}
		last = key
	}
}

// ifaceCheckEvery is how often the node looks for a change of its
// interfaces' addresses.
const ifaceCheckEvery = 5 * time.Second

// interfaceKey lists the host's interface addresses, sorted, as one string.
func interfaceKey() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	list := make([]string, 0, len(addrs))
	for _, a := range addrs {
		list = append(list, a.String())
	}
	slices.Sort(list)
	return strings.Join(list, " ")
}

// NAT returns what the node knows of its NAT: type, mapping and filtering
// behaviour, public address, hairpin, when it was measured, the last error.
func (n *Node) NAT() nat.Info { return n.nat.info() }

// ReprobeNAT asks for a new NAT probe now (it runs in the background).
func (n *Node) ReprobeNAT() {
	if p := n.nat.prober.Load(); p != nil {
		p.Reprobe()
	}
}

func (n *Node) closeNAT() error {
	if n.nat.peers != nil && n.host != nil {
		n.host.Network().StopNotify(n.nat.peers)
	}
	if p := n.nat.prober.Load(); p != nil {
		return p.Close()
	}
	return nil
}

// startPunch starts the NAT-aware punching service (nat/punch) on the host;
// it attaches to the DCUtR filter given to the host.
func (n *Node) startPunch() error {
	cfg := punch.Config{
		Realm:    n.cfg.Realm,
		Self:     n.NAT,
		Verified: n.waitVerified,
		Filter:   n.dcutr,
		Logger:   n.log,
	}
	if n.nat.cm != nil {
		cfg.Sockets = n.nat.cm
	}
	p, err := punch.New(n.host, cfg)
	if err != nil {
		return err
	}
	n.punch = p
	return nil
}

func (n *Node) closePunch() error {
	if n.punch != nil {
		return n.punch.Close()
	}
	return nil
}

// waitVerified waits until p is a verified peer of the realm, or ctx ends,
// or p has no connection left. A relayed connection counts: the punches
// start on one, whose Connectedness is Limited, not Connected.
func (n *Node) waitVerified(ctx context.Context, p peer.ID) bool {
	gone := func() bool { return n.host.Network().Connectedness(p) == network.NotConnected }
	_ = n.awaitPeer(ctx, p, func() bool { return n.IsPeer(p) || gone() }, false)
	return n.IsPeer(p)
}

// natOptions sets the host's options for NAT traversal. The reachability
// is forced (private unless the operator says public), which makes
// go-libp2p's AutoNAT static: the reach service decides from the node's
// own measurements and emits every decision after that on the host's bus,
// where autorelay, the address manager and kad-dht's auto mode follow it.
func (n *Node) natOptions(cfg *config.Config) error {
	s := n.cfg
	// The circuit v2 client, always: any node must be able to dial a peer
	// behind NAT through its relay, whether or not it punches holes or
	// keeps reservations itself.
	cfg.RelayCustom, cfg.Relay = true, true
	reach := network.ReachabilityPrivate
	if s.Reachability == "public" {
		reach = network.ReachabilityPublic
	}
	cfg.AutoNATConfig.ForceReachability = &reach
	self, _ := peer.IDFromPrivateKey(n.id.p2p)
	if relays := s.relayCandidates(self); len(relays) > 0 {
		// Reservations are kept while the decision says private (autorelay
		// follows the reachability event), from the start: before anything
		// is measured the node acts as private.
		// The list is static and short: asking it again every 5 s (not
		// 30 s) finds a relay soon after it turned its service on (when it
		// found itself public), and a relay that refused a reservation is
		// asked again after a minute, not an hour.
		cfg.EnableAutoRelay = true
		cfg.AutoRelayOpts = []autorelay.Option{autorelay.WithStaticRelays(relays), autorelay.WithNumRelays(2),
			autorelay.WithBootDelay(0), autorelay.WithMinInterval(5 * time.Second), autorelay.WithBackoff(time.Minute)}
	}
	if !s.DisableHolePunching {
		cfg.EnableHolePunching = true
		cfg.HolePunchingOptions = []holepunch.Option{holepunch.WithAddrFilter(n.dcutr), holepunch.WithTracer(holePunchEvents{n.events})}
	}
	return nil
}

// policy is what the operator forced, from the Config.
func (s *settings) policy() nat.Policy {
	var p nat.Policy
	switch s.Reachability {
	case "public":
		p.Reachability = nat.ReachabilityPublic
	case "private":
		p.Reachability = nat.ReachabilityPrivate
	}
	switch s.DHTMode {
	case dht.ModeServer:
		p.DHTServer = nat.ForceOn
	case dht.ModeClient:
		p.DHTServer = nat.ForceOff
	}
	switch {
	case s.RelayService:
		p.RelayService = nat.ForceOn
	case s.DisableRelayService:
		p.RelayService = nat.ForceOff
	}
	return p
}

// startReach starts the service that decides, from the NAT measurements
// and dial-back checks, the DHT mode, the relay reservations and the relay
// service, and applies them.
func (n *Node) startReach() error {
	n.nat.lost = n.watchRelayedLoss()
	n.host.Network().Notify(n.nat.lost)
	res := relayv2.DefaultResources()
	res.Limit = &relayv2.RelayLimit{Duration: n.cfg.RelayLimitDuration, Data: n.cfg.RelayLimitData}
	// go-libp2p's bounds (128 reservations, 16 circuits per peer, one
	// reservation per peer), except per IP and per ASN: a site of a realm
	// often has many nodes behind one NAT address, and the ACL already
	// admits realm members only.
	res.MaxReservationsPerIP = relayReservationsPerIP
	res.MaxReservationsPerASN = relayReservationsPerASN
	ropts := []relayv2.Option{relayv2.WithResources(res)}
	if n.sec.v != nil {
		ropts = append(ropts, relayv2.WithACL(relayACL{n})) // members only
	} else {
		ropts = append(ropts, relayv2.WithACL(realmRelayACL{n})) // peers of the realm only
	}
	cfg := reach.Config{
		Realm:        n.cfg.Realm,
		Policy:       n.cfg.policy(),
		Info:         n.NAT,
		Verified:     n.waitVerified,
		RelayOptions: ropts,
		OnDecision: func(d nat.Decision) {
			n.events.Emit(event.Event{Kind: event.ReachabilityChanged, Outcome: string(d.Reachability), Reason: d.Reason})
		},
		Logger: n.log,
	}
	if p := n.nat.prober.Load(); p != nil {
		cfg.Expect = p.ExpectRequest
	}
	r, err := reach.New(n.host, cfg)
	if err != nil {
		return err
	}
	n.nat.reach.Store(r)
	return nil
}

func (n *Node) closeReach() error {
	if n.nat.lost != nil && n.host != nil {
		n.host.Network().StopNotify(n.nat.lost)
	}
	if r := n.nat.reach.Load(); r != nil {
		return r.Close()
	}
	return nil
}

// Reachability returns what the node decided from its measurements:
// reachable or not, and so DHT mode, relay reservations and relay service,
// with the reason.
func (n *Node) Reachability() nat.Decision {
	if r := n.nat.reach.Load(); r != nil {
		return r.Decision()
	}
	return nat.Decision{Reachability: nat.ReachabilityUnknown, Reason: "not started"}
}

// Reservations a relay takes from one IP address and from one autonomous
// system (go-libp2p: 8 and 32).
const (
	relayReservationsPerIP  = 32
	relayReservationsPerASN = 64
)

// realmRelayACL is the relay service's filter in an open realm: only peers
// that passed the realm handshake reserve a slot or connect through it. It
// waits (bounded by the handshake timeout) for a handshake still running.
type realmRelayACL struct{ n *Node }

func (a realmRelayACL) verified(p peer.ID) bool {
	ctx, cancel := context.WithTimeout(a.n.ctx, a.n.cfg.HandshakeTimeout)
	defer cancel()
	return a.n.waitVerified(ctx, p)
}

func (a realmRelayACL) AllowReserve(p peer.ID, _ ma.Multiaddr) bool { return a.verified(p) }

func (a realmRelayACL) AllowConnect(src peer.ID, _ ma.Multiaddr, dest peer.ID) bool {
	return a.verified(src) && a.n.IsPeer(dest)
}

// peerSTUN makes the peers this node is directly connected to its STUN
// servers too, when no configured server (nor bootstrap peer) answered the
// last probe: the first node of a mesh has none, yet every peer answers
// STUN on its QUIC socket and sees the address this node's QUIC traffic
// comes from (what identify calls the observed address). With base servers
// it waits for their first probe.
func (n *Node) peerSTUN(p *nat.Prober, base []string) {
	info := p.Info()
	for _, sr := range info.Servers {
		if sr.OK {
			return
		}
	}
	if len(base) > 0 && info.MeasuredAt.IsZero() {
		return
	}
	servers := append([]string(nil), base...)
	seen := map[string]bool{}
	for _, s := range servers {
		seen[s] = true
	}
	for _, c := range n.host.Network().Conns() {
		if len(servers) >= len(base)+peerSTUNMax || len(servers) >= 16 {
			break
		}
		if isRelayed(c.RemoteMultiaddr()) {
			continue
		}
		if _, err := c.RemoteMultiaddr().ValueForProtocol(ma.P_QUIC_V1); err != nil {
			continue
		}
		_, hostport, err := manet.DialArgs(c.RemoteMultiaddr())
		if err != nil || seen[hostport] {
			continue
		}
		seen[hostport] = true
		servers = append(servers, hostport)
	}
	n.nat.stunMu.Lock()
	same := slices.Equal(servers, n.nat.stunSet)
	n.nat.stunSet = servers
	n.nat.stunMu.Unlock()
	if same || len(servers) == len(base) {
		return
	}
	if err := p.SetServers(servers); err != nil {
		n.log.Debug("NAT: peers as STUN servers", "err", err)
	}
}

// peerSTUNMax is how many peers peerSTUN asks at most.
const peerSTUNMax = 4
