package member

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	p2pevent "github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/host/eventbus"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/macula-io/macula/access"
	"github.com/macula-io/macula/event"
	"github.com/macula-io/macula/peerdid"
	"github.com/macula-io/macula/ucan"
)

// Emitter receives the membership's events (*event.Bus satisfies it).
type Emitter interface {
	Emit(event.Event)
}

// Tunables that are not worth a Config field.
const (
	// openTimeout bounds connecting to a member and opening a stream to it.
	openTimeout = 10 * time.Second
	// maxOpening bounds the links being opened at once.
	maxOpening = 8
	// leaveFlush is how long Close lets the departure notice go out.
	leaveFlush = time.Second
	// tombstoneEvery is the period of the tombstone sweep.
	tombstoneEvery = 10 * time.Second
	// grantEvery is how often a secure node checks that it may still
	// serve the capabilities it claims.
	grantEvery = 10 * time.Second
	// retryMin and retryMax bound the wait before a failed link is tried
	// again.
	retryMin = 200 * time.Millisecond
	retryMax = 30 * time.Second
	// ConnProtectTag protects, in the connection manager, the connections
	// of the overlay's links (the node's trimming of idle connections
	// keeps them too).
	ConnProtectTag = "macula-members"
	// logEvery bounds repeated warnings (unauthorized claims, bad frames).
	logEvery = 10 * time.Second
)

// Members is this node's view of its realm's membership: every member's
// record (name, capabilities, clusters, incarnation), kept up to date as
// nodes join, change, leave and fail. See the package doc for how. It is
// safe for concurrent use.
type Members struct {
	// Set in New, read-only after.
	h     host.Host
	bus   Emitter // may be nil
	cfg   Config
	log   *slog.Logger
	proto protocol.ID
	// quietProto is the version (1.1.0) that lets a reader with the
	// higher ID stay quiet (protocolQuiet).
	quietProto protocol.ID
	self       peer.ID
	key        crypto.PrivKey
	boot       uint64
	access     access.Policy
	secure     bool
	hostSub    p2pevent.Subscription
	tick       time.Duration

	ctx       context.Context // lifetime; cancelled by Close
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once

	framesIn, framesOut, syncs, suspicions, refutations   atomic.Uint64
	droppedUnauth, droppedInvalid, refusedFull, overflows atomic.Uint64
	unauthLogged, invalidLogged                           atomic.Int64 // unix ns of the last line

	// mu guards the fields below it. Lock order: mu, then an outStream's
	// mu or a watcher's mu (each taken alone).
	mu       sync.Mutex
	closing  bool
	v        *view
	wantCaps []string // the capabilities asked for; the record claims those granted
	clusters []string
	addrs    []ma.Multiaddr // in the current record
	links    map[peer.ID]*link
	wanted   map[peer.ID]bool // the overlay's neighbours
	dirty    bool             // the live set changed: recompute wanted
	opening  int              // links being opened
	retry    map[peer.ID]*retryState
	watchers map[*watcher]struct{}
	// lingering: readers of links the overlay closed, which end when the
	// peer closes its stream in turn; one that has not by its deadline
	// (a peer that hangs) is reset, and Close resets them all.
	lingering map[*inStream]time.Time
	// noBack: peers whose links took our stream but opened none back,
	// since their link was last up (see linksTickLocked).
	noBack   map[peer.ID]*noBackState
	addrsDue bool // the host's addresses changed
	// stalledUntil: this node's tick loop ran late; silent links are not
	// judged before then (see stalledLocked).
	stalledUntil time.Time
	// health counts this node's recent signs of its own slowness (a late
	// tick, a suspicion of itself to refute), at most maxHealth; each
	// lengthens the silence it tolerates on a link by one ProbeTimeout
	// (probeTimeoutLocked). It decays by one per quiet ProbeTimeout.
	// Lifeguard's local health multiplier: a node that cannot keep up
	// blames itself before its peers.
	health    int
	healthAt  time.Time
	reconnect int // round robin over failed members
}

// retryState delays reopening a link to a peer after failures.
// noBackState: since when a peer's links take our stream but open none
// back, and whether that raised a suspicion.
type noBackState struct {
	first     time.Time
	suspected bool
}

type retryState struct {
	fails     int
	next      time.Time
	firstFail time.Time
	suspected bool // a weak suspicion was raised (until a link is made)
}

