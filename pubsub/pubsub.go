package pubsub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	p2pevent "github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/host/eventbus"
	msmux "github.com/multiformats/go-multistream"

	"github.com/macula-io/macula/access"
	"github.com/macula-io/macula/event"
	"github.com/macula-io/macula/peerdid"
)

// Router is what pubsub needs from the realm's DHT (*dht.DHT satisfies it):
// subscribers provide interest keys, publishers look them up.
type Router interface {
	Provide(ctx context.Context, key string) error
	StopProviding(key string)
	Lookup(ctx context.Context, key string, limit int) ([]peer.AddrInfo, error)
}

// Protocol returns the pubsub protocol ID of a realm.
func Protocol(realmName string) protocol.ID {
	return protocol.ID("/macula/" + realmName + "/pubsub/1.0.0")
}

// Tunables that are not worth a Config field.
const (
	// openTimeout bounds connecting to a peer and opening a stream to it.
	openTimeout = 10 * time.Second
	// lookupTimeout bounds one DHT lookup.
	lookupTimeout = 10 * time.Second
	// provideTimeout bounds one DHT provide.
	provideTimeout = 30 * time.Second
	// provideRetry is the wait before a failed provide is tried again.
	provideRetry = 5 * time.Second
	// closeFlush is how long Close lets each send queue drain.
	closeFlush = 2 * time.Second
	// maxLookups bounds the DHT lookups in flight at once.
	maxLookups = 8
	// maxRoutes bounds the topics whose routes (and DHT lookups) a
	// publisher keeps; past it, a new topic is routed on every Publish
	// without a cache and without DHT discovery of its own.
	maxRoutes = 16384
	// idleRefreshes is how many InterestRefresh periods a topic may go
	// unpublished before its route and lookups are dropped.
	idleRefreshes = 15
	// maxBackoff caps the wait before retrying a peer we failed to reach.
	maxBackoff = 30 * time.Second
	// connTag tags, in the connection manager, connections to peers that
	// announced interest, so they are trimmed last.
	connTag      = "macula-pubsub"
	connTagValue = 20
	// refusalLogEvery is the least time between two debug lines about
	// messages refused for lack of a grant, per stream or link: a peer
	// without one may send, or be due, a message per microsecond.
	refusalLogEvery = 10 * time.Second
)

// PubSub publishes messages to topics of a realm and delivers the messages
// of the topics this node subscribes to. It is safe for concurrent use.
//
// Lock order: mu, then routesMu, a link's mu or a subscription's mu (each of
// the last three is taken alone, never with another of them).
type PubSub struct {
	// Set in New, read-only after.
	h         host.Host
	router    Router
	bus       *event.Bus // may be nil
	cfg       Config     // validated
	log       *slog.Logger
	proto     protocol.ID
	self      peer.ID
	did       string // our did:key, "" if the host key is not Ed25519
	readLimit uint32 // frame limit of streams we read
	hostSub   p2pevent.Subscription
	// access is cfg.Access; secure is false in an open realm, where no
	// check runs.
	access access.Policy
	secure bool

	ctx       context.Context // lifetime; cancelled by Close
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once

	closed atomic.Bool
	// seq is the sequence number of the last message published; it is
	// also Stats.Published.
	seq atomic.Uint64
	// gen changes whenever a route may change: a local subscription, a
	// peer's interest or a link came or went. Cached routes carry the gen
	// they were computed at.
	gen atomic.Uint64

	sent, delivered, droppedSend, droppedLocal, frames atomic.Uint64
	// refusedIn and refusedOut count messages refused for lack of a grant:
	// received from a peer that may not publish them, and not sent to a
	// peer that may not subscribe to them.
	refusedIn, refusedOut atomic.Uint64

	wakeLookup  chan struct{} // cap 1: a new topic needs its lookups now
	wakeProvide chan struct{} // cap 1: the set of keys to provide changed
	// discoveryRounds counts discoveryLoop's rounds (for tests).
	discoveryRounds atomic.Uint64

	// subList is a snapshot of subs for the delivery path; replaced under
	// mu, read without it.
	subList atomic.Pointer[[]*Subscription]

	// routesMu guards routes. Writers hold mu as well, so code holding mu
	// may read routes without routesMu.
	routesMu sync.RWMutex
	routes   map[string]*topicRoute

	// mu guards the fields below it.
	mu       sync.Mutex
	closing  bool
	noEager  bool // tests only: link to connected peers only when they link to us
	subs     map[*Subscription]struct{}
	interest map[string]int // local pattern -> subscriptions with it
	provide  map[string]int // DHT key -> local patterns that need it
	remotes  map[peer.ID]*remote
	keys     map[string]*lookupKey // DHT keys looked up for routed topics
	backoff  map[peer.ID]*retryState

	// pstats holds the counters of each pattern in interest.
	pstats map[string]*patternStat
}

