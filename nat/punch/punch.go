package punch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/macula-io/macula/nat"
	"github.com/macula-io/macula/realm"
)

// ErrConfig: a Config is not valid; the error names the field.
var ErrConfig = errors.New("invalid punch config")

// Protocol returns the protocol ID of the NAT-type exchange of a realm.
func Protocol(realmName string) protocol.ID {
	return protocol.ID("/macula/" + realmName + "/punch/2.0.0")
}

// BirthdayProtocol returns the protocol ID of birthday probing in a realm.
func BirthdayProtocol(realmName string) protocol.ID {
	return protocol.ID("/macula/" + realmName + "/birthday/2.0.0")
}

// Config configures a Service. Realm, Self and Verified are required.
type Config struct {
	// Realm names the protocols (/macula/<realm>/punch/2.0.0, .../birthday/2.0.0).
	Realm string
	// Self returns this node's latest NAT measurement (nat.Prober.Info).
	Self func() nat.Info
	// Verified blocks until peer p has passed the realm handshake and
	// reports true, or reports false when ctx ends first or p is gone. Only
	// verified peers may make this node send packets.
	Verified func(ctx context.Context, p peer.ID) bool
	// Sockets shares the host's QUIC socket for packets that are not QUIC
	// (go-libp2p's *quicreuse.ConnManager). Nil: this node cannot open its
	// filter for a peer nor send birthday probes; everything else works.
	Sockets nat.PacketConnSharer
	// Filter, if set, is the DCUtR address filter given to the host
	// (libp2p.EnableHolePunching(holepunch.WithAddrFilter(f))) before the
	// service existed; New attaches the service to it and Close detaches it.
	Filter *Filter
	// BirthdaySockets is how many sockets the symmetric side opens in one
	// birthday attempt. Default: 256; at most 1024.
	BirthdaySockets int
	// BirthdayProbes is how many probes the port-restricted side sends at
	// most in one attempt. Default: 1024; at most 1024.
	BirthdayProbes int
	// RetryAfter is how long a peer stays reached through relays only
	// before the service punches again (retry.go); the wait doubles after
	// each retry. Default: 4s.
	RetryAfter time.Duration
	// Logger receives the service's logs. Default: slog.Default().
	Logger *slog.Logger
}

// Service runs the NAT-aware punches of one host: it watches relayed
// connections that come in, asks the peer for its NAT type, dials it
// directly or runs birthday probing when the two NAT types allow it, and
// holds DCUtR back meanwhile (through Filter).
type Service struct {
	h      host.Host
	cfg    Config // validated; read-only after New
	log    *slog.Logger
	notify *network.NotifyBundle
	ctx    context.Context // lifetime; cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // handlers, punches, listener watchers

	// watchChecks counts the birthday listener watchers' checks, and
	// retries the retries started (tests wait on them).
	watchChecks atomic.Int64
	retries     atomic.Int64
	// retryRounds counts retryLoop's rounds (a test checks that it sleeps).
	retryRounds atomic.Int64

	// paths wakes retryLoop (never blocking): a relayed connection opened
	// or a connection closed, so a peer may be reached through relays only.
	paths chan struct{}

	// mu guards the fields below.
	mu     sync.Mutex
	closed bool
	tries  map[peer.ID]*try
	bday   bdayState
}

// New starts the service on h: it sets the two stream handlers and watches
// h's connections until Close.
func New(h host.Host, cfg Config) (*Service, error) {
	if h == nil {
		return nil, fmt.Errorf("%w: host is nil", ErrConfig)
	}
	if err := realm.ValidateRealm(cfg.Realm); err != nil {
		return nil, fmt.Errorf("%w: Realm: %w", ErrConfig, err)
	}
	if cfg.Self == nil {
		return nil, fmt.Errorf("%w: Self is nil", ErrConfig)
	}
	if cfg.Verified == nil {
		return nil, fmt.Errorf("%w: Verified is nil", ErrConfig)
	}
	switch {
	case cfg.BirthdaySockets == 0:
		cfg.BirthdaySockets = bdaySockets
	case cfg.BirthdaySockets < 0 || cfg.BirthdaySockets > bdaySocketsMax:
		return nil, fmt.Errorf("%w: BirthdaySockets %d outside 1..%d", ErrConfig, cfg.BirthdaySockets, bdaySocketsMax)
	}
	switch {
	case cfg.BirthdayProbes == 0:
		cfg.BirthdayProbes = bdayProbesMax
	case cfg.BirthdayProbes < 0 || cfg.BirthdayProbes > bdayProbesMax:
		return nil, fmt.Errorf("%w: BirthdayProbes %d outside 1..%d", ErrConfig, cfg.BirthdayProbes, bdayProbesMax)
	}
	switch {
	case cfg.RetryAfter == 0:
		cfg.RetryAfter = retryAfter
	case cfg.RetryAfter < 0:
		return nil, fmt.Errorf("%w: RetryAfter %v is negative", ErrConfig, cfg.RetryAfter)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Service{h: h, cfg: cfg, log: cfg.Logger, tries: make(map[peer.ID]*try)}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	h.SetStreamHandler(Protocol(cfg.Realm), s.handlePunch)
	h.SetStreamHandler(BirthdayProtocol(cfg.Realm), s.handleBirthday)
	s.paths = make(chan struct{}, 1)
	s.notify = &network.NotifyBundle{
		ConnectedF: func(_ network.Network, c network.Conn) {
			if isRelayed(c.RemoteMultiaddr()) {
				s.pathsChanged()
			}
			s.onConnected(c)
		},
		// A peer whose direct connection closed may be left with relayed ones.
		DisconnectedF: func(network.Network, network.Conn) { s.pathsChanged() },
	}
	h.Network().Notify(s.notify)
	if cfg.Filter != nil {
		cfg.Filter.svc.Store(s)
	}
	for _, c := range h.Network().Conns() {
		s.onConnected(c)
	}
	s.pathsChanged() // a first round for the connections there already
	s.wg.Add(1)
	go s.retryLoop()
	return s, nil
}

// Close stops the service: it removes its handlers, stops watching
// connections, ends the punches and probes that run, closes the birthday
// listeners, and waits for its goroutines. Safe to call more than once.
func (s *Service) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	// No new work first, then cancel what runs.
	s.h.RemoveStreamHandler(Protocol(s.cfg.Realm))
	s.h.RemoveStreamHandler(BirthdayProtocol(s.cfg.Realm))
	s.h.Network().StopNotify(s.notify)
	if s.cfg.Filter != nil {
		s.cfg.Filter.svc.CompareAndSwap(s, nil)
	}
	s.cancel()
	s.wg.Wait()
	return nil
}

