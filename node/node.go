package node

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	record "github.com/libp2p/go-libp2p-record"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/host/autorelay"
	bhost "github.com/libp2p/go-libp2p/p2p/host/basic"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	libp2pquic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
	"go.uber.org/fx"

	"github.com/macula-io/macula/dht"
	"github.com/macula-io/macula/event"
	"github.com/macula-io/macula/nat"
	"github.com/macula-io/macula/peerdid"
	"github.com/macula-io/macula/pubsub"
	"github.com/macula-io/macula/realm"
	"github.com/macula-io/macula/rpc"
)

// Node is one running Macula node. Its methods are safe for concurrent use.
type Node struct {
	cfg    *settings // validated; read-only after New
	log    *slog.Logger
	id     *identity
	did    string
	alias  string
	host   host.Host
	gater  *gater
	dht    *dht.DHT
	rpc    *rpc.RPC
	pubsub *pubsub.PubSub
	events *event.Bus
	aliasV *aliasValidator
	nat    natState
	punch  punchState
	sec    security

	ctx    context.Context // lifetime; cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// wake is signalled (never blocking) when a realm peer connects, so the
	// alias publisher and the DHT can act on a new neighbour.
	wake chan struct{}

	// mu guards the fields below it.
	mu         sync.Mutex
	peers      map[peer.ID]*peerState
	redial     map[peer.ID]chan struct{} // bootstrap peer -> signalled on disconnect
	closed     bool
	keyCreated bool
	started    time.Time // set in New, read-only after
}

// peerState is what the node knows of a connected peer.
type peerState struct {
	name     string
	agent    string
	verified map[network.Conn]bool // connections whose handshake succeeded
	since    time.Time
	// stopWatch ends watchPeer; nil when none runs.
	stopWatch context.CancelFunc
}

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
}

// New validates cfg, loads or creates the node's identity, starts the libp2p
// host, the DHT and the bootstrap loops, and returns the running node. On any
// error nothing is left running and nothing on disk has changed.
func New(ctx context.Context, cfg Config) (*Node, error) {
	s, err := validate(cfg)
	if err != nil {
		return nil, err
	}
	if err := checkPorts(s.listen); err != nil {
		return nil, err
	}
	id, err := loadIdentity(s)
	if err != nil {
		return nil, err
	}
	n := &Node{
		cfg:    s,
		log:    s.Logger.With("realm", s.Realm, "node", s.Name),
		id:     id,
		did:    realm.DIDKey(id.priv.Public().(ed25519.PublicKey)),
		alias:  realm.Alias(s.Realm, s.Name),
		gater:  newGater(),
		events: event.NewBus(),
		wake:   make(chan struct{}, 1),
		peers:  make(map[peer.ID]*peerState),
		redial: make(map[peer.ID]chan struct{}),
	}
	n.aliasV = newAliasValidator(s.Realm, n.alias, n.log)
	n.ctx, n.cancel = context.WithCancel(context.Background())
	selfID, err := peer.IDFromPrivateKey(id.p2p)
	if err != nil {
		n.cancel()
		n.events.Close()
		return nil, err
	}
	if err := n.initSecurity(selfID); err != nil {
		n.cancel()
		n.events.Close()
		return nil, err
	}
	if n.sec.v != nil {
		n.aliasV.member = n.checkAliasMember
	}

	h, err := libp2p.New(n.hostOptions()...)
	if err != nil {
		n.cancel()
		n.events.Close()
		return nil, listenError(s.ListenAddrs, err)
	}
	n.host = h
	fail := func(err error) (*Node, error) {
		n.cancel()
		n.host.Close()
		n.events.Close()
		return nil, err
	}
	var dhtHost host.Host = h
	if n.sec.v != nil {
		dhtHost = membersOnly{Host: h, n: n}
	}
	d, err := dht.New(dhtHost, dht.Config{
		Realm:      s.Realm,
		Mode:       s.DHTMode,
		Validators: map[string]record.Validator{AliasNamespace: n.aliasV},
		Logger:     n.log,
	})
	if err != nil {
		return fail(err)
	}
	n.dht = d
	rcfg := s.RPC
	rcfg.Realm, rcfg.Logger, rcfg.Access = s.Realm, n.log, n.sec.pol
	r, err := rpc.New(h, d, n.events, rcfg)
	if err != nil {
		d.Close()
		return fail(fmt.Errorf("%w: rpc: %w", ErrConfig, err))
	}
	n.rpc = r
	pcfg := s.PubSub
	pcfg.Realm, pcfg.Logger, pcfg.Access = s.Realm, n.log, n.sec.pol
	ps, err := pubsub.New(h, d, n.events, pcfg)
	if err != nil {
		r.Close()
		d.Close()
		return fail(fmt.Errorf("%w: pubsub: %w", ErrConfig, err))
	}
	n.pubsub = ps
	created, err := id.persist()
	if err != nil {
		ps.Close()
		r.Close()
		d.Close()
		return fail(err)
	}
	n.keyCreated = created
	n.startNAT()
	n.started = time.Now()

	h.SetStreamHandler(HandshakeProtocol(s.Realm), n.handleHandshake)
	h.SetStreamHandler(PunchProtocol(s.Realm), n.handlePunch)
	h.SetStreamHandler(BirthdayProtocol(s.Realm), n.handleBirthday)
	if n.sec.v != nil {
		h.SetStreamHandler(RevocationProtocol(s.Realm), n.handleRevocations)
	}
	h.Network().Notify(&network.NotifyBundle{
		ConnectedF:    func(_ network.Network, c network.Conn) { n.onConnected(c) },
		DisconnectedF: func(_ network.Network, c network.Conn) { n.onDisconnected(c) },
	})
	// Connections made while libp2p.New ran (autorelay's to its relays)
	// had no notifiee yet.
	for _, c := range h.Network().Conns() {
		n.onConnected(c)
	}
	for _, ai := range s.bootstrap {
		if ai.ID == h.ID() {
			continue // a node listed among its own bootstrap peers
		}
		n.mu.Lock()
		ch := make(chan struct{}, 1)
		n.redial[ai.ID] = ch
		n.mu.Unlock()
		n.wg.Add(1)
		go n.maintain(ai, ch)
	}
	n.wg.Add(1)
	go n.aliasLoop()
	if n.sec.v != nil {
		n.wg.Add(1)
		go n.expiryLoop()
	}
	n.log.Info("node started", "peer", h.ID(), "did", n.did, "alias", n.alias, "addrs", fmt.Sprint(h.Addrs()), "new_key", created)
	return n, nil
}