// remote is what we know of one peer. Guarded by PubSub.mu.
type remote struct {
	id       peer.ID
	out      *link // our stream to the peer; nil if none
	opening  bool  // a goroutine is opening out
	moving   bool  // a goroutine is moving out to a direct connection
	in       *inbound
	patterns map[string]struct{} // the peer's interest, from in
	limit    uint32              // largest payload the peer accepts
}

// inbound is a peer's stream to us.
type inbound struct {
	s    network.Stream
	peer peer.ID
	done chan struct{} // closed when its reader has ended
	// ctx ends with the stream (reset, or the reader ended) and bounds the
	// reader's waits for room in Backpressure subscriptions: a reset
	// reaches a reader that is not reading.
	ctx    context.Context
	cancel context.CancelFunc
	// handedOver: a newer stream of the peer waits for this one to end.
	handedOver atomic.Bool
}

// reset resets the stream and ends a wait of its reader for room.
func (in *inbound) reset() {
	in.cancel()
	_ = in.s.Reset()
}

// retryState delays the next attempt to reach a peer after failures.
type retryState struct {
	failures int
	next     time.Time
}

// Stats counts what a PubSub did since New.
type Stats struct {
	// Published counts the Publish calls that were not refused, including
	// those that returned a NoRoomError (their misses are in Dropped).
	Published uint64 `json:"published"`
	// Sent counts message frames written to peers' streams.
	Sent uint64 `json:"sent"`
	// Delivered counts messages handed to local subscriptions (handlers
	// that returned, or channel sends).
	Delivered uint64 `json:"delivered"`
	// Dropped is DroppedSend + DroppedLocal.
	Dropped uint64 `json:"dropped"`
	// DroppedSend counts messages for a peer that were not sent: its send
	// queue was full, the message was over its limit, or its stream closed.
	DroppedSend uint64 `json:"dropped_send"`
	// DroppedLocal counts messages not delivered to a local subscription
	// because its queue was full.
	DroppedLocal uint64 `json:"dropped_local"`
	// Queued is the number of messages waiting in the send queues to
	// peers now. A publisher that wants no drops can keep it below
	// PeerQueue (times the subscriber nodes) by publishing more slowly, or
	// publish with WaitForRoom.
	Queued int `json:"queued"`
	// FramesReceived counts message frames received from peers, whether
	// or not a local subscription wanted them (interest frames are not
	// counted): a node nobody should send to keeps it at zero.
	FramesReceived uint64 `json:"frames_received"`
	// DroppedUnauthorized counts message frames received from peers that
	// may not publish to their topic (secure realm): they were dropped.
	DroppedUnauthorized uint64 `json:"dropped_unauthorized"`
	// WithheldUnauthorized counts messages not sent to a subscriber node
	// that announced interest but may not subscribe to their topic, and
	// messages not given to this node's own subscriptions once its own
	// subscribe right no longer covers them (secure realm).
	WithheldUnauthorized uint64 `json:"withheld_unauthorized"`
	// Subscriptions is the number of live local subscriptions.
	Subscriptions int `json:"subscriptions"`
	// InterestedPeers is the number of peers that announced at least one
	// pattern to this node.
	InterestedPeers int `json:"interested_peers"`
}