// enter counts a goroutine that Close waits for; it calls s.wg.Done when it
// returns. Once the service is closing it reports false.
func (s *Service) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

// spawn runs f in a goroutine that Close waits for; false once closing.
func (s *Service) spawn(f func()) bool {
	if !s.enter() {
		return false
	}
	go func() {
		defer s.wg.Done()
		f()
	}()
	return true
}

// try is one running punch towards a peer; done is closed once ours is set.
type try struct {
	done chan struct{}
	ours bool // we dial; DCUtR must not punch towards this peer
}

func (t *try) decide(ours bool) {
	select {
	case <-t.done:
	default:
		t.ours = ours
		close(t.done)
	}
}

// Filter is DCUtR's address filter (holepunch.AddrFilter): it hides a
// peer's addresses from DCUtR while the service's own punch towards it is
// decided for. Without a service attached it passes everything through.
type Filter struct {
	svc atomic.Pointer[Service]
}

// NewFilter returns a filter to give to the host before the service exists.
func NewFilter() *Filter { return &Filter{} }

// FilterLocal passes this node's addresses through.
func (f *Filter) FilterLocal(_ peer.ID, addrs []ma.Multiaddr) []ma.Multiaddr { return addrs }

// FilterRemote waits (at most punchDecideWait) while a punch towards p is
// being decided, and gives DCUtR no addresses when this node dialed p
// itself.
func (f *Filter) FilterRemote(p peer.ID, addrs []ma.Multiaddr) []ma.Multiaddr {
	s := f.svc.Load()
	if s == nil {
		return addrs
	}
	s.mu.Lock()
	t := s.tries[p]
	s.mu.Unlock()
	if t == nil {
		return addrs
	}
	timer := time.NewTimer(punchDecideWait)
	defer timer.Stop()
	select {
	case <-t.done:
		if t.ours {
			s.log.Debug("punch: DCUtR left out; this node dials", "peer", p)
			return nil
		}
	case <-timer.C:
	case <-s.ctx.Done():
	}
	return addrs
}

// onConnected starts a punch for a relayed connection that came in, when
// this node is behind symmetric or port-restricted NAT (birthday probing).
func (s *Service) onConnected(c network.Conn) {
	if c.Stat().Direction != network.DirInbound || !isRelayed(c.RemoteMultiaddr()) {
		return
	}
	self := s.cfg.Self()
	if self.Type != nat.TypeSymmetric && self.Type != nat.TypePortRestricted {
		return
	}
	p := c.RemotePeer()
	s.mu.Lock()
	if s.closed || s.tries[p] != nil {
		s.mu.Unlock()
		return
	}
	t := &try{done: make(chan struct{})}
	s.tries[p] = t
	s.mu.Unlock()

	if !s.spawn(func() {
		defer s.endTry(p, t)
		s.runPunch(c, t, self)
	}) {
		s.endTry(p, t)
	}
}

func (s *Service) endTry(p peer.ID, t *try) {
	t.decide(false)
	s.mu.Lock()
	if s.tries[p] == t {
		delete(s.tries, p)
	}
	s.mu.Unlock()
}

// isRelayed reports whether an address goes through a circuit relay.
func isRelayed(a ma.Multiaddr) bool {
	_, err := a.ValueForProtocol(ma.P_CIRCUIT)
	return err == nil
}

// directConn reports whether the host has a direct connection to p.
func (s *Service) directConn(p peer.ID) bool {
	for _, c := range s.h.Network().ConnsToPeer(p) {
		if !isRelayed(c.RemoteMultiaddr()) {
			return true
		}
	}
	return false
}

// verified waits, at most punchVerifyWait, for p's realm handshake.
func (s *Service) verified(ctx context.Context, p peer.ID) bool {
	ctx, cancel := context.WithTimeout(ctx, punchVerifyWait)
	defer cancel()
	return s.cfg.Verified(ctx, p)
}
