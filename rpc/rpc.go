package rpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	p2pevent "github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/host/eventbus"
	ma "github.com/multiformats/go-multiaddr"
	"go.opentelemetry.io/otel/trace"

	"github.com/macula-io/macula/access"
	"github.com/macula-io/macula/event"
	"github.com/macula-io/macula/peerdid"
	"github.com/macula-io/macula/realm"
	"github.com/macula-io/macula/tracing"
	"github.com/macula-io/macula/ucan"
)

// Router is what rpc needs of the realm's DHT; *dht.DHT is one.
type Router interface {
	// Provide makes this node a provider of key and announces it; it
	// returns nil once announced, an error while the announcement is
	// pending (the router keeps trying) or refused.
	Provide(ctx context.Context, key string) error
	// Announced reports whether key's announcement is done.
	Announced(key string) bool
	StopProviding(key string)
	Lookup(ctx context.Context, key string, limit int) ([]peer.AddrInfo, error)
}

// Policy chooses among a procedure's providers.
type Policy string

const (
	// RoundRobin takes the providers in turn.
	RoundRobin Policy = "round_robin"
	// Random takes any provider, uniformly.
	Random Policy = "random"
	// LeastInFlight takes the provider with the fewest calls in flight from
	// this node.
	LeastInFlight Policy = "least_in_flight"
)

// Config tunes the service. The zero value works except for Realm.
type Config struct {
	// Realm is the realm whose procedures this service calls and serves.
	Realm string
	// Policy is the default choice among providers. Default: RoundRobin.
	Policy Policy
	// MaxPayload bounds a request's or a reply's payload. Default: 1 MiB.
	MaxPayload int
	// MaxInFlightPerPeer bounds the calls waiting on one callee; more wait
	// for a slot. Default: 1024.
	MaxInFlightPerPeer int
	// MaxConcurrentPerPeer bounds the handlers running for one caller
	// (across all of its streams); more are answered "overloaded". Default:
	// 1024.
	MaxConcurrentPerPeer int
	// MaxServingBytesPerPeer bounds the request payload bytes held by the
	// handlers running for one caller; a call past it is answered
	// "overloaded". Default: 64 MiB (at least MaxPayload).
	MaxServingBytesPerPeer int
	// MaxServingBytes bounds the request payload bytes held by the handlers
	// running for all remote callers; a call past it is answered
	// "overloaded". Default: 256 MiB (at least MaxServingBytesPerPeer).
	MaxServingBytes int
	// DefaultTimeout applies to calls whose context has no deadline and
	// that give no WithTimeout. Default: 30s.
	DefaultTimeout time.Duration
	// ProviderTTL is how long a looked-up provider list is used before it is
	// refreshed (in the background). Default: 10s.
	ProviderTTL time.Duration
	// AvoidFor is how long a provider that could not be reached, or that
	// disconnected, is left out of the choice. Default: 10s.
	AvoidFor time.Duration
	// DialTimeout bounds reaching one provider. Default: 5s.
	DialTimeout time.Duration
	// Unanswered, if set, is told when calls to a peer have waited
	// ProbeAfter while nothing at all came from it on their stream, and
	// again every ProbeAfter while that lasts. It is no verdict (a handler
	// may take long): the node pings the peer at once, so that one that
	// died is found out sooner than by its idle pings. It must not block.
	Unanswered func(peer.ID)
	// ProbeAfter: see Unanswered. Default: 1s.
	ProbeAfter time.Duration
	// Depends, if set, is told of the callee of every call this node
	// sends, as it sends it: the node then watches the callee's liveness
	// (a callee that dies fails its calls within seconds, not at their
	// deadline). Traffic on the stream is no such sign: the advertisements
	// every node sends on its link to a peer travel there too. It is
	// called on every call and must return at once.
	Depends func(peer.ID)
	// Logger gets the service's logs. Default: slog.Default().
	Logger *slog.Logger
	// TracerProvider makes a span for every call made (client) and served
	// (server), parented by the caller's trace context; nil: no spans (a
	// trace context in a call's ctx is still passed on). See package
	// tracing.
	TracerProvider trace.TracerProvider
	// Access decides who may call and advertise (a secure realm's UCAN
	// verdicts); nil is an open realm: everything is allowed. It is asked
	// on every call, so a verdict the node replaces or drops takes effect
	// at the next call. See "Authorization" in the package doc.
	Access access.Policy
}