// New starts pubsub for the realm of cfg on h: it serves Protocol(cfg.Realm)
// and starts the loops that provide and look up interest keys in r. bus
// gets the publish and subscribe events; it may be nil. New connects to
// nobody.
func New(h host.Host, r Router, bus *event.Bus, cfg Config) (*PubSub, error) {
	if h == nil {
		return nil, errors.New("pubsub: a host is required")
	}
	if r == nil {
		return nil, errors.New("pubsub: a Router is required")
	}
	cfg, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	ps := &PubSub{
		h:           h,
		router:      r,
		bus:         bus,
		cfg:         cfg,
		log:         cfg.Logger.With("realm", cfg.Realm),
		proto:       Protocol(cfg.Realm),
		self:        h.ID(),
		did:         peerdid.Of(h.ID()),
		readLimit:   uint32(max(cfg.MaxMessageSize+msgMaxOverhead, minFrameLimit)),
		access:      cfg.Access,
		secure:      !access.IsOpen(cfg.Access),
		wakeLookup:  make(chan struct{}, 1),
		wakeProvide: make(chan struct{}, 1),
		routes:      make(map[string]*topicRoute),
		subs:        make(map[*Subscription]struct{}),
		interest:    make(map[string]int),
		provide:     make(map[string]int),
		remotes:     make(map[peer.ID]*remote),
		keys:        make(map[string]*lookupKey),
		backoff:     make(map[peer.ID]*retryState),
	}
	ps.pstats = make(map[string]*patternStat)
	ps.subList.Store(new([]*Subscription))
	ps.hostSub, err = h.EventBus().Subscribe([]any{
		new(p2pevent.EvtPeerIdentificationCompleted),
		new(p2pevent.EvtPeerProtocolsUpdated),
		new(p2pevent.EvtPeerConnectednessChanged),
	}, eventbus.Name("macula-pubsub"), eventbus.BufSize(256))
	if err != nil {
		return nil, fmt.Errorf("pubsub: host events: %w", err)
	}
	ps.ctx, ps.cancel = context.WithCancel(context.Background())
	h.SetStreamHandler(ps.proto, ps.handleStream)
	ps.wg.Add(3)
	go ps.watchPeers()
	go ps.discoveryLoop()
	go ps.provideLoop()
	return ps, nil
}

// Stats returns the counters.
func (ps *PubSub) Stats() Stats {
	ps.mu.Lock()
	st := Stats{Subscriptions: len(ps.subs)}
	for _, r := range ps.remotes {
		if len(r.patterns) > 0 {
			st.InterestedPeers++
		}
		if r.out != nil {
			st.Queued += r.out.queueLen()
		}
	}
	ps.mu.Unlock()
	st.Published = ps.seq.Load()
	st.Sent = ps.sent.Load()
	st.Delivered = ps.delivered.Load()
	st.DroppedSend = ps.droppedSend.Load()
	st.DroppedLocal = ps.droppedLocal.Load()
	st.Dropped = st.DroppedSend + st.DroppedLocal
	st.FramesReceived = ps.frames.Load()
	st.DroppedUnauthorized = ps.refusedIn.Load()
	st.WithheldUnauthorized = ps.refusedOut.Load()
	return st
}

// Close stops pubsub: it stops serving the protocol, lets each send queue
// drain for a moment, closes every stream, ends every subscription (closing
// the channels of SubscribeChan), stops providing interest keys, and waits
// for every goroutine it started, including running handlers: it must not
// be called from a handler. It is safe to call more than once.
func (ps *PubSub) Close() error {
	ps.closeOnce.Do(ps.close)
	return nil
}