// New starts the membership of this node on h: it serves Protocol(cfg.Realm),
// links to members as they connect, and announces this node's record. bus
// gets the member events; it may be nil. In a secure realm (cfg.Access
// not open) every capability of cfg must be granted (ucan.Serve on
// ucan.ServeResource), or New fails with ErrUnauthorized.
func New(h host.Host, bus Emitter, cfg Config) (*Members, error) {
	if h == nil {
		return nil, errors.New("member: a host is required")
	}
	cfg, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	key := h.Peerstore().PrivKey(h.ID())
	if key == nil {
		return nil, errors.New("member: the host's private key is not in its peerstore")
	}
	now := time.Now()
	m := &Members{
		h:          h,
		bus:        bus,
		cfg:        cfg,
		log:        cfg.Logger.With("realm", cfg.Realm),
		proto:      Protocol(cfg.Realm),
		quietProto: protocolQuiet(cfg.Realm),
		self:       h.ID(),
		key:        key,
		boot:       uint64(now.UnixMilli()),
		access:     cfg.Access,
		secure:     !access.IsOpen(cfg.Access),
		tick:       max(cfg.ProbeInterval/2, 5*time.Millisecond),
		v:          newView(h.ID(), cfg.Rings, cfg.MaxMembers, cfg.SuspicionTimeout, cfg.Confirmations),
		wantCaps:   cfg.Capabilities,
		clusters:   cfg.Clusters,
		links:      make(map[peer.ID]*link),
		wanted:     make(map[peer.ID]bool),
		retry:      make(map[peer.ID]*retryState),
		watchers:   make(map[*watcher]struct{}),
		lingering:  make(map[*inStream]time.Time),
		noBack:     make(map[peer.ID]*noBackState),
	}
	if err := m.checkOwn(cfg.Capabilities); err != nil {
		return nil, err
	}
	m.addrs = m.ownAddrs()
	if err := m.setSelfLocked(m.boot, cfg.Capabilities); err != nil {
		return nil, err
	}
	m.hostSub, err = h.EventBus().Subscribe([]any{
		new(p2pevent.EvtPeerIdentificationCompleted),
		new(p2pevent.EvtPeerProtocolsUpdated),
		new(p2pevent.EvtLocalAddressesUpdated),
	}, eventbus.Name("macula-members"), eventbus.BufSize(256))
	if err != nil {
		return nil, fmt.Errorf("member: host events: %w", err)
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	h.SetStreamHandler(m.proto, m.handleStream)
	h.SetStreamHandler(m.quietProto, m.handleStream)
	m.wg.Add(2)
	go m.watchHost()
	go m.tickLoop()
	// Peers connected before New (identify already done) get a link too.
	for _, p := range h.Network().Peers() {
		if protos, err := h.Peerstore().SupportsProtocols(p, m.proto); err == nil && len(protos) > 0 {
			m.peerReady(p)
		}
	}
	m.log.Debug("membership started", "capabilities", cfg.Capabilities, "clusters", cfg.Clusters)
	return m, nil
}

// ---- the public API ----

// Self returns this node's own record.
func (m *Members) Self() Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	return memberOf(m.v.selfRec)
}

// List returns every live member of the realm this node knows, itself
// included, sorted by ID.
func (m *Members) List() []Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.v.members()
}

// Get returns the member with ID id, if it is live.
func (m *Members) Get(id peer.ID) (Member, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if id == m.self {
		return memberOf(m.v.selfRec), true
	}
	e := m.v.entries[id]
	if e == nil || !e.isLive() || e.rec == nil {
		return Member{}, false
	}
	return e.member(), true
}

// Addrs returns the addresses that the live member id gave in its record
// (nil when it is not a live member): where to dial a member that this
// node lost but the realm still holds live.
func (m *Members) Addrs(id peer.ID) []ma.Multiaddr {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.v.entries[id]
	if id == m.self || e == nil || !e.isLive() || e.rec == nil {
		return nil
	}
	return slices.Clone(e.rec.Addrs)
}

// WithCapability returns the live members that serve capability c, sorted
// by ID.
func (m *Members) WithCapability(c string) []Member {
	return m.filter(func(x Member) bool { return x.HasCapability(c) })
}