// hostOptions are the libp2p options of the node's host: QUIC only, the
// realm gater, the NAT prober's address, and relays and hole punching as
// configured.
func (n *Node) hostOptions() []libp2p.Option {
	s := n.cfg
	opts := []libp2p.Option{
		libp2p.Identity(n.id.p2p),
		libp2p.ListenAddrs(s.listen...),
		libp2p.Transport(libp2pquic.NewTransport),
		libp2p.ConnectionGater(n.gater),
		libp2p.UserAgent(Agent),
		libp2p.DisableMetrics(),
		libp2p.WithFxOption(fx.Populate(&n.nat.cm)),
		libp2p.AddrsFactory(nat.AddrsFactory(n.nat.info)),
		// The realm handshake handler must be there before the host starts:
		// autorelay (and peers dialing in) open connections during
		// libp2p.New, and a peer that finds no handler takes this node for
		// one of another realm and refuses it for RefuseFor.
		libp2p.WithFxOption(fx.Invoke(func(h *bhost.BasicHost) {
			h.SetStreamHandler(HandshakeProtocol(s.Realm), n.handleHandshake)
		})),
	}
	// The circuit v2 client, always: any node must be able to dial a peer
	// behind NAT through its relay, whether or not it punches holes or
	// keeps reservations itself.
	opts = append(opts, libp2p.EnableRelay())
	if s.RelayService {
		res := relayv2.DefaultResources()
		res.Limit = &relayv2.RelayLimit{Duration: s.RelayLimitDuration, Data: s.RelayLimitData}
		ropts := []relayv2.Option{relayv2.WithResources(res)}
		if n.sec.v != nil {
			ropts = append(ropts, relayv2.WithACL(relayACL{n})) // members only
		}
		opts = append(opts, libp2p.EnableRelayService(ropts...))
	}
	if relays := s.relayCandidates(); len(relays) > 0 {
		opts = append(opts, libp2p.EnableAutoRelayWithStaticRelays(relays, autorelay.WithNumRelays(2), autorelay.WithBootDelay(0)))
	}
	if s.HolePunching {
		opts = append(opts, libp2p.EnableHolePunching(n.holePunchOptions()...))
	}
	switch s.Reachability {
	case "public":
		opts = append(opts, libp2p.ForceReachabilityPublic())
	case "private":
		opts = append(opts, libp2p.ForceReachabilityPrivate())
	}
	return opts
}