func (ps *PubSub) close() {
	ps.mu.Lock()
	ps.closing = true
	ps.closed.Store(true)
	var links []*link
	var ins []*inbound
	for _, r := range ps.remotes {
		if r.out != nil {
			links = append(links, r.out)
		}
		if r.in != nil {
			ins = append(ins, r.in)
		}
	}
	subs := make([]*Subscription, 0, len(ps.subs))
	for s := range ps.subs {
		subs = append(subs, s)
	}
	ps.mu.Unlock()

	// Stop taking work first: no new streams, no peer events; then cancel
	// the loops and the dials and lookups in flight.
	ps.h.RemoveStreamHandler(ps.proto)
	ps.hostSub.Close()
	ps.cancel()
	// Queued messages get closeFlush to go out; then the streams close.
	for _, l := range links {
		l.shutdown(closeFlush)
	}
	for _, in := range ins {
		in.reset()
	}
	for _, s := range subs {
		s.stop()
	}
	ps.wg.Wait()
	ps.log.Debug("pubsub stopped")
}

// watchPeers links to peers as they become able to speak pubsub, and
// forgets peers that disconnect. It must be quick: the host's event bus
// waits for its subscribers.
func (ps *PubSub) watchPeers() {
	defer ps.wg.Done()
	for e := range ps.hostSub.Out() {
		switch e := e.(type) {
		case p2pevent.EvtPeerIdentificationCompleted:
			if slices.Contains(e.Protocols, ps.proto) {
				ps.peerReady(e.Peer)
			}
		case p2pevent.EvtPeerProtocolsUpdated:
			if slices.Contains(e.Added, ps.proto) {
				ps.peerReady(e.Peer)
			}
		case p2pevent.EvtPeerConnectednessChanged:
			if e.Connectedness == network.Connected {
				ps.moveToDirect(e.Peer)
			} else {
				ps.peerGone(e.Peer)
			}
		}
	}
}

// peerReady links to a peer that speaks pubsub if we have interest to
// announce. (A node without subscriptions waits to be linked to, or links
// when it finds subscribers in the DHT.)
func (ps *PubSub) peerReady(p peer.ID) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.closing || ps.noEager || len(ps.interest) == 0 || p == ps.self {
		return
	}
	r := ps.remoteLocked(p)
	ps.openLocked(r, nil, true)
	ps.gcLocked(r)
}

// peerGone drops the streams of a peer whose connections closed.
func (ps *PubSub) peerGone(p peer.ID) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	r := ps.remotes[p]
	if r == nil {
		return
	}
	// The event may arrive after the peer already reconnected; only
	// streams on closed connections go.
	if r.out != nil && r.out.s.Conn().IsClosed() {
		r.out.close()
		r.out = nil
		ps.gen.Add(1)
	}
	if r.in != nil && r.in.s.Conn().IsClosed() {
		r.in.reset()
		ps.dropInboundLocked(r)
	}
	ps.gcLocked(r)
}

// PeerGone stops sending to p, which left the realm or stopped answering,
// at once: its link closes and its interest is forgotten. What p still
// sends on its own stream is read until that stream ends (a leaving node
// flushes its queue before it closes).
func (ps *PubSub) PeerGone(p peer.ID) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	r := ps.remotes[p]
	if r == nil {
		return
	}
	if r.out != nil {
		r.out.close()
		r.out = nil
	}
	if len(r.patterns) > 0 {
		ps.h.ConnManager().UntagPeer(r.id, connTag)
		r.patterns = nil
	}
	ps.gen.Add(1)
	ps.gcLocked(r)
}

// handoverWait bounds how long a peer's new stream waits for its old one
// to be read to the end when the peer moves from a relayed connection to a
// direct one.
const handoverWait = 5 * time.Second

// moveToDirect moves our link to p off a relayed (limited) connection once a
// direct one exists, as hole punching makes it: it opens a new stream on
// the direct connection, queues new messages there, and lets the old link
// send what it holds and close. The peer reads the old stream to its end
// before the new one (see handleStream), so per-publisher order holds.
func (ps *PubSub) moveToDirect(p peer.ID) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.moveToDirectLocked(p)
}