// InCluster returns the live members in cluster name, sorted by ID.
func (m *Members) InCluster(name string) []Member {
	return m.filter(func(x Member) bool { return x.InCluster(name) })
}

func (m *Members) filter(keep func(Member) bool) []Member {
	all := m.List()
	out := all[:0]
	for _, x := range all {
		if keep(x) {
			out = append(out, x)
		}
	}
	return slices.Clip(out)
}

// Version returns the view's version: it grows by one with every change
// (Change.Version).
func (m *Members) Version() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.v.version
}

// SetCapabilities replaces the capabilities this node serves and announces
// them to the realm. Names must be valid (ValidateName); in a secure realm
// each needs a grant of ucan.Serve on ucan.ServeResource(realm, name), or
// the call fails with ErrUnauthorized and nothing changes. It returns once
// the new record is queued to every link.
func (m *Members) SetCapabilities(ctx context.Context, caps []string) error {
	caps, err := normalize("capability", caps, MaxCapabilities)
	if err != nil {
		return err
	}
	if err := m.checkOwn(caps); err != nil {
		return err
	}
	return m.update(ctx, func() ([]string, []string, error) {
		m.wantCaps = caps
		return caps, m.clusters, nil
	})
}

// JoinCluster adds this node to the named cluster (a registry subcluster)
// and announces it. Joining a cluster twice is not an error.
func (m *Members) JoinCluster(ctx context.Context, name string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	return m.update(ctx, func() ([]string, []string, error) {
		cs, err := normalize("cluster", append(slices.Clone(m.clusters), name), MaxClusters)
		return m.v.selfRec.Capabilities, cs, err
	})
}

// LeaveCluster removes this node from the named cluster and announces it.
// Leaving a cluster it is not in is not an error.
func (m *Members) LeaveCluster(ctx context.Context, name string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	return m.update(ctx, func() ([]string, []string, error) {
		cs := slices.DeleteFunc(slices.Clone(m.clusters), func(c string) bool { return c == name })
		if len(cs) == 0 {
			cs = nil
		}
		return m.v.selfRec.Capabilities, cs, nil
	})
}

// update changes this node's record: next, called under mu, returns the
// new capabilities and clusters, or an error that leaves everything as it
// was. An update that changes nothing announces nothing.
func (m *Members) update(ctx context.Context, next func() (caps, clusters []string, err error)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closing {
		return ErrClosed
	}
	before := m.v.selfRec
	caps, clusters, err := next()
	if err != nil {
		return err
	}
	if slices.Equal(caps, before.Capabilities) && slices.Equal(clusters, before.Clusters) {
		return nil
	}
	saved := m.clusters
	m.clusters = clusters
	if err := m.setSelfLocked(m.nextIncLocked(0), caps); err != nil {
		m.clusters = saved
		return err
	}
	m.announceSelfLocked(before)
	return nil
}

// Departed tells the membership that peer p said goodbye to this node (it
// is closing cleanly: node's goodbye, before its own departure notice
// arrives). A live member p is dropped at once, as Left; its own signed
// departure, when it comes, is passed on as usual.
func (m *Members) Departed(p peer.ID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closing {
		return
	}
	res := m.v.departed(p, time.Now())
	if len(res.changes) > 0 {
		m.dirty = true
		m.publishLocked(res.changes)
	}
}

// Stats returns the counters.
func (m *Members) Stats() Stats {
	m.mu.Lock()
	st := Stats{Members: m.v.live + 1, Suspect: len(m.v.suspects), Tombstones: len(m.v.entries) - m.v.live,
		Neighbours: len(m.wanted), Version: m.v.version, Health: m.health}
	for _, l := range m.links {
		if l.up() {
			st.Links++
		}
	}
	m.mu.Unlock()
	st.FramesIn, st.FramesOut = m.framesIn.Load(), m.framesOut.Load()
	st.Syncs, st.Suspicions, st.Refutations = m.syncs.Load(), m.suspicions.Load(), m.refutations.Load()
	st.DroppedUnauthorized, st.DroppedInvalid = m.droppedUnauth.Load(), m.droppedInvalid.Load()
	st.RefusedFull, st.LinkOverflows = m.refusedFull.Load(), m.overflows.Load()
	return st
}