// checkPorts binds and releases each fixed listen port before libp2p does:
// libp2p v0.51 leaves its swarm's goroutines running when a listen fails, so
// a busy port is better caught here, with a plain message. (A port taken in
// the moment between this check and libp2p's bind still fails, through
// listenError.)
func checkPorts(addrs []ma.Multiaddr) error {
	for _, a := range addrs {
		network, hostport, err := manet.DialArgs(a)
		if err != nil || strings.HasSuffix(hostport, ":0") {
			continue
		}
		pc, err := net.ListenPacket(network, hostport)
		if err != nil {
			return listenError([]string{a.String()}, err)
		}
		pc.Close()
	}
	return nil
}

// listenError turns libp2p's listen failure into one line that names the
// address.
func listenError(addrs []string, err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "address already in use"):
		return fmt.Errorf("%w: %s: address already in use (is another node running?)", ErrListen, strings.Join(addrs, ", "))
	case strings.Contains(msg, "cannot assign requested address"):
		return fmt.Errorf("%w: %s: no such local address", ErrListen, strings.Join(addrs, ", "))
	case strings.Contains(msg, "permission denied"):
		return fmt.Errorf("%w: %s: permission denied", ErrListen, strings.Join(addrs, ", "))
	}
	return fmt.Errorf("%w: %s: %v", ErrListen, strings.Join(addrs, ", "), err)
}

// Host returns the node's libp2p host, for the services wired on it.
func (n *Node) Host() host.Host { return n.host }

// RPC returns the node's RPC service: advertise, call.
func (n *Node) RPC() *rpc.RPC { return n.rpc }

// PubSub returns the node's publish/subscribe service.
func (n *Node) PubSub() *pubsub.PubSub { return n.pubsub }

// DHT returns the realm's DHT.
func (n *Node) DHT() *dht.DHT { return n.dht }

// Events returns the node's event bus.
func (n *Node) Events() *event.Bus { return n.events }

// ID returns the node's peer ID.
func (n *Node) ID() peer.ID { return n.host.ID() }

// DID returns the node's did:key.
func (n *Node) DID() string { return n.did }

// Alias returns the node's readable alias, did:macula:<realm>.<name>.
func (n *Node) Alias() string { return n.alias }

// Realm returns the node's realm.
func (n *Node) Realm() string { return n.cfg.Realm }

// Name returns the node's name.
func (n *Node) Name() string { return n.cfg.Name }

// StartedAt returns when the node finished starting.
func (n *Node) StartedAt() time.Time { return n.started }

// KeyCreated reports whether this start created the node's key.
func (n *Node) KeyCreated() bool { return n.keyCreated }

// PrivateKey returns the node's key, for services that sign.
func (n *Node) PrivateKey() ed25519.PrivateKey { return n.id.priv }

// Addrs returns the node's listen addresses, each ending in /p2p/<peer-id>.
func (n *Node) Addrs() []ma.Multiaddr {
	p2p, _ := ma.NewComponent("p2p", n.host.ID().String())
	var out []ma.Multiaddr
	for _, a := range n.host.Addrs() {
		out = append(out, a.Encapsulate(p2p.Multiaddr()))
	}
	return out
}