func (c *Config) setDefaults() error {
	if err := realm.ValidateRealm(c.Realm); err != nil {
		return fmt.Errorf("rpc: Config.Realm: %w", err)
	}
	switch c.Policy {
	case "":
		c.Policy = RoundRobin
	case RoundRobin, Random, LeastInFlight:
	default:
		return fmt.Errorf("rpc: Config.Policy %q: want round_robin, random or least_in_flight", c.Policy)
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defd := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.MaxPayload, 1<<20)
	def(&c.MaxInFlightPerPeer, 1024)
	def(&c.MaxConcurrentPerPeer, 1024)
	def(&c.MaxServingBytesPerPeer, 64<<20)
	c.MaxServingBytesPerPeer = max(c.MaxServingBytesPerPeer, c.MaxPayload)
	def(&c.MaxServingBytes, 256<<20)
	c.MaxServingBytes = max(c.MaxServingBytes, c.MaxServingBytesPerPeer)
	defd(&c.DefaultTimeout, 30*time.Second)
	defd(&c.ProviderTTL, 10*time.Second)
	defd(&c.AvoidFor, 10*time.Second)
	defd(&c.DialTimeout, 5*time.Second)
	defd(&c.ProbeAfter, time.Second)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Caller identifies who made a call.
type Caller struct {
	// DID is the caller node's did:key; PeerID its peer ID.
	DID    string
	PeerID peer.ID
}

// Request is a call as its handler sees it.
type Request struct {
	Procedure string
	Payload   []byte
	Codec     Codec
	Caller    Caller
	// Verdict is what the caller was granted, already checked for
	// ucan.Call on Procedure: Verdict.Grant() gives its DID and
	// capabilities, and ucan.Check(Verdict, cmd, resource) checks one more
	// right (say, a field of the payload) at the time of the call. In an
	// open realm it is ucan.OpenVerdict(Caller.DID), which allows
	// everything; for a local call it is this node's own verdict. Never nil.
	// Handlers must not keep it past the call to decide later calls: the
	// node replaces it when the peer presents new chains.
	Verdict *ucan.Verdict
}

// Handler serves a procedure. Its context ends when the caller cancels,
// its deadline passes, or the connection is lost. A *RemoteError it returns
// reaches the caller as it is; any other error as code "internal" with the
// error's text.
type Handler func(ctx context.Context, req *Request) ([]byte, error)

// Protocol returns the rpc protocol ID of a realm.
func Protocol(realmName string) protocol.ID {
	return protocol.ID("/macula/" + realmName + "/rpc/1.0.0")
}

// ProtocolTrace returns the rpc protocol ID of a realm whose streams may
// carry request frames of version 2 (with a trace context). A node serves
// both and opens streams with this one first.
func ProtocolTrace(realmName string) protocol.ID {
	return protocol.ID("/macula/" + realmName + "/rpc/1.1.0")
}

// RPC calls and serves the procedures of one realm on one host.
type RPC struct {
	cfg     Config // read-only after New
	h       host.Host
	router  Router
	bus     *event.Bus
	log     *slog.Logger
	proto   protocol.ID
	self    Caller
	selfStr string // self.PeerID.String()
	stats   stats
	// openRealm: cfg.Access lets everyone do everything; no check is made.
	openRealm bool
	// openSelf is the verdict of local calls in an open realm.
	openSelf *ucan.Verdict
	// protoTrace is ProtocolTrace(realm); tracer makes spans (nil: none).
	// Both set in New, read-only after.
	protoTrace protocol.ID
	tracer     trace.Tracer

	// handlers is the current handler map, replaced (copy on write) under
	// mu: calls read it without a lock.
	handlers atomic.Pointer[map[string]Handler]
	// validNames caches procedure names that passed validation (bounded).
	validNames sync.Map // string -> struct{}
	nValid     atomic.Int64

	ctx    context.Context // lifetime
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// adsWake wakes adsLoop (ads.go).
	adsWake chan struct{}
	// drain counts the handlers running for remote callers, for Drain.
	drain drainer
	// load bounds what those handlers hold (calls and payload bytes).
	load *budget

	// mu guards the fields below it.
	mu sync.Mutex
	// adsGen bumps whenever this node's procedure list changes.
	adsGen uint64
	// peerAds is what each linked peer advertises; linked is, by
	// procedure, the peers that advertise it there (sorted).
	peerAds   map[peer.ID]*peerAds
	linked    map[string][]peer.ID
	conns     map[peer.ID]*clientConn   // one outgoing stream per callee
	draining  map[*clientConn]struct{}  // replaced streams finishing their calls
	dialing   map[peer.ID]chan struct{} // closed when a dial ends
	serving   map[*serverConn]struct{}
	providers map[string]*providerSet
	lookups   map[string]chan struct{} // DHT lookups in progress, by procedure
	avoid     map[peer.ID]time.Time
	gone      map[peer.ID]time.Time // peers declared gone (PeerGone), until when
	closed    bool
}

// New starts the service on h: it serves the realm's rpc protocol at once.
func New(h host.Host, r Router, bus *event.Bus, cfg Config) (*RPC, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if bus == nil {
		bus = event.NewBus()
	}
	x := &RPC{
		cfg: cfg, h: h, router: r, bus: bus, log: cfg.Logger, proto: Protocol(cfg.Realm), protoTrace: ProtocolTrace(cfg.Realm),
		tracer:    tracing.Tracer(cfg.TracerProvider),
		conns:     make(map[peer.ID]*clientConn),
		draining:  make(map[*clientConn]struct{}),
		dialing:   make(map[peer.ID]chan struct{}),
		serving:   make(map[*serverConn]struct{}),
		load:      newBudget(cfg),
		providers: make(map[string]*providerSet),
		lookups:   make(map[string]chan struct{}),
		avoid:     make(map[peer.ID]time.Time),
		gone:      make(map[peer.ID]time.Time),
		peerAds:   make(map[peer.ID]*peerAds),
		linked:    make(map[string][]peer.ID),
		adsWake:   make(chan struct{}, 1),
	}
	x.self = Caller{PeerID: h.ID(), DID: peerdid.Of(h.ID())}
	x.selfStr = h.ID().String()
	x.openRealm = access.IsOpen(cfg.Access)
	if x.openRealm {
		x.openSelf = ucan.OpenVerdict(x.self.DID)
	}
	x.handlers.Store(&map[string]Handler{})
	sub, err := h.EventBus().Subscribe([]any{new(p2pevent.EvtPeerIdentificationCompleted), new(p2pevent.EvtPeerProtocolsUpdated)},
		eventbus.Name("macula-rpc"), eventbus.BufSize(256))
	if err != nil {
		return nil, fmt.Errorf("rpc: host events: %w", err)
	}
	x.ctx, x.cancel = context.WithCancel(context.Background())
	h.SetStreamHandler(x.proto, x.handleStream)
	h.SetStreamHandler(x.protoTrace, x.handleStream)
	h.Network().Notify(x.notifiee())
	x.wg.Add(2)
	go x.adsLoop()
	go x.watchPeers(sub)
	return x, nil
}

func (x *RPC) notifiee() *network.NotifyBundle {
	return &network.NotifyBundle{
		ConnectedF: func(_ network.Network, c network.Conn) {
			x.mu.Lock()
			p := c.RemotePeer()
			delete(x.avoid, p)
			delete(x.gone, p) // back
			// A direct connection next to the relayed one our stream uses
			// (hole punching worked): new calls go on a new stream, which
			// the host opens on the direct connection; the old one closes
			// when its calls are done.
			var old *clientConn
			if cc := x.conns[p]; cc != nil && !c.Stat().Limited && cc.w.s.Conn().Stat().Limited {
				old = cc
				delete(x.conns, p)
				x.draining[cc] = struct{}{}
			}
			x.mu.Unlock()
			if old != nil {
				old.drain()
			}
		},
		DisconnectedF: func(n network.Network, c network.Conn) {
			p := c.RemotePeer()
			if n.Connectedness(p) == network.Connected {
				return
			}
			// A provider that went away leaves the choice now, not when its
			// DHT record expires; a reconnect brings it back.
			x.mu.Lock()
			if _, ok := x.knownProviderLocked(p); ok {
				x.avoid[p] = time.Now().Add(x.cfg.AvoidFor)
			}
			x.mu.Unlock()
		},
	}
}

// providerKey is the DHT key under which a procedure's providers are found.
func providerKey(procedure string) string { return "rpc:" + procedure }

// Advertise serves procedure with h here, tells the connected peers at once
// (on their links), and announces it in the realm's DHT for the others. It
// waits for the DHT announcement until ctx ends, but the procedure is
// advertised either way: an announcement that is not done (no peer yet, a
// failure, or ctx ended first) goes on in the background and is retried
// until it is, and Announced says which it is. The procedure must be a
// valid name inside the realm. In a secure realm the node's own verdict must
// grant ucan.Advertise on it; otherwise Advertise returns an error wrapping
// ErrUnauthorized and advertises nothing.
func (x *RPC) Advertise(ctx context.Context, procedure string, h Handler) error {
	if err := realm.ValidateProcedure(x.cfg.Realm, procedure); err != nil {
		return err
	}
	if len(procedure) > 255 {
		return fmt.Errorf("%w: procedure %q is %d bytes, the limit is 255", realm.ErrInvalid, procedure, len(procedure))
	}
	if h == nil {
		return errors.New("rpc: Advertise: nil handler")
	}
	if !x.openRealm {
		if err := ucan.Check(x.cfg.Access.Self(), ucan.Advertise, procedure); err != nil {
			return fmt.Errorf("%w: advertising %s: %w", ErrUnauthorized, procedure, err)
		}
	}
	x.mu.Lock()
	if x.closed {
		x.mu.Unlock()
		return ErrClosed
	}
	old := *x.handlers.Load()
	if _, ok := old[procedure]; ok {
		x.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrAlreadyAdvertised, procedure)
	}
	m := maps.Clone(old)
	m[procedure] = h
	x.handlers.Store(&m)
	x.adsGen++
	x.mu.Unlock()
	x.wakeAds()
	if x.router == nil {
		return nil
	}
	if err := x.router.Provide(ctx, providerKey(procedure)); err != nil {
		// The handler stays and the linked peers know it; the router
		// keeps announcing it.
		x.log.Info("procedure advertised; its DHT announcement is pending and retried", "procedure", procedure, "err", err)
	}
	return nil
}