// Close leaves the realm: it tells its linked members that this node
// leaves (they tell the rest), lets that notice go out for at most a
// second, closes every link and ends every Watch. It waits for every
// goroutine it started and is safe to call more than once.
func (m *Members) Close() error {
	m.closeOnce.Do(m.close)
	return nil
}

func (m *Members) close() {
	// Stop taking work first: no new streams, no host events.
	m.h.RemoveStreamHandler(m.proto)
	m.h.RemoveStreamHandler(m.quietProto)
	m.hostSub.Close()

	m.mu.Lock()
	m.closing = true
	a := &alert{Kind: alertLeft, Subject: m.self, Incarnation: m.v.selfRec.Incarnation, Author: m.self}
	var leave []byte
	if err := a.sign(m.cfg.Realm, m.key); err == nil {
		leave = encodeFrame(typeAlert, a.encode())
	}
	var outs []*outStream
	var ins []*inStream
	for _, l := range m.links {
		if l.out != nil {
			if leave != nil {
				l.out.push(leave, true)
			}
			outs = append(outs, l.out)
		}
		if l.in != nil {
			ins = append(ins, l.in)
		}
	}
	for in := range m.lingering {
		ins = append(ins, in)
	}
	for p := range m.wanted {
		m.h.ConnManager().Unprotect(p, ConnProtectTag)
	}
	watchers := make([]*watcher, 0, len(m.watchers))
	for w := range m.watchers {
		watchers = append(watchers, w)
	}
	m.mu.Unlock()

	// The departure goes out first: each writer drains its queue, and
	// each peer, once it has read the departure, closes its stream to us.
	// That is the acknowledgment: a stream closed here may still lose its
	// last frames when the node closes the connection right after. All of
	// it within leaveFlush.
	deadline := time.Now().Add(leaveFlush)
	for _, o := range outs {
		o.drain(leaveFlush)
	}
	for _, o := range outs {
		o.waitDrained(time.Until(deadline))
	}
	for _, in := range ins {
		wait := time.NewTimer(max(time.Until(deadline), 0))
		select {
		case <-in.done:
		case <-wait.C:
		}
		wait.Stop()
	}
	m.cancel()
	for _, o := range outs {
		o.close()
	}
	for _, in := range ins {
		_ = in.s.Reset()
	}
	for _, w := range watchers {
		w.stop()
	}
	m.wg.Wait()
	m.log.Debug("membership stopped")
}

// ---- this node's record ----

// ownAddrs returns the host's addresses for the record, at most maxAddrs.
func (m *Members) ownAddrs() []ma.Multiaddr {
	var out []ma.Multiaddr
	for _, a := range m.h.Addrs() {
		if len(a.Bytes()) > maxAddrLen {
			continue
		}
		out = append(out, a)
		if len(out) == maxAddrs {
			break
		}
	}
	return out
}

// nextIncLocked returns an incarnation above the current one and above
// floor, from the clock when it is ahead (so that a restart starts above
// the last run).
func (m *Members) nextIncLocked(floor uint64) uint64 {
	inc := uint64(time.Now().UnixMilli())
	if cur := m.v.selfRec; cur != nil && inc <= cur.Incarnation {
		inc = cur.Incarnation + 1
	}
	if inc <= floor {
		inc = floor + 1
	}
	return inc
}

// setSelfLocked makes and signs this node's record at incarnation inc.
func (m *Members) setSelfLocked(inc uint64, caps []string) error {
	r := &record{
		ID: m.self, Incarnation: inc, Boot: m.boot, Name: m.cfg.Name,
		Capabilities: caps, Clusters: m.clusters, Addrs: m.addrs,
	}
	if err := r.sign(m.cfg.Realm, m.key); err != nil {
		return fmt.Errorf("member: signing the record: %w", err)
	}
	wire := r.encode()
	if len(wire) > maxRecord {
		return fmt.Errorf("%w: the record would be %d bytes, at most %d", ErrInvalidName, len(wire), maxRecord)
	}
	m.v.setSelf(r, wire)
	return nil
}

// announceSelfLocked floods the current record and tells watchers when
// what they see changed.
func (m *Members) announceSelfLocked(before *record) {
	m.floodLocked(encodeFrame(typeRecord, m.v.selfWire), "")
	if before != nil && !sameMember(memberOf(before), memberOf(m.v.selfRec)) {
		m.v.version++
		m.publishLocked([]Change{{Kind: Updated, Member: memberOf(m.v.selfRec), Previous: memberOf(before), Version: m.v.version, Reason: "changed"}})
	}
}

