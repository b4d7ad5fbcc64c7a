package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/macula-io/macula/access"
	"github.com/macula-io/macula/event"
	"github.com/macula-io/macula/member"
	"github.com/macula-io/macula/ring"
	"github.com/macula-io/macula/rpc"
	"github.com/macula-io/macula/ucan"
)

// Members is what the system needs of the realm's membership: who is live
// and which capabilities each serves. *member.Members (Node.Members) is one.
type Members interface {
	// Self is this node's own record.
	Self() member.Member
	// List returns every live member of the realm, this node included.
	List() []member.Member
	// Watch returns the changes of the membership until ctx ends; the
	// system recomputes its view after each.
	Watch(ctx context.Context) <-chan member.Change
}

// Transport is what the system needs of rpc to reach other nodes; *rpc.RPC
// is one.
type Transport interface {
	Handle(name string, h rpc.Handler) error
	Unhandle(name string)
	CallPeer(ctx context.Context, p peer.ID, name string, payload []byte, opts ...rpc.CallOption) ([]byte, error)
	MaxPayload() int
}

// System runs the actors of one node and routes messages to the actors of
// every node of the realm. It is safe for concurrent use.
type System struct {
	cfg     Config // read-only after New
	log     *slog.Logger
	bus     *event.Bus
	self    peer.ID
	members Members   // nil: this node alone
	tr      Transport // nil: no other nodes
	open    bool      // no authorization (an open realm)

	local local
	route router
	alog  activationLog

	ctx    context.Context // lifetime
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// clock is a coarse time (unix ns) for the idle times of actors, set
	// by the sweeper every clockTick: reading the time on every message
	// costs more than the message.
	clock atomic.Int64
	// firstKind wakes the sweeper when the first kind is registered (cap
	// 1): a node with no kind has no actor, and its sweeper sleeps.
	firstKind chan struct{}
	// names caches the capability and kind names that passed validation
	// (bounded by maxNames).
	names  sync.Map // string -> struct{}
	nNames atomic.Int64
	// interned holds one copy of each capability and kind name seen on the
	// wire (copy on write under internMu, at most maxNames), so that
	// decoding a message does not allocate them again.
	interned atomic.Pointer[map[string]string]
	internMu sync.Mutex
	// callOpts is {rpc.WithTimeout(CallTimeout)}, made once.
	callOpts []rpc.CallOption
	// closing: Close has begun; no new messages are accepted.
	closing atomic.Bool
	// closeMu serializes Close.
	closeMu sync.Mutex
	closed  bool
}