// moveToDirectLocked is moveToDirect with ps.mu held. It is also called
// when a link was just opened on a relayed connection: the open may have
// raced with hole punching (the peer's stream came in over the relay as
// the direct connection was made), and no new connection event follows,
// so the link would stay on the relay until the relay dies, losing what
// was written to it meanwhile (seen in the NAT lab's relay failover).
func (ps *PubSub) moveToDirectLocked(p peer.ID) {
	r := ps.remotes[p]
	if r == nil || r.out == nil || r.moving || ps.closing || !r.out.s.Conn().Stat().Limited {
		return
	}
	var direct network.Conn
	for _, c := range ps.h.Network().ConnsToPeer(p) {
		if !c.Stat().Limited && !c.IsClosed() {
			direct = c
			break
		}
	}
	if direct == nil {
		return
	}
	r.moving = true
	ps.wg.Add(1)
	go func() {
		defer ps.wg.Done()
		ctx, cancel := context.WithTimeout(ps.ctx, openTimeout)
		defer cancel()
		s, err := ps.newStreamOn(ctx, direct)
		ps.mu.Lock()
		defer ps.mu.Unlock()
		r.moving = false
		if err != nil || ps.closing || r.out == nil {
			if s != nil {
				_ = s.Reset()
			}
			if err != nil {
				ps.log.Debug("pubsub: cannot move to the direct connection", "peer", p, "err", err)
			}
			return
		}
		old := r.out
		l := newLink(ps, p, s, r.limit)
		l.buf = appendInterestSetFrames(l.buf, uint32(ps.cfg.MaxMessageSize), ps.patternsLocked())
		r.out = l
		ps.gen.Add(1)
		ps.wg.Add(1)
		go l.writeLoop()
		l.signal()
		old.shutdown(handoverWait)
		ps.log.Debug("pubsub: link moved to a direct connection", "peer", p)
	}()
}

// remoteLocked returns the state of peer p, creating it.
func (ps *PubSub) remoteLocked(p peer.ID) *remote {
	r := ps.remotes[p]
	if r == nil {
		r = &remote{id: p}
		ps.remotes[p] = r
	}
	return r
}

// gcLocked forgets a peer we have nothing going on with.
func (ps *PubSub) gcLocked(r *remote) {
	if r.out == nil && r.in == nil && !r.opening && ps.remotes[r.id] == r {
		delete(ps.remotes, r.id)
	}
}

// dropInboundLocked forgets the peer's inbound stream and its interest.
func (ps *PubSub) dropInboundLocked(r *remote) {
	r.in = nil
	if len(r.patterns) > 0 {
		ps.h.ConnManager().UntagPeer(r.id, connTag)
	}
	r.patterns = nil
	ps.gen.Add(1)
}

// openLocked starts opening our stream to r unless there is one or one is
// being opened. ai, if not nil, is where to dial the peer. Unless force is
// set, a peer that failed recently is left alone until its backoff ends.
func (ps *PubSub) openLocked(r *remote, ai *peer.AddrInfo, force bool) {
	ps.openOnLocked(r, ai, nil, force)
}

// openOnLocked is openLocked on a given connection, when not nil: the one a
// peer just opened its stream on. Left to itself, the host may pick an
// older connection to the same peer that is already dead (a process killed
// and restarted with the same identity), and the link would wait for the
// liveness check to notice.
func (ps *PubSub) openOnLocked(r *remote, ai *peer.AddrInfo, c network.Conn, force bool) {
	if ps.closing || r.out != nil || r.opening || r.id == ps.self {
		return
	}
	if b := ps.backoff[r.id]; b != nil && !force && time.Now().Before(b.next) {
		return
	}
	r.opening = true
	ps.wg.Add(1)
	go ps.openLink(r.id, ai, c)
}

// newStreamOn opens a stream of our protocol on the connection c.
func (ps *PubSub) newStreamOn(ctx context.Context, c network.Conn) (network.Stream, error) {
	s, err := c.NewStream(network.WithAllowLimitedConn(ctx, "macula pubsub"))
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	if err := s.SetProtocol(ps.proto); err != nil {
		_ = s.Reset()
		return nil, err
	}
	if err := msmux.SelectProtoOrFail(ps.proto, s); err != nil {
		_ = s.Reset()
		return nil, err
	}
	_ = s.SetDeadline(time.Time{})
	return s, nil
}