// stalledLocked notes that this node's tick loop ran lag late (a loaded
// machine, a long GC pause): the silence it would now see is its own.
// While its health is not at its worst it gives its readers a heartbeat's
// time to catch up before judging any link; at its worst it judges them at
// once, with the longest tolerance, or a node stalled on every tick would
// never judge a link again. Suspects get the time lost to refute, up to
// their suspicion's bound, or a node stalled on every tick would never
// conclude a suspicion (a partition would never be seen).
func (m *Members) stalledLocked(now time.Time, lag time.Duration) {
	if m.health < maxHealth {
		m.stalledUntil = now.Add(m.cfg.ProbeInterval)
	}
	for _, e := range m.v.suspects {
		if d := e.sus.deadline.Add(lag); d.Before(e.sus.latest) {
			e.sus.deadline = d
		} else {
			e.sus.deadline = e.sus.latest
		}
	}
	m.unhealthyLocked(now)
	m.log.Debug("membership stalled", "lag", lag, "health", m.health)
}

// maxHealth bounds Members.health: the silence tolerated on a link grows
// to at most (1+maxHealth) * ProbeTimeout.
const maxHealth = 4

// unhealthyLocked notes a sign of this node's own slowness.
func (m *Members) unhealthyLocked(now time.Time) {
	m.health = min(m.health+1, maxHealth)
	m.healthAt = now
}

// probeTimeoutLocked is the silence tolerated on a link now: ProbeTimeout,
// times one plus this node's health count.
func (m *Members) probeTimeoutLocked() time.Duration {
	return m.cfg.ProbeTimeout * time.Duration(1+m.health)
}

// refuteLocked answers news that this node left or failed, or a record of
// it that it did not make, with a new incarnation above floor. Being
// suspected is a sign of this node's own slowness as much as of the
// network's: it counts in its health.
func (m *Members) refuteLocked(floor uint64) {
	if m.closing {
		return
	}
	m.unhealthyLocked(time.Now())
	if err := m.setSelfLocked(m.nextIncLocked(floor), m.v.selfRec.Capabilities); err != nil {
		m.log.Warn("cannot refute a suspicion of this node", "err", err)
		return
	}
	m.refutations.Add(1)
	m.log.Debug("refuted news of this node", "incarnation", m.v.selfRec.Incarnation)
	m.announceSelfLocked(nil)
}

// checkOwn refuses capabilities this node may not serve.
func (m *Members) checkOwn(caps []string) error {
	if !m.secure {
		return nil
	}
	vd := m.access.Self()
	for _, c := range caps {
		if err := ucan.Check(vd, ucan.Serve, ucan.ServeResource(m.cfg.Realm, c)); err != nil {
			return fmt.Errorf("%w: this node may not serve capability %q: it holds no grant of %s on %s (ask the realm authority: macula-node ucan issue --can serve --with %s): %w",
				ErrUnauthorized, c, ucan.Serve, ucan.ServeResource(m.cfg.Realm, c), ucan.ServeResource(m.cfg.Realm, c), err)
		}
	}
	return nil
}

// recheckGrantsLocked drops, from this node's record, capabilities whose
// grant expired or was revoked, and claims again those granted anew.
func (m *Members) recheckGrantsLocked() {
	vd := m.access.Self()
	var caps []string
	for _, c := range m.wantCaps {
		if ucan.Check(vd, ucan.Serve, ucan.ServeResource(m.cfg.Realm, c)) == nil {
			caps = append(caps, c)
		}
	}
	if slices.Equal(caps, m.v.selfRec.Capabilities) {
		return
	}
	m.log.Warn("the capabilities this node may serve changed (a grant expired, was revoked or was given)",
		"asked", m.wantCaps, "claimed", caps)
	before := m.v.selfRec
	if err := m.setSelfLocked(m.nextIncLocked(0), caps); err != nil {
		return
	}
	m.announceSelfLocked(before)
}

// ---- news from links ----