// Announced reports whether procedure is advertised here and its DHT
// announcement is done (connected peers know it from their links before).
func (x *RPC) Announced(procedure string) bool {
	if x.handler(procedure) == nil {
		return false
	}
	return x.router == nil || x.router.Announced(providerKey(procedure))
}

// Unadvertise stops serving procedure. Calls that arrive later are answered
// "not advertised", and their callers move to other providers; linked
// peers learn it at once.
func (x *RPC) Unadvertise(procedure string) error {
	x.mu.Lock()
	old := *x.handlers.Load()
	_, ok := old[procedure]
	ok = ok && !internal(procedure)
	if ok {
		m := maps.Clone(old)
		delete(m, procedure)
		x.handlers.Store(&m)
		x.adsGen++
	}
	x.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %s is not advertised here", ErrNotFound, procedure)
	}
	x.wakeAds()
	if x.router != nil {
		x.router.StopProviding(providerKey(procedure))
	}
	return nil
}

// Advertised returns the procedures served here.
func (x *RPC) Advertised() []string {
	hs := *x.handlers.Load()
	out := make([]string, 0, len(hs))
	for p := range hs {
		if !internal(p) {
			out = append(out, p)
		}
	}
	return out
}

func (x *RPC) handler(procedure string) Handler {
	return (*x.handlers.Load())[procedure]
}