// Peers returns the connected peers of the realm, sorted by peer ID.
func (n *Node) Peers() []PeerInfo {
	n.mu.Lock()
	var out []PeerInfo
	for id, ps := range n.peers {
		if len(ps.verified) == 0 {
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
	return ok && len(ps.verified) > 0
}

func (n *Node) onConnected(c network.Conn) {
	n.startPunch(c)
	n.spawn(func() {
		h, err := n.handshake(n.ctx, c)
		if err != nil {
			if n.ctx.Err() != nil {
				return
			}
			n.handshakeFailed(c, err)
			return
		}
		n.onVerified(c, h)
	})
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
	refused := false
	if errors.Is(err, ErrNotMember) {
		n.gater.refuseNonMember(p, nonMemberRefuseFor)
		refused = true
	} else if errors.Is(err, ErrOtherRealm) {
		n.gater.refuse(p, n.cfg.RefuseFor)
		refused = true
	} else {
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
	if refused {
		n.events.Emit(event.Event{Kind: event.PeerRefused, Peer: p.String(), Addr: c.RemoteMultiaddr().String(), Reason: err.Error()})
	}
	if errors.Is(err, ErrNotMember) {
		// Let the peer read why first (our refusal frame on its handshake
		// stream); until then it has no verdict, so nothing serves it.
		time.AfterFunc(refusalGrace, func() { _ = c.Close() })
		return
	}
	_ = c.Close()
}

// notePeerName records the name a peer gave in its own hello.
func (n *Node) notePeerName(p peer.ID, h hello) {
	n.mu.Lock()
	defer n.mu.Unlock()
	ps := n.peers[p]
	if ps == nil {
		ps = &peerState{verified: map[network.Conn]bool{}}
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
		ps = &peerState{verified: map[network.Conn]bool{}}
		n.peers[p] = ps
	}
	first := len(ps.verified) == 0
	ps.verified[c] = true
	ps.name, ps.agent = h.Name, h.Agent
	if first {
		ps.since = time.Now()
		if ps.stopWatch == nil {
			var wctx context.Context
			wctx, ps.stopWatch = context.WithCancel(n.ctx)
			n.wg.Add(1)
			go n.watchPeer(wctx, p)
		}
	}
	n.mu.Unlock()
	if !first {
		return
	}
	n.log.Info("peer connected", "peer", p, "name", h.Name, "addr", c.RemoteMultiaddr())
	path := "direct"
	if isRelayed(c.RemoteMultiaddr()) {
		path = "relayed"
	}
	e := event.Event{Kind: event.ConnectionUp, Peer: p.String(), Name: h.Name,
		Addr: c.RemoteMultiaddr().String(), Direction: strings.ToLower(c.Stat().Direction.String()), Path: path,
		DID: peerdid.Of(p)}
	n.events.Emit(e)
	if n.sec.v != nil {
		n.sendRevocations(p, n.sec.v.Revocations())
	}
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

func (n *Node) onDisconnected(c network.Conn) {
	p := c.RemotePeer()
	n.mu.Lock()
	ps := n.peers[p]
	wasUp := false
	if ps != nil {
		wasUp = ps.verified[c]
		delete(ps.verified, c)
		if len(ps.verified) == 0 && ps.stopWatch != nil {
			ps.stopWatch()
			ps.stopWatch = nil
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
	down := wasUp && (ps == nil || len(ps.verified) == 0)
	if ch, ok := n.redial[p]; ok && n.host.Network().Connectedness(p) != network.Connected {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	closed := n.closed
	n.mu.Unlock()
	if down && !closed {
		n.log.Info("peer disconnected", "peer", p)
		n.events.Emit(event.Event{Kind: event.ConnectionDown, Peer: p.String(), Addr: c.RemoteMultiaddr().String()})
	}
}

// Connect dials a peer and waits for the realm handshake on the connection.
func (n *Node) Connect(ctx context.Context, ai peer.AddrInfo) error {
	if err := n.host.Connect(ctx, ai); err != nil {
		return err
	}
	for {
		if n.IsPeer(ai.ID) {
			return nil
		}
		if n.gater.isRefused(ai.ID) {
			if n.gater.refusedNonMember(ai.ID) {
				return fmt.Errorf("%w: %s presented no valid membership grant", ErrNotMember, ai.ID)
			}
			return fmt.Errorf("%w: %s refused the realm handshake", ErrOtherRealm, ai.ID)
		}
		if n.host.Network().Connectedness(ai.ID) != network.Connected {
			return fmt.Errorf("connection to %s closed during the realm handshake", ai.ID)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Close stops the node: its loops, the DHT and the host. It waits for every
// goroutine the node started, and is safe to call more than once.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	n.mu.Unlock()
	// Stop accepting work first: no new handshakes, then cancel the loops.
	n.host.RemoveStreamHandler(HandshakeProtocol(n.cfg.Realm))
	n.host.RemoveStreamHandler(RevocationProtocol(n.cfg.Realm))
	n.cancel()
	perr := n.pubsub.Close()
	rerr := n.rpc.Close() // before the DHT they announce through
	derr := n.dht.Close()
	nerr := n.closeNAT() // before the host: it holds a reference to the QUIC socket
	herr := n.host.Close()
	n.wg.Wait()
	n.events.Close()
	n.log.Info("node stopped")
	return errors.Join(perr, rerr, derr, nerr, herr)
}
