package reach

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/host/eventbus"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/macula-io/macula/nat"
	"github.com/macula-io/macula/realm"
)

// ErrConfig: a Config is not valid; the error names the field.
var ErrConfig = errors.New("invalid reach config")

// Protocol returns the protocol ID of dial-back checks in a realm.
func Protocol(realmName string) protocol.ID {
	return protocol.ID("/macula/" + realmName + "/reach/1.0.0")
}

// TxID is a STUN transaction ID (96 bits).
type TxID = [12]byte

// Config configures a Service. Realm, Info and Verified are required.
type Config struct {
	// Realm names the protocol (/macula/<realm>/reach/1.0.0).
	Realm string
	// Policy is what the operator forces (flags); the zero value forces
	// nothing.
	Policy nat.Policy
	// Info returns the node's latest STUN measurement (nat.Prober.Info).
	Info func() nat.Info
	// Expect waits for a STUN Binding request with a transaction ID on the
	// node's QUIC socket (nat.Prober.ExpectRequest). Nil: this node runs no
	// dial-back checks of its own (it still answers its peers').
	Expect func(txid TxID) (<-chan struct{}, func())
	// Verified blocks until p has passed the realm handshake and reports
	// true, or false when ctx ends first or p is gone. Only verified peers
	// are asked, and answered.
	Verified func(ctx context.Context, p peer.ID) bool
	// RelayOptions are the relay service's options (resources, ACL) for
	// when the decision turns it on.
	RelayOptions []relayv2.Option
	// OnDecision, if set, is called with every new decision (and the first),
	// from the service's goroutine; it must not block for long.
	OnDecision func(nat.Decision)
	// CheckInterval is how often a dial-back check runs again while the
	// NAT measurement stays the same. Default: 10 minutes.
	CheckInterval time.Duration
	// Logger receives the service's logs. Default: slog.Default().
	Logger *slog.Logger

	// allowPrivate lets peers on non-public addresses check (tests on
	// loopback).
	allowPrivate bool
}

// Timing of checks.
const (
	// checkGap is the least time between two dial-back checks (a new NAT
	// measurement may start one earlier).
	checkGap = 30 * time.Second
	// verifyWait bounds the wait for a peer's realm handshake.
	verifyWait = 3 * time.Second
	// arriveWait is how long a requester waits for a peer's packets after
	// the peer said it sent them.
	arriveWait = 1500 * time.Millisecond
	// streamTimeout bounds a check on one stream.
	streamTimeout = 3 * time.Second
	// askPeers is how many peers one check asks.
	askPeers = 2
)

// Service decides a node's DHT mode, relay reservations and relay service
// from what it measures, applies the decision to the host, and answers its
// peers' dial-back checks.
type Service struct {
	h       host.Host
	cfg     Config // validated; read-only after New
	log     *slog.Logger
	emitter event.Emitter // EvtLocalReachabilityChanged on h's bus
	notify  *network.NotifyBundle
	limiter *limiter
	kick    chan struct{} // capacity 1: evaluate soon
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup // the loop and the stream handlers

	// Owned by the loop goroutine.
	checkKey  string // the NAT measurement the dial-back result is for
	dialBack  nat.DialBack
	checkedAt time.Time // last check that asked someone
	relay     *relayv2.Relay

	// mu guards the fields below.
	mu       sync.Mutex
	decision nat.Decision
	closed   bool
}

// New makes the first decision from what is known now (before any
// measurement: unknown, which acts as private), applies it, and starts the
// service. Build the host with libp2p.ForceReachabilityPrivate() (or
// Public, when forced) so that go-libp2p's AutoNAT does not emit verdicts of
// its own on the bus next to the service's.
func New(h host.Host, cfg Config) (*Service, error) {
	if h == nil {
		return nil, fmt.Errorf("%w: host is nil", ErrConfig)
	}
	if err := realm.ValidateRealm(cfg.Realm); err != nil {
		return nil, fmt.Errorf("%w: Realm: %w", ErrConfig, err)
	}
	if cfg.Info == nil {
		return nil, fmt.Errorf("%w: Info is nil", ErrConfig)
	}
	if cfg.Verified == nil {
		return nil, fmt.Errorf("%w: Verified is nil", ErrConfig)
	}
	switch cfg.Policy.Reachability {
	case "", nat.ReachabilityUnknown, nat.ReachabilityPublic, nat.ReachabilityPrivate:
	default:
		return nil, fmt.Errorf("%w: Policy.Reachability %q: want public, private or empty", ErrConfig, cfg.Policy.Reachability)
	}
	for name, f := range map[string]nat.Force{"DHTServer": cfg.Policy.DHTServer, "RelayService": cfg.Policy.RelayService} {
		switch f {
		case nat.ForceAuto, nat.ForceOn, nat.ForceOff:
		default:
			return nil, fmt.Errorf("%w: Policy.%s %q: want on, off or empty", ErrConfig, name, f)
		}
	}
	if cfg.CheckInterval <= 0 {
		cfg.CheckInterval = 10 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	em, err := h.EventBus().Emitter(new(event.EvtLocalReachabilityChanged), eventbus.Stateful)
	if err != nil {
		return nil, fmt.Errorf("reach: %w", err)
	}
	s := &Service{h: h, cfg: cfg, log: cfg.Logger, emitter: em, limiter: newLimiter(), kick: make(chan struct{}, 1)}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.apply(s.decide())
	h.SetStreamHandler(Protocol(cfg.Realm), s.handle)
	// A new connection may bring the first peer that can check.
	s.notify = &network.NotifyBundle{ConnectedF: func(network.Network, network.Conn) { s.Update() }}
	h.Network().Notify(s.notify)
	s.wg.Add(1)
	go s.loop()
	return s, nil
}

// Decision returns the decision in force.
func (s *Service) Decision() nat.Decision {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.decision
}

// Update asks the service to look at its evidence again soon: call it when
// the NAT measurement changes (nat.Config.OnUpdate). It never blocks.
func (s *Service) Update() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Close stops the service: its handler, its loop, the relay service if it
// runs, and its emitter (the last decision stays the bus's state). Safe to
// call more than once.
func (s *Service) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.h.RemoveStreamHandler(Protocol(s.cfg.Realm))
	s.h.Network().StopNotify(s.notify)
	s.cancel()
	s.wg.Wait()
	var err error
	if s.relay != nil {
		err = s.relay.Close()
		s.relay = nil
	}
	return errors.Join(err, s.emitter.Close())
}