// New starts a system. members and tr may both be nil: then the node is
// alone and serves every capability it has a kind for. With a transport it
// serves the actors protocol at once, and waits (Config.Settle) for its
// membership view before it serves messages. bus may be nil.
func New(cfg Config, members Members, tr Transport, bus *event.Bus) (*System, error) {
	if (members == nil) != (tr == nil) {
		return nil, errors.New("actors: New: members and transport go together (both or neither)")
	}
	cfg, err := cfg.withDefaults(tr != nil)
	if err != nil {
		return nil, err
	}
	if bus == nil {
		bus = event.NewBus()
	}
	s := &System{cfg: cfg, log: cfg.Logger, bus: bus, members: members, tr: tr, open: access.IsOpen(cfg.Access), firstKind: make(chan struct{}, 1)}
	if members != nil {
		s.self = members.Self().ID
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.clock.Store(nowNano())
	s.interned.Store(&map[string]string{})
	s.callOpts = []rpc.CallOption{rpc.WithTimeout(cfg.CallTimeout)}
	s.local.init(s)
	s.alog.init(cfg.LogSize)
	s.route.init(s)
	if tr != nil {
		if err := tr.Handle(procMessage, s.handleMessage); err != nil {
			s.cancel()
			return nil, err
		}
		if err := tr.Handle(procHandoff, s.handleHandoff); err != nil {
			tr.Unhandle(procMessage)
			s.cancel()
			return nil, err
		}
		if err := tr.Handle(procQuery, s.handleQuery); err != nil {
			tr.Unhandle(procMessage)
			tr.Unhandle(procHandoff)
			s.cancel()
			return nil, err
		}
	}
	s.route.start()
	s.wg.Add(1)
	go s.sweep()
	return s, nil
}

// Register serves the actor kind of capability on this node: f makes its
// actors. A node owns shards of a capability only if its membership says it
// serves the capability (macula-node run --capabilities); a message to a
// kind that its owner has not registered fails with ErrUnknownKind.
// Register the kinds right after New: actors handed over by other nodes
// are taken once the system has settled (Config.Settle), and those of a
// kind not registered by then are dropped.
func (s *System) Register(capability, kind string, f Factory) error {
	if err := ValidateName("capability", capability); err != nil {
		return err
	}
	if err := ValidateName("kind", kind); err != nil {
		return err
	}
	if f == nil {
		return fmt.Errorf("%w: Register %s.%s: nil factory", ErrInvalid, capability, kind)
	}
	if s.closing.Load() {
		return ErrClosed
	}
	if err := s.local.register(capability, kind, f); err != nil {
		return err
	}
	if s.members == nil {
		s.route.kick() // alone: the capability is served now
	}
	return nil
}

// RegisterAll serves the actor kind on every capability this node serves
// (now or later); a kind registered for one capability with Register takes
// precedence there. With no membership (alone), it serves no capability by
// itself: Register one kind of it first.
func (s *System) RegisterAll(kind string, f Factory) error {
	if err := ValidateName("kind", kind); err != nil {
		return err
	}
	if f == nil {
		return fmt.Errorf("%w: RegisterAll %s: nil factory", ErrInvalid, kind)
	}
	if s.closing.Load() {
		return ErrClosed
	}
	return s.local.registerAll(kind, f)
}

// Call sends req to its actor and waits for the reply. The actor starts on
// its owner with req.InitArg if it is not running. The Ref names the
// incarnation that answered.
func (s *System) Call(ctx context.Context, req Request) (Ref, []byte, error) {
	return s.send(ctx, req, false)
}

// Cast sends req to its actor and returns once the owner has accepted it
// into the actor's mailbox. Nobody waits for it to be handled; a panic or an
// error while handling it is logged on the owner.
func (s *System) Cast(ctx context.Context, req Request) error {
	_, _, err := s.send(ctx, req, true)
	return err
}

func (s *System) send(ctx context.Context, req Request, cast bool) (Ref, []byte, error) {
	ref := Ref{Capability: req.Capability, Kind: req.Kind, ID: req.ID}
	if err := s.validate(&req); err != nil {
		return ref, nil, err
	}
	if s.closing.Load() {
		return ref, nil, ErrClosed
	}
	if !s.open {
		if err := ucan.Check(s.cfg.Access.Self(), ucan.Actor, ActorResource(s.cfg.Realm, req.Capability, req.Kind)); err != nil {
			return ref, nil, fmt.Errorf("%w: calling %s.%s: %w", ErrUnauthorized, req.Capability, req.Kind, err)
		}
	}
	cc := callCtx{ctx: ctx, timeout: s.cfg.CallTimeout}
	if dl, ok := ctx.Deadline(); ok {
		cc.dl, cc.bctx = dl, ctx
	} else {
		// A deadline, and a context with a timer, only if the message has
		// to wait or travel: a call to an idle actor here runs in this
		// goroutine at once.
		defer cc.release()
	}
	if cast {
		// The payload outlives Cast in a mailbox.
		req.Payload = slices.Clone(req.Payload)
		req.InitArg = slices.Clone(req.InitArg)
	}
	return s.route.send(&cc, &req, cast)
}

// callCtx is a message's context and its deadline: the context's, or
// timeout from the first time the deadline is needed.
type callCtx struct {
	ctx     context.Context
	timeout time.Duration
	// fromPeer: ctx is an rpc handler's, which ends when the remote
	// caller gives up (its cancel, or the deadline); a message whose
	// caller has given up is not admitted, so that it cannot run after
	// that caller's next message.
	fromPeer bool
	dl       time.Time       // zero until needed
	bctx     context.Context // ctx bounded by dl, made on first use
	cancel   context.CancelFunc
}

// deadline returns the message's deadline.
func (c *callCtx) deadline() time.Time {
	if c.dl.IsZero() {
		c.dl = time.Now().Add(c.timeout)
	}
	return c.dl
}

// bounded returns the context bounded by the deadline.
func (c *callCtx) bounded() context.Context {
	if c.bctx == nil {
		c.bctx, c.cancel = context.WithDeadline(c.ctx, c.deadline())
	}
	return c.bctx
}

func (c *callCtx) release() {
	if c.cancel != nil {
		c.cancel()
	}
}

// maxNames bounds System.names.
const maxNames = 4096

// validName is ValidateName, remembering good names: a node sees few
// capabilities and kinds, and checking a name costs more than a message.
func (s *System) validName(what, name string) error {
	if _, ok := s.names.Load(name); ok {
		return nil
	}
	if err := ValidateName(what, name); err != nil {
		return err
	}
	if s.nNames.Add(1) <= maxNames {
		s.names.Store(name, struct{}{})
	}
	return nil
}

// intern returns the copy of name that s keeps, keeping one if there is
// room, or a copy of its own. name may be a view of a message's bytes
// (unsafeString): what intern returns never is.
func (s *System) intern(name string) string {
	if v, ok := (*s.interned.Load())[name]; ok {
		return v
	}
	c := strings.Clone(name)
	s.internMu.Lock()
	defer s.internMu.Unlock()
	old := *s.interned.Load()
	if v, ok := old[c]; ok {
		return v
	}
	if len(old) >= maxNames {
		return c
	}
	m := make(map[string]string, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[c] = c
	s.interned.Store(&m)
	return c
}

// validate checks the names and sizes of a request.
func (s *System) validate(req *Request) error {
	if err := s.validName("capability", req.Capability); err != nil {
		return err
	}
	if err := s.validName("kind", req.Kind); err != nil {
		return err
	}
	if req.ID == "" || len(req.ID) > MaxIDLen || !utf8.ValidString(req.ID) {
		return fmt.Errorf("%w: actor id: want 1 to %d bytes of UTF-8, got %d bytes", ErrInvalid, MaxIDLen, len(req.ID))
	}
	if s.tr != nil {
		if n := len(req.Payload) + len(req.InitArg) + len(req.ID) + msgOverhead; n > s.tr.MaxPayload() {
			return fmt.Errorf("%w: payload and init argument of %d bytes, the limit is %d", ErrTooLarge, n-msgOverhead, s.tr.MaxPayload()-msgOverhead)
		}
	}
	return nil
}

// ActorResource is the resource that ucan.Actor is checked on for actors of
// a kind: "<realm>.<capability>.<kind>", so that "<realm>.game.*" grants
// calling every kind of the capability game.
func ActorResource(realmName, capability, kind string) string {
	return realmName + "." + capability + "." + kind
}

// ActorInfo describes an actor of this node.
type ActorInfo struct {
	Ref
	// Shard is the actor's shard; Mailbox the messages waiting for it;
	// Idle how long since its last message.
	Shard   int           `json:"shard"`
	Mailbox int           `json:"mailbox"`
	Idle    time.Duration `json:"idle_ns"`
}

// Actors returns the active actors of this node, up to limit (<= 0: all),
// sorted by capability, kind and id.
func (s *System) Actors(limit int) []ActorInfo {
	var out []ActorInfo
	now := s.clock.Load()
	for _, kt := range *s.local.kinds.Load() {
		for shard := range kt.shards {
			st := &kt.shards[shard]
			st.mu.Lock()
			for _, a := range st.m {
				inc := a.pub.Load()
				if inc == 0 {
					continue
				}
				a.mu.Lock()
				n, last := a.box.len(), a.last
				a.mu.Unlock()
				out = append(out, ActorInfo{
					Ref:   Ref{Node: s.self, Capability: kt.key.capability, Kind: kt.key.kind, ID: a.id, Incarnation: inc},
					Shard: shard, Mailbox: n, Idle: time.Duration(now - last),
				})
			}
			st.mu.Unlock()
		}
	}
	slices.SortFunc(out, func(a, b ActorInfo) int {
		if c := compareStrings(a.Capability, b.Capability); c != 0 {
			return c
		}
		if c := compareStrings(a.Kind, b.Kind); c != 0 {
			return c
		}
		return compareStrings(a.ID, b.ID)
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Stats counts what the system holds and did.
type Stats struct {
	// Active is the number of started actors here; Queued the messages in
	// their mailboxes.
	Active int64 `json:"active"`
	Queued int64 `json:"queued"`
	// Kinds is the number of registered kinds.
	Kinds int `json:"kinds"`
	// MovedOut and MovedIn count actors handed to and taken from other
	// nodes; HandoffTimeouts the shards that started without the previous
	// owner's handoff; Conflicts the handed-over actors dropped because
	// the id was already active here.
	MovedOut        uint64 `json:"moved_out"`
	MovedIn         uint64 `json:"moved_in"`
	HandoffTimeouts uint64 `json:"handoff_timeouts"`
	Conflicts       uint64 `json:"conflicts"`
	// Redirects counts messages this node sent on to another owner.
	Redirects uint64 `json:"redirects"`
}

// Stats returns the system's counters.
func (s *System) Stats() Stats {
	return Stats{
		Active: s.local.active.Load(), Queued: s.local.queued.Load(), Kinds: len(*s.local.kinds.Load()),
		MovedOut: s.route.movedOut.Load(), MovedIn: s.route.movedIn.Load(),
		HandoffTimeouts: s.route.handoffTimeouts.Load(), Conflicts: s.route.conflicts.Load(),
		Redirects: s.route.redirects.Load(),
	}
}

// Self returns this node's peer ID ("" when alone without membership).
func (s *System) Self() peer.ID { return s.self }

// Close leaves cleanly: it hands the actors of this node to the nodes that
// own their shards without it (a Snapshotter keeps its state), stops the
// rest (Stop with reason Closed), and waits for every goroutine. Messages
// that arrive meanwhile are sent on to the new owners or fail with
// ErrClosed. The node should leave the membership after Close.
func (s *System) Close() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.route.leave()
	s.closing.Store(true)
	s.route.stop()
	s.local.stopAll()
	if s.tr != nil {
		s.tr.Unhandle(procMessage)
		s.tr.Unhandle(procHandoff)
		s.tr.Unhandle(procQuery)
	}
	s.cancel()
	s.wg.Wait()
	return nil
}

// clockTick bounds how stale System.clock gets (and so the idle times that
// Actors reports), unless IdleTimeout asks for a finer one. A second, not
// less: an idle node's sweeper was its most frequent timer at 100 ms (ten
// wake-ups a second with no actor at all).
const clockTick = time.Second

// sweep keeps the coarse clock and passivates idle actors, every quarter of
// IdleTimeout (so an actor idles between IdleTimeout and 1.25 IdleTimeout,
// plus a tick, before it is passivated).
func (s *System) sweep() {
	defer s.wg.Done()
	// A node with no actor kind (most nodes of a realm serve none) has no
	// actor to passivate and no clock to keep: no wake-up at all until a
	// kind is registered (issue 17: every periodic wake-up of an idle node
	// costs; kinds are never unregistered).
	for len(*s.local.kinds.Load()) == 0 {
		select {
		case <-s.ctx.Done():
			return
		case <-s.firstKind:
		}
	}
	tick := clockTick
	if s.cfg.IdleTimeout > 0 {
		tick = min(tick, max(s.cfg.IdleTimeout/4, 5*time.Millisecond))
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	var next int64
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			now := nowNano()
			s.clock.Store(now)
			if s.cfg.IdleTimeout > 0 && now >= next {
				s.local.passivate(now - int64(s.cfg.IdleTimeout))
				next = now + int64(max(s.cfg.IdleTimeout/4, 5*time.Millisecond))
			}
		}
	}
}

func (s *System) started(a *actor) {
	a.pub.Store(a.inc)
	s.alog.add(Activation{Capability: a.kt.key.capability, Kind: a.kt.key.kind, ID: a.id, Node: s.self, Incarnation: a.inc, Time: time.Now(), Started: true})
	s.bus.Emit(event.Event{Kind: event.ActorStarted, Capability: a.kt.key.capability, ActorKind: a.kt.key.kind, Actor: a.id, Incarnation: a.inc})
}

func (s *System) stopped(a *actor, reason StopReason) {
	a.pub.Store(0)
	s.alog.add(Activation{Capability: a.kt.key.capability, Kind: a.kt.key.kind, ID: a.id, Node: s.self, Incarnation: a.inc, Time: time.Now(), Reason: string(reason)})
	s.bus.Emit(event.Event{Kind: event.ActorStopped, Capability: a.kt.key.capability, ActorKind: a.kt.key.kind, Actor: a.id, Incarnation: a.inc, Reason: string(reason)})
}

func (s *System) crashedEvent(a *actor, why string) {
	s.bus.Emit(event.Event{Kind: event.ActorCrashed, Capability: a.kt.key.capability, ActorKind: a.kt.key.kind, Actor: a.id, Incarnation: a.inc, Reason: why})
}

// Placements returns the placement of every capability some live node
// serves, in this node's current view, sorted by capability.
func (s *System) Placements() []*ring.Placement {
	v := s.route.view.Load()
	out := make([]*ring.Placement, 0, len(v.caps))
	for _, p := range v.caps {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b *ring.Placement) int { return compareStrings(a.Capability(), b.Capability()) })
	return out
}