// authorized checks a record's claims against its member's grant: in a
// secure realm, every capability must be granted (ucan.Serve). A record
// of a member we hold no verdict for (not connected to us) stands on the
// word of the member that passed it on, which checked it (package doc).
func (m *Members) authorized(r *record, from peer.ID) error {
	if !m.secure || len(r.Capabilities) == 0 {
		return nil
	}
	vd := m.access.Peer(r.ID)
	if vd == nil {
		if r.ID == from {
			return fmt.Errorf("%w: %s sent its record without a verdict", ErrUnauthorized, from)
		}
		return nil
	}
	for _, c := range r.Capabilities {
		if err := ucan.Check(vd, ucan.Serve, ucan.ServeResource(m.cfg.Realm, c)); err != nil {
			return fmt.Errorf("%w: %s claims capability %q: %w", ErrUnauthorized, r.ID, c, err)
		}
	}
	return nil
}

// handleRecord applies a record frame received from peer from.
func (m *Members) handleRecord(from peer.ID, body []byte) error {
	r, err := decodeRecord(body)
	if err != nil {
		return err
	}
	m.mu.Lock()
	known := m.v.knows(r.ID, r.Incarnation) && r.ID != m.self
	m.mu.Unlock()
	if known {
		return nil // old news: no signature to check
	}
	if err := r.verify(m.cfg.Realm); err != nil {
		return err
	}
	if err := m.authorized(r, from); err != nil {
		m.droppedUnauth.Add(1)
		m.logRateLimited(&m.unauthLogged, "dropped a member's record: it claims a capability it may not serve", "from", from, "member", r.ID, "err", err)
		return nil
	}
	wire := append([]byte(nil), body...)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closing {
		return nil
	}
	res := m.v.applyRecord(r, wire, time.Now())
	m.afterLocked(res, typeRecord, wire, from, r.Incarnation)
	return nil
}

// handleAlert applies an alert frame received from peer from, and reports
// whether it was from's own departure.
func (m *Members) handleAlert(from peer.ID, body []byte) (left bool, err error) {
	a, err := decodeAlert(body)
	if err != nil {
		return false, err
	}
	if err := a.verify(m.cfg.Realm); err != nil {
		return false, err
	}
	left = a.Kind == alertLeft && a.Subject == from
	wire := append([]byte(nil), body...)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closing {
		return left, nil
	}
	res := m.v.applyAlert(a, wire, time.Now())
	m.afterLocked(res, typeAlert, wire, from, a.Incarnation)
	if res.conclude {
		m.declareFailedLocked(a.Subject, "suspected by its watchers")
	}
	return left, nil
}

// afterLocked does what applying news calls for: forward it, refute it,
// tell watchers.
func (m *Members) afterLocked(res result, typ uint8, wire []byte, from peer.ID, inc uint64) {
	if res.full {
		m.refusedFull.Add(1)
	}
	if res.refute {
		m.refuteLocked(inc)
	}
	if res.accepted {
		m.floodLocked(encodeFrame(typ, wire), from)
	}
	if len(res.changes) > 0 {
		m.dirty = true
		m.publishLocked(res.changes)
	}
}

// suspectLocked raises this node's suspicion of p, whose link went silent
// or was lost with its connections (alertSuspect), or could never be made
// (alertUnreachable).
func (m *Members) suspectLocked(p peer.ID, kind alertKind, why string) {
	e := m.v.entries[p]
	if e == nil || !e.isLive() || m.closing {
		return
	}
	if _, ok := func() ([]byte, bool) {
		if e.sus == nil {
			return nil, false
		}
		w, ok := e.sus.authors[m.self]
		return w, ok
	}(); ok {
		return
	}
	a := &alert{Kind: kind, Subject: p, Incarnation: e.inc, Author: m.self}
	if err := a.sign(m.cfg.Realm, m.key); err != nil {
		return
	}
	wire := a.encode()
	m.suspicions.Add(1)
	m.log.Debug("suspecting a member", "peer", p, "why", why)
	res := m.v.applyAlert(a, wire, time.Now())
	m.afterLocked(res, typeAlert, wire, "", a.Incarnation)
	if res.conclude {
		m.declareFailedLocked(p, why)
	}
}