// enter counts a stream handler that Close waits for; false once closing.
func (s *Service) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

func (s *Service) loop() {
	defer s.wg.Done()
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.kick:
		case <-t.C:
		}
		s.maybeCheck()
		if s.ctx.Err() != nil {
			return
		}
		s.apply(s.decide())
	}
}

// decide is the decision on the evidence at hand.
func (s *Service) decide() nat.Decision {
	e := nat.Evidence{NAT: s.cfg.Info(), PublicListen: s.publicListen()}
	if measurementKey(e.NAT) == s.checkKey {
		e.DialBack = s.dialBack
	}
	return nat.Decide(e, s.cfg.Policy)
}

// measurementKey names what a dial-back result holds for: the public
// address and the behaviours. A change of either makes the result void.
func measurementKey(i nat.Info) string {
	ap, _ := i.PublicAddr()
	return fmt.Sprintf("%s %s %s %s", ap, i.Type, i.Mapping, i.Filtering)
}

// publicListen reports whether the host listens on a public address of its
// own.
func (s *Service) publicListen() bool {
	addrs, err := s.h.Network().InterfaceListenAddresses()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if manet.IsPublicAddr(a) {
			return true
		}
	}
	return false
}

// maybeCheck runs a dial-back check when it can tell something the STUN
// measurement cannot and the last one is void or old.
func (s *Service) maybeCheck() {
	if s.cfg.Expect == nil || s.cfg.Policy.Reachability == nat.ReachabilityPublic || s.cfg.Policy.Reachability == nat.ReachabilityPrivate {
		return
	}
	info := s.cfg.Info()
	// Not before the first STUN probe has ended: a check is void when the
	// measurement changes, and one made before it may say "reached" where
	// STUN then finds an address filter that a check cannot see through.
	if info.MeasuredAt.IsZero() || !checkable(info) {
		return
	}
	key := measurementKey(info)
	if key != s.checkKey {
		s.checkKey, s.dialBack, s.checkedAt = key, nat.DialBackNone, time.Time{}
	}
	since := time.Since(s.checkedAt)
	if s.dialBack != nat.DialBackNone && since < s.cfg.CheckInterval || since < checkGap {
		return
	}
	res, asked := s.check(s.ctx, info)
	if asked == 0 {
		return // nobody to ask yet; a new connection kicks again
	}
	s.checkedAt = time.Now()
	if res == nat.DialBackNone {
		return
	}
	if res != s.dialBack {
		s.log.Info("dial-back check", "result", res, "asked", asked)
	}
	s.dialBack = res
}

// checkable: a dial-back check tells something only where the mapping is
// endpoint-independent (or unknown) and the filtering is not by address
// alone (a peer that the node talks to passes an address filter).
func checkable(i nat.Info) bool {
	switch i.Mapping {
	case nat.BehaviorAddressDependent, nat.BehaviorAddressAndPortDependent:
		return false
	}
	return i.Filtering != nat.BehaviorAddressDependent
}

// apply puts d into effect: the reachability event on the host's bus
// (autorelay, the address manager and kad-dht's auto mode follow it), the
// relay service, and OnDecision. Only the loop (and New) call it.
func (s *Service) apply(d nat.Decision) {
	s.mu.Lock()
	prev := s.decision
	first := prev.Reachability == ""
	s.decision = d
	s.mu.Unlock()
	if !first && prev == d {
		return
	}
	if first || prev.Public() != d.Public() || prev.Reservations != d.Reservations {
		r := network.ReachabilityPrivate // unknown acts as private
		if d.Public() {
			r = network.ReachabilityPublic
		}
		if err := s.emitter.Emit(event.EvtLocalReachabilityChanged{Reachability: r}); err != nil {
			s.log.Warn("reachability event", "err", err)
		}
	}
	switch {
	case d.RelayService && s.relay == nil:
		r, err := relayv2.New(s.h, s.cfg.RelayOptions...)
		if err != nil {
			s.log.Warn("relay service did not start", "err", err)
		} else {
			s.relay = r
		}
	case !d.RelayService && s.relay != nil:
		if err := s.relay.Close(); err != nil {
			s.log.Debug("relay service close", "err", err)
		}
		s.relay = nil
	}
	s.log.Info("reachability decided", "reachability", d.Reachability, "reason", d.Reason,
		"dht_server", d.DHTServer, "relay_reservations", d.Reservations, "relay_service", d.RelayService)
	if s.cfg.OnDecision != nil {
		s.cfg.OnDecision(d)
	}
}