// validateProcedure checks a procedure name, remembering the good ones: the
// check walks the name several times and a caller calls the same few names.
func (x *RPC) validateProcedure(procedure string) error {
	if _, ok := x.validNames.Load(procedure); ok {
		return nil
	}
	if err := realm.ValidateProcedure(x.cfg.Realm, procedure); err != nil {
		return err
	}
	if len(procedure) > 255 {
		return fmt.Errorf("%w: procedure %q is %d bytes, the limit is 255", realm.ErrInvalid, procedure, len(procedure))
	}
	if x.nValid.Add(1) <= 4096 {
		x.validNames.Store(procedure, struct{}{})
	}
	return nil
}

// Close stops serving and calling: calls in flight fail with ErrClosed or
// ErrDisconnected. It waits for every goroutine of the service.
func (x *RPC) Close() error {
	x.mu.Lock()
	if x.closed {
		x.mu.Unlock()
		return nil
	}
	x.closed = true
	conns := make([]*clientConn, 0, len(x.conns)+len(x.draining))
	for _, c := range x.conns {
		conns = append(conns, c)
	}
	for c := range x.draining {
		conns = append(conns, c)
	}
	srv := make([]*serverConn, 0, len(x.serving))
	for s := range x.serving {
		srv = append(srv, s)
	}
	x.mu.Unlock()
	x.h.RemoveStreamHandler(x.proto)
	x.h.RemoveStreamHandler(x.protoTrace)
	x.cancel()
	for _, c := range conns {
		c.fail(ErrClosed)
	}
	for _, s := range srv {
		s.w.finish(true)
	}
	x.wg.Wait()
	return nil
}

func addrStrings(as []ma.Multiaddr) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}

// Drain waits until no handler runs for a remote caller, or until ctx
// ends. It does not refuse new calls: a node that leaves tells its peers
// first (they stop calling it), then drains, then closes.
func (x *RPC) Drain(ctx context.Context) error { return x.drain.wait(ctx) }

// drainer counts running handlers and wakes Drain's waiters when none is
// left.
type drainer struct {
	// mu guards the fields below.
	mu      sync.Mutex
	running int
	idle    []chan struct{} // closed when running reaches zero
}

func (d *drainer) enter() {
	d.mu.Lock()
	d.running++
	d.mu.Unlock()
}

func (d *drainer) exit() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.running--; d.running == 0 {
		for _, ch := range d.idle {
			close(ch)
		}
		d.idle = nil
	}
}

func (d *drainer) wait(ctx context.Context) error {
	d.mu.Lock()
	if d.running == 0 {
		d.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	d.idle = append(d.idle, ch)
	d.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// MaxPayload returns the payload limit of calls and replies, in bytes.
func (x *RPC) MaxPayload() int { return x.cfg.MaxPayload }