// openLink connects to p if needed, opens our stream to it, and sends our
// interest set first.
func (ps *PubSub) openLink(p peer.ID, ai *peer.AddrInfo, c network.Conn) {
	defer ps.wg.Done()
	ctx, cancel := context.WithTimeout(ps.ctx, openTimeout)
	defer cancel()
	var err error
	var s network.Stream
	if c != nil && !c.IsClosed() {
		s, err = ps.newStreamOn(ctx, c)
		if err != nil {
			s, err = nil, nil // fall back to any connection
		}
	}
	if s == nil && ai != nil && ps.h.Network().Connectedness(p) != network.Connected {
		err = ps.h.Connect(ctx, *ai)
	}
	if s == nil && err == nil {
		s, err = ps.h.NewStream(network.WithAllowLimitedConn(ctx, "macula pubsub"), p, ps.proto)
	}

	ps.mu.Lock()
	defer ps.mu.Unlock()
	r := ps.remoteLocked(p)
	r.opening = false
	if err != nil || ps.closing {
		if s != nil {
			_ = s.Reset()
		}
		if err != nil && !ps.closing {
			ps.failedLocked(p)
			ps.log.Debug("cannot open pubsub stream", "peer", p, "err", err)
		}
		ps.gcLocked(r)
		return
	}
	delete(ps.backoff, p)
	l := newLink(ps, p, s, r.limit)
	l.buf = appendInterestSetFrames(l.buf, uint32(ps.cfg.MaxMessageSize), ps.patternsLocked())
	r.out = l
	ps.gen.Add(1)
	ps.wg.Add(1)
	go l.writeLoop()
	l.signal()
	ps.moveToDirectLocked(p)
}

// failedLocked notes a failure to reach p and sets when to try again:
// InterestRefresh doubled on each failure, up to maxBackoff.
func (ps *PubSub) failedLocked(p peer.ID) {
	b := ps.backoff[p]
	if b == nil {
		if len(ps.backoff) >= maxRoutes {
			ps.pruneBackoffLocked(time.Now())
		}
		b = &retryState{}
		ps.backoff[p] = b
	}
	b.failures++
	d := ps.cfg.InterestRefresh
	for i := 1; i < b.failures && d < maxBackoff; i++ {
		d *= 2
	}
	b.next = time.Now().Add(min(d, maxBackoff))
}

func (ps *PubSub) pruneBackoffLocked(now time.Time) {
	for p, b := range ps.backoff {
		if now.After(b.next.Add(maxBackoff)) {
			delete(ps.backoff, p)
		}
	}
}

// linkDone is called by a link's writer when its stream failed.
func (ps *PubSub) linkDone(l *link, err error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	r := ps.remotes[l.peer]
	if r == nil || r.out != l {
		return
	}
	r.out = nil
	ps.gen.Add(1)
	if ps.closing {
		ps.gcLocked(r)
		return
	}
	ps.log.Debug("pubsub stream to peer failed", "peer", l.peer, "err", err)
	// The peer still talks to us and wants messages, or must learn what we
	// want: open a new stream, after a backoff if this keeps failing.
	// At once, unless the last failure was recent (noting the failure
	// first, then asking without force, skipped the open every time, and
	// nothing asked again).
	if r.in != nil && (len(r.patterns) > 0 || len(ps.patternsLocked()) > 0) {
		b := ps.backoff[r.id]
		due := b == nil || !time.Now().Before(b.next)
		ps.failedLocked(r.id)
		if due {
			ps.openLocked(r, nil, true)
		}
	}
	ps.gcLocked(r)
}

// patternsLocked returns the local interest set.
func (ps *PubSub) patternsLocked() []string {
	out := make([]string, 0, len(ps.interest))
	for p := range ps.interest {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// emit sends an event if there is a bus.
func (ps *PubSub) emit(e event.Event) {
	if ps.bus != nil {
		ps.bus.Emit(e)
	}
}

// MaxMessageSize returns the payload limit of Publish, in bytes.
func (ps *PubSub) MaxMessageSize() int { return ps.cfg.MaxMessageSize }