// declareFailedLocked declares a suspected member failed and tells the
// realm.
func (m *Members) declareFailedLocked(p peer.ID, why string) {
	e := m.v.entries[p]
	if e == nil || !e.isLive() {
		return
	}
	a := &alert{Kind: alertFailed, Subject: p, Incarnation: e.inc, Author: m.self}
	if err := a.sign(m.cfg.Realm, m.key); err != nil {
		return
	}
	wire := a.encode()
	if e.st == stateAlive {
		m.v.suspect(e, time.Now()) // so that the alert concludes it
	}
	res := m.v.applyAlert(a, wire, time.Now())
	for i := range res.changes {
		res.changes[i].Reason = why
	}
	m.log.Info("member failed", "peer", p, "name", e.rec.nameOr(), "why", why)
	m.afterLocked(res, typeAlert, wire, "", a.Incarnation)
}

func (r *record) nameOr() string {
	if r == nil {
		return ""
	}
	return r.Name
}

// publishLocked tells the event bus and the watchers about changes.
func (m *Members) publishLocked(changes []Change) {
	for _, c := range changes {
		if c.Member.ID != m.self {
			switch c.Kind {
			case Joined:
				m.log.Info("member joined", "peer", c.Member.ID, "name", c.Member.Name, "capabilities", c.Member.Capabilities)
			case Left:
				m.log.Info("member left", "peer", c.Member.ID, "name", c.Member.Name)
			}
		}
		if m.bus != nil {
			kind := map[ChangeKind]event.Kind{Joined: event.MemberJoined, Updated: event.MemberUpdated, Left: event.MemberLeft, Failed: event.MemberFailed}[c.Kind]
			m.bus.Emit(event.Event{Kind: kind, Peer: c.Member.ID.String(), DID: peerdid.Of(c.Member.ID), Name: c.Member.Name,
				Capabilities: c.Member.Capabilities, Clusters: c.Member.Clusters, Reason: c.Reason})
		}
		for w := range m.watchers {
			w.push(c)
		}
	}
}

// floodLocked queues a frame on every link but the one to except.
func (m *Members) floodLocked(fr []byte, except peer.ID) {
	for p, l := range m.links {
		if p == except || l.out == nil {
			continue
		}
		if !l.out.push(fr, false) {
			m.overflowLocked(l)
		}
	}
}

func (m *Members) logRateLimited(last *atomic.Int64, msg string, args ...any) {
	now := time.Now().UnixNano()
	if prev := last.Load(); now-prev >= int64(logEvery) && last.CompareAndSwap(prev, now) {
		m.log.Warn(msg, args...)
	}
}

// ---- the host's events ----

// watchHost links to peers as they turn out to speak the protocol, and
// notes address changes. It must be quick: the host's event bus waits.
func (m *Members) watchHost() {
	defer m.wg.Done()
	for e := range m.hostSub.Out() {
		switch e := e.(type) {
		case p2pevent.EvtPeerIdentificationCompleted:
			if slices.Contains(e.Protocols, m.proto) {
				m.peerReady(e.Peer)
			}
		case p2pevent.EvtPeerProtocolsUpdated:
			if slices.Contains(e.Added, m.proto) {
				m.peerReady(e.Peer)
			}
		case p2pevent.EvtLocalAddressesUpdated:
			m.mu.Lock()
			m.addrsDue = true
			m.mu.Unlock()
		}
	}
}

// peerReady links to a connected peer that speaks the protocol when it
// may know what we do not (or we what it does not): when this node has no
// link yet (it is joining), or when the peer is not a live member here (it
// is joining, or it comes back across a healed split).
func (m *Members) peerReady(p peer.ID) {
	if p == m.self {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closing || m.links[p] != nil {
		return
	}
	e := m.v.entries[p]
	if m.upLinksLocked() > 0 && e != nil && e.isLive() {
		return
	}
	m.openLocked(p, nil)
}

func (m *Members) upLinksLocked() int {
	n := 0
	for _, l := range m.links {
		if l.up() {
			n++
		}
	}
	return n
}

// ---- the tick loop ----

// tickLoop runs the timed chores: heartbeats and silent links, ended
// suspicions, the overlay's links, and now and then tombstones, failed
// members to reach again and grants. Its cost does not grow with the
// realm: it walks the links, the overlay's neighbours and the suspects,
// and the whole view only when the view changed.
func (m *Members) tickLoop() {
	defer m.wg.Done()
	t := time.NewTicker(m.tick)
	defer t.Stop()
	var lastTombs, lastGrants, lastReconnect time.Time
	lastTick := time.Now()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		m.mu.Lock()
		if m.closing {
			m.mu.Unlock()
			return
		}
		if lag := now.Sub(lastTick) - m.tick; lag > m.cfg.ProbeInterval/2 {
			m.stalledLocked(now, lag)
		} else if m.health > 0 && now.Sub(m.healthAt) >= m.probeTimeoutLocked() {
			m.health--
			m.healthAt = now
		}
		lastTick = now
		m.linksTickLocked(now)
		for _, e := range m.v.expired(now) {
			m.declareFailedLocked(e.id, "no refutation within the suspicion timeout")
		}
		m.overlayLocked(now)
		if m.addrsDue {
			m.addrsDue = false
			m.refreshAddrsLocked()
		}
		if now.Sub(lastReconnect) >= m.cfg.ReconnectInterval {
			lastReconnect = now
			m.reconnectLocked()
			m.linkStrangersLocked(now)
		}
		for in, deadline := range m.lingering {
			if now.After(deadline) {
				delete(m.lingering, in)
				_ = in.s.Reset()
			}
		}
		if now.Sub(lastTombs) >= tombstoneEvery {
			lastTombs = now
			if len(m.v.entries) > m.v.live {
				m.v.reap(now, m.cfg.TombstoneTTL)
			}
			for p, r := range m.retry {
				if now.Sub(r.next) > retryMax && m.links[p] == nil && !m.wanted[p] {
					delete(m.retry, p)
				}
			}
			for p := range m.noBack {
				if m.links[p] == nil && !m.wanted[p] {
					delete(m.noBack, p)
				}
			}
		}
		if m.secure && now.Sub(lastGrants) >= grantEvery {
			lastGrants = now
			m.recheckGrantsLocked()
		}
		m.mu.Unlock()
	}
}

// refreshAddrsLocked puts the host's new addresses in the record.
func (m *Members) refreshAddrsLocked() {
	addrs := m.ownAddrs()
	if slices.EqualFunc(addrs, m.addrs, func(a, b ma.Multiaddr) bool { return a.Equal(b) }) {
		return
	}
	m.addrs = addrs
	before := m.v.selfRec
	if err := m.setSelfLocked(m.nextIncLocked(0), before.Capabilities); err != nil {
		return
	}
	m.announceSelfLocked(before)
}

// linkStrangersLocked links to connected peers that speak the protocol
// and are no live members here, and to any of them while this node has no
// link at all: what peerReady does when a peer connects, again for the
// peers whose link could not be made then (a busy peer, a lost stream).
// It walks the connections, which the connection manager bounds.
func (m *Members) linkStrangersLocked(now time.Time) {
	alone := m.upLinksLocked() == 0
	for _, p := range m.h.Network().Peers() {
		if m.opening >= maxOpening {
			return
		}
		if m.links[p] != nil {
			continue
		}
		if e := m.v.entries[p]; e != nil && (e.st == stateLeft || (!alone && e.isLive())) {
			// A member that left is not asked back (a restarted one
			// connects anew, and peerReady links to it).
			continue
		}
		if r := m.retry[p]; r != nil && now.Before(r.next) {
			continue
		}
		if protos, err := m.h.Peerstore().SupportsProtocols(p, m.proto); err != nil || len(protos) == 0 {
			continue
		}
		m.openLocked(p, nil)
	}
}

// reconnectLocked tries to reach one failed member that this node would
// watch, so that the two sides of a healed split find each other even
// where no bootstrap link crosses it. Which members each node tries follows
// the rings, so a failed member is tried by about Rings nodes, not all.
func (m *Members) reconnectLocked() {
	var cands []*entry
	for _, e := range m.v.entries {
		if e.st != stateFailed || e.rec == nil || m.links[e.id] != nil {
			continue
		}
		if w := m.v.watchersOf(e.id, e.keys); slices.Contains(w, m.self) {
			cands = append(cands, e)
		}
		if len(cands) >= 16 {
			break
		}
	}
	if len(cands) == 0 || m.opening >= maxOpening {
		return
	}
	slices.SortFunc(cands, func(a, b *entry) int {
		if a.id < b.id {
			return -1
		}
		return 1
	})
	m.reconnect++
	e := cands[m.reconnect%len(cands)]
	m.openLocked(e.id, e.rec.Addrs)
}
