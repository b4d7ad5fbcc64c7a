package dht

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	dsq "github.com/ipfs/go-datastore/query"
	dssync "github.com/ipfs/go-datastore/sync"
	kad "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p-kad-dht/amino"
	pb "github.com/libp2p/go-libp2p-kad-dht/pb"
	"github.com/libp2p/go-libp2p-kad-dht/records"
	kb "github.com/libp2p/go-libp2p-kbucket"
	record "github.com/libp2p/go-libp2p-record"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/routing"
	"github.com/multiformats/go-multihash"

	"github.com/macula-io/macula/internal/closed"
)

// Mode says whether the node answers DHT queries.
type Mode string

const (
	// ModeServer answers queries and stores records: for reachable nodes.
	ModeServer Mode = "server"
	// ModeClient only asks: for nodes behind NAT that others cannot dial.
	ModeClient Mode = "client"
	// ModeAuto switches between the two on the host's reachability
	// (EvtLocalReachabilityChanged): a server while it is public, a client
	// otherwise and until it is known, so that a node is never in others'
	// routing tables before it knows that they can dial it.
	ModeAuto Mode = "auto"
)

// Errors returned by the DHT.
var (
	// ErrInvalidKey: an empty key, or one over MaxKeyLen.
	ErrInvalidKey = errors.New("dht: invalid key")
	// ErrClosed: the DHT was closed. It matches net.ErrClosed.
	ErrClosed = closed.Error("dht")
	// ErrPending: a provided key is not announced to the realm yet (no peer
	// to announce it to, the announcement failed, or the caller stopped
	// waiting). The key is provided all the same: the announcement goes on
	// in the background and is retried until it is done.
	ErrPending = errors.New("dht: announcement pending")
)

// MaxKeyLen bounds a key's length in bytes.
const MaxKeyLen = 512

// Config tunes the DHT. The zero value works except for Realm.
type Config struct {
	// Realm is the realm whose DHT this is; it becomes the protocol prefix
	// /macula/<realm>. Required.
	Realm string
	// Mode is server, client or auto. Default: server.
	Mode Mode
	// Validators are the value-record namespaces this DHT accepts, by
	// namespace ("alias" for records under "/alias/..."). Default: none.
	Validators map[string]record.Validator
	// ReprovideInterval is how often provided keys are announced again.
	// Default: 12 hours (kad-dht keeps provider records for 48).
	ReprovideInterval time.Duration
	// MaxTrackedKeys bounds how many provider keys stored for other peers
	// are counted in Stats. Default: 100000.
	MaxTrackedKeys int
	// Gone reports the peers the node knows are gone: they said goodbye,
	// or stopped answering. Queries never dial them, and the routing table
	// does not take them back until Gone says otherwise. Nil: none.
	Gone func(peer.ID) bool
	// DialTimeout bounds a query's dial of one peer. A routing-table entry
	// that cannot be reached costs a query at most this long, and is then
	// evicted, not retried by the next query. Default: 3s.
	DialTimeout time.Duration
	// AnnounceTimeout bounds one announcement of a provided key (finding
	// the closest peers and storing the record with them). Default: 30s.
	AnnounceTimeout time.Duration
	// RetryInterval is the wait before a failed announcement is tried
	// again; it doubles on each failure up to a minute. Default: 2s.
	RetryInterval time.Duration
	// RequestTimeout is the least time a request waits for a peer's answer
	// (see sender.go): the wait is ten of the peer's round-trip times when
	// that is longer, at most 10s, and 2s while its round-trip time is not
	// known. A peer that does not answer in time fails the request (the
	// query goes on without it) and is suspect. Default: 500ms.
	RequestTimeout time.Duration
	// Unresponsive, if set, is told when a peer becomes suspect: it left a
	// request unanswered. Queries skip it until Responsive(p), until it is
	// gone, or for SuspectFor. The node pings it at once. It must not block.
	Unresponsive func(peer.ID)
	// SuspectFor is how long a suspect peer is skipped by queries unless
	// Responsive ends it first. Default: 10s.
	SuspectFor time.Duration
	// Logger gets the DHT's own log lines. Default: slog.Default().
	Logger *slog.Logger
}

// Stats is a snapshot of the DHT's state.
type Stats struct {
	// Mode is the mode the DHT runs in now.
	Mode Mode `json:"mode"`
	// Nodes is the number of peers in the routing table.
	Nodes int `json:"nodes"`
	// Buckets is the number of non-empty k-buckets.
	Buckets int `json:"buckets"`
	// ProviderKeys is the number of keys this node holds provider records
	// for (its own and other peers'); ValueRecords the value records it stores.
	ProviderKeys int `json:"provider_keys"`
	ValueRecords int `json:"value_records"`
	// StoredKeys is ProviderKeys + ValueRecords.
	StoredKeys int `json:"stored_keys"`
	// Providing is the number of keys this node itself provides.
	Providing int `json:"providing"`
}

// DHT is a realm's Kademlia DHT on one host.
type DHT struct {
	kad    *kad.IpfsDHT
	host   host.Host
	rt     atomic.Pointer[kb.RoutingTable] // kad's, once kad.New returned (the sender may run before)
	store  ds.Batching
	realm  string
	cfg    Config
	log    *slog.Logger
	ctx    context.Context // lifetime; cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// wakeRetry is signalled (never blocking) when an announcement failed,
	// so the retry loop schedules it.
	wakeRetry chan struct{}
	// evict takes the peers that entered the routing table while gone or
	// suspect, for retryLoop to take out again (bounded; see New).
	evict chan peer.ID

	// mu guards the fields below it.
	mu        sync.Mutex
	providing map[string]*announcement // keys this node provides
	seen      map[string]time.Time     // provider keys other peers stored here, by multihash bytes
	closed    bool

	// smu guards suspects and expiry. A leaf: the query filters take it.
	smu      sync.Mutex
	suspects map[peer.ID]suspicion
	// expiry ends the suspicions that no answer ended (expireSuspects);
	// armed while there are suspects; nil once closed.
	expiry      *time.Timer
	expiryArmed bool
}

// suspicion is why and until when a peer is skipped by queries.
type suspicion struct {
	until time.Time
	inRT  bool // it was in the routing table when it became suspect
}

// maxSuspects bounds the suspects kept; past it, expired ones are dropped,
// then all (they are only skipped for a while).
const maxSuspects = 4096

// announcement is where a provided key's announcement to the realm stands.
// Guarded by DHT.mu.
type announcement struct {
	done     bool          // the last attempt succeeded
	err      error         // why the last attempt failed
	running  chan struct{} // closed when the attempt in flight ends; nil when none runs
	failures int           // attempts failed in a row
	retryAt  time.Time     // when to try again after a failure
}

// ProtocolPrefix returns the DHT protocol prefix of a realm.
func ProtocolPrefix(realm string) protocol.ID {
	return protocol.ID("/macula/" + realm)
}

// New starts a DHT on h. It does not connect to anyone: the node dials its
// bootstrap peers and the DHT learns of them through the host.
func New(h host.Host, cfg Config) (*DHT, error) {
	if cfg.Realm == "" {
		return nil, errors.New("dht: Config.Realm is required")
	}
	if cfg.Mode == "" {
		cfg.Mode = ModeServer
	}
	if cfg.ReprovideInterval <= 0 {
		cfg.ReprovideInterval = 12 * time.Hour
	}
	if cfg.MaxTrackedKeys <= 0 {
		cfg.MaxTrackedKeys = 100000
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 3 * time.Second
	}
	if cfg.AnnounceTimeout <= 0 {
		cfg.AnnounceTimeout = 30 * time.Second
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = 2 * time.Second
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 500 * time.Millisecond
	}
	if cfg.SuspectFor <= 0 {
		cfg.SuspectFor = 10 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	var mode kad.ModeOpt
	switch cfg.Mode {
	case ModeServer:
		mode = kad.ModeServer
	case ModeClient:
		mode = kad.ModeClient
	case ModeAuto:
		mode = kad.ModeAuto
	default:
		return nil, fmt.Errorf("dht: Config.Mode %q: want server, client or auto", cfg.Mode)
	}
	d := &DHT{
		host:      h,
		suspects:  make(map[peer.ID]suspicion),
		store:     dssync.MutexWrap(ds.NewMapDatastore()),
		realm:     cfg.Realm,
		cfg:       cfg,
		log:       log,
		providing: make(map[string]*announcement),
		seen:      make(map[string]time.Time),
		wakeRetry: make(chan struct{}, 1),
		evict:     make(chan peer.ID, 64),
	}
	opts := []kad.Option{
		kad.ProtocolPrefix(ProtocolPrefix(cfg.Realm)),
		kad.Mode(mode),
		kad.Datastore(d.store),
		kad.OnRequestHook(d.onRequest),
		kad.WithCustomMessageSender(func(h host.Host, protos []protocol.ID) pb.MessageSenderWithDisconnect {
			return &sender{d: d, h: h, protos: protos}
		}),
		kad.QueryFilter(func(_ any, ai peer.AddrInfo) bool { return d.askable(ai.ID) }),
		kad.RoutingTableFilter(func(_ any, p peer.ID) bool { return d.askable(p) }),
		kad.Concurrency(Concurrency),
		kad.RoutingTableRefreshPeriod(RefreshPeriod),
	}
	for ns, v := range cfg.Validators {
		opts = append(opts, kad.NamespacedValidator(ns, v))
	}
	k, err := kad.New(h, opts...)
	if err != nil {
		return nil, fmt.Errorf("dht: %w", err)
	}
	d.kad = k
	rt := k.RoutingTable()
	// kad-dht checks RoutingTableFilter when it finds a peer, then asks the
	// peer a query and adds it when the answer comes: a peer that left or
	// turned suspect meanwhile would be back in the table. The hook runs
	// under the table's lock, so the removal is left to retryLoop. (Set
	// right after kad.New: kad-dht adds a peer only once it answered a
	// query, a round trip later.)
	added := rt.PeerAdded
	rt.PeerAdded = func(p peer.ID) {
		added(p)
		if !d.askable(p) {
			select {
			case d.evict <- p:
			default: // full: a burst of departures; ForgetPeer or the next refresh takes it out
			}
		}
	}
	d.rt.Store(rt)
	joinLooksUpSelf(rt)
	d.ctx, d.cancel = context.WithCancel(context.Background())
	d.smu.Lock()
	d.expiry = time.AfterFunc(time.Hour, d.expireSuspects)
	d.expiry.Stop()
	d.smu.Unlock()
	d.wg.Add(2)
	go d.reprovideLoop()
	go d.retryLoop()
	return d, nil
}

// bound gives ctx the DHT's per-peer dial limit: the swarm gives up on
// the peer after DialTimeout without cancelling the query, so kad-dht counts
// the peer as unreachable and drops it from its routing table.
func (d *DHT) bound(ctx context.Context) context.Context {
	return network.WithDialPeerTimeout(ctx, d.cfg.DialTimeout)
}

// ForgetPeer drops p from the routing table now: the node knows it is gone.
// (Gone keeps it from coming back through a query.)
func (d *DHT) ForgetPeer(p peer.ID) {
	d.kad.RoutingTable().RemovePeer(p)
	d.smu.Lock()
	delete(d.suspects, p)
	d.smu.Unlock()
}

// askable reports whether queries may ask p and the routing table may
// hold it: it is neither gone nor suspect.
func (d *DHT) askable(p peer.ID) bool {
	if d.cfg.Gone != nil && d.cfg.Gone(p) {
		return false
	}
	return !d.suspected(p)
}

// suspected reports whether p is suspect: it left a request unanswered,
// and has not answered a ping since.
func (d *DHT) suspected(p peer.ID) bool {
	d.smu.Lock()
	defer d.smu.Unlock()
	if len(d.suspects) == 0 {
		return false
	}
	s, ok := d.suspects[p]
	return ok && time.Now().Before(s.until)
}

// expireSuspects ends the suspicions that expired (SuspectFor passed with
// no answer to a ping, or nobody pinging): the peers are asked again, and
// those that were in the routing table are back in it while connected
// (kad-dht would take them back only when they next answer a query or
// identify again).
func (d *DHT) expireSuspects() {
	now := time.Now()
	var back []peer.ID
	d.smu.Lock()
	if d.expiry == nil {
		d.smu.Unlock()
		return
	}
	next := time.Duration(0)
	for p, s := range d.suspects {
		if left := s.until.Sub(now); left > 0 {
			if next == 0 || left < next {
				next = left
			}
			continue
		}
		delete(d.suspects, p)
		if s.inRT {
			back = append(back, p)
		}
	}
	d.expiryArmed = next > 0
	if d.expiryArmed {
		d.expiry.Reset(next)
	}
	d.smu.Unlock()
	for _, p := range back {
		d.readmit(p)
	}
}

// readmit puts p, no longer suspect, back into the routing table when it is
// connected and not gone.
func (d *DHT) readmit(p peer.ID) {
	if d.ctx.Err() != nil || d.host.Network().Connectedness(p) != network.Connected || !d.askable(p) {
		return
	}
	if _, err := d.kad.RoutingTable().TryAddPeer(p, true, true); err != nil {
		d.log.Debug("a peer no longer suspect is not back in the routing table", "peer", p, "err", err)
	}
}

// unanswered makes p suspect: a request to it went unanswered for bound.
// It leaves the routing table (queries seed from it unfiltered) until
// Responsive.
func (d *DHT) unanswered(p peer.ID, bound time.Duration) {
	if d.cfg.Gone != nil && d.cfg.Gone(p) {
		return // known already
	}
	rt := d.rt.Load()
	inRT := rt != nil && rt.Find(p) != ""
	now := time.Now()
	d.smu.Lock()
	s, was := d.suspects[p]
	was = was && now.Before(s.until)
	if !was && len(d.suspects) >= maxSuspects {
		for q, o := range d.suspects {
			if now.After(o.until) {
				delete(d.suspects, q)
			}
		}
		if len(d.suspects) >= maxSuspects {
			clear(d.suspects)
		}
	}
	d.suspects[p] = suspicion{until: now.Add(d.cfg.SuspectFor), inRT: inRT || (was && s.inRT)}
	if d.expiry != nil && !d.expiryArmed {
		d.expiryArmed = true
		d.expiry.Reset(d.cfg.SuspectFor)
	}
	d.smu.Unlock()
	if rt != nil {
		rt.RemovePeer(p)
	}
	if was {
		return
	}
	d.log.Debug("peer left a DHT request unanswered; suspect", "peer", p, "bound", bound)
	if d.cfg.Unresponsive != nil {
		d.cfg.Unresponsive(p)
	}
}

// Responsive tells the DHT that p, suspect since it left a request
// unanswered, answers again (a ping got through): queries ask it again,
// and it is back in the routing table if it was there. For a peer that is
// not suspect it does nothing.
func (d *DHT) Responsive(p peer.ID) {
	d.smu.Lock()
	s, ok := d.suspects[p]
	delete(d.suspects, p)
	d.smu.Unlock()
	if ok && s.inRT {
		d.readmit(p)
	}
}

// onRequest counts the keys other peers ask us to hold provider records for,
// so that Stats can say how many keys this node stores. It runs inside the
// DHT's message handler, so it only touches a map.
func (d *DHT) onRequest(_ context.Context, _ network.Stream, req *pb.Message) {
	if req.GetType() != pb.Message_ADD_PROVIDER || len(req.GetKey()) == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.seen[string(req.GetKey())]; !ok && len(d.seen) >= d.cfg.MaxTrackedKeys {
		return
	}
	d.seen[string(req.GetKey())] = time.Now()
}

// Kad returns the underlying kad-dht, for services that route through it.
func (d *DHT) Kad() *kad.IpfsDHT { return d.kad }

// KeyCID returns the CID under which key is provided in realm.
func KeyCID(realm, key string) cid.Cid {
	sum := sha256.Sum256([]byte("macula:" + realm + ":" + key))
	mh, _ := multihash.Encode(sum[:], multihash.SHA2_256)
	return cid.NewCidV1(cid.Raw, mh)
}

func checkKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty", ErrInvalidKey)
	}
	if len(key) > MaxKeyLen {
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrInvalidKey, len(key), MaxKeyLen)
	}
	return nil
}

// Provide makes this node a provider of key from now on and announces it
// to the peers closest to the key; the announcement is repeated every
// ReprovideInterval until StopProviding. It returns nil once the
// announcement is done. When it cannot be done yet (no peer in the routing
// table, a failure, or ctx ended first) it returns an error wrapping
// ErrPending and the cause: the key is provided all the same, and the
// announcement goes on in the background, retried until it is done
// (Announced reports it).
func (d *DHT) Provide(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return ErrClosed
	}
	a := d.providing[key]
	if a == nil {
		a = &announcement{}
		d.providing[key] = a
	}
	running := d.startLocked(key, a)
	d.mu.Unlock()
	select {
	case <-running:
	case <-ctx.Done():
		return fmt.Errorf("%w: %s: %w", ErrPending, key, ctx.Err())
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if a.done {
		return nil
	}
	if a.err == nil {
		return fmt.Errorf("%w: %s", ErrPending, key) // withdrawn meanwhile
	}
	return fmt.Errorf("%w: %s: %w", ErrPending, key, a.err)
}

// Announced reports whether key is provided and its last announcement to
// the realm succeeded.
func (d *DHT) Announced(key string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	a := d.providing[key]
	return a != nil && a.done
}

// startLocked starts an announcement of key unless one runs, and returns
// the channel that closes when it ends.
func (d *DHT) startLocked(key string, a *announcement) <-chan struct{} {
	if a.running != nil {
		return a.running
	}
	running := make(chan struct{})
	a.running = running
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		ctx, cancel := context.WithTimeout(d.ctx, d.cfg.AnnounceTimeout)
		err := d.announce(ctx, key)
		cancel()
		d.mu.Lock()
		a.running = nil
		a.done, a.err = err == nil, err
		if err != nil {
			a.failures++
			a.retryAt = time.Now().Add(d.retryWait(a.failures))
		} else {
			a.failures = 0
		}
		failures := a.failures
		d.mu.Unlock()
		close(running)
		if err != nil && d.ctx.Err() == nil {
			d.log.Debug("provided key not announced yet; retrying", "key", key, "failures", failures, "err", err)
			select {
			case d.wakeRetry <- struct{}{}:
			default:
			}
		}
	}()
	return running
}

// errNoPeers: the routing table is empty, so the record is only local.
var errNoPeers = errors.New("no peer in the routing table to announce it to")

func (d *DHT) announce(ctx context.Context, key string) error {
	if d.kad.RoutingTable().Size() == 0 {
		// Stored locally (Lookup here finds it); announced once a peer
		// comes (a retry, or Reprovide when the node joins).
		_ = d.kad.Provide(ctx, KeyCID(d.realm, key), false)
		return errNoPeers
	}
	if err := d.kad.Provide(d.bound(ctx), KeyCID(d.realm, key), true); err != nil {
		return fmt.Errorf("dht: provide %q: %w", key, err)
	}
	return nil
}

// retryWait is the wait before retry number failures (1-based):
// RetryInterval doubled per failure, at most a minute.
func (d *DHT) retryWait(failures int) time.Duration {
	w := d.cfg.RetryInterval
	for i := 1; i < failures && w < time.Minute; i++ {
		w *= 2
	}
	return min(w, time.Minute)
}

// retryLoop starts the announcements that failed when their wait is over.
func (d *DHT) retryLoop() {
	defer d.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-t.C:
		case <-d.wakeRetry:
		case p := <-d.evict:
			if !d.askable(p) {
				d.kad.RoutingTable().RemovePeer(p)
			}
			continue
		}
		now := time.Now()
		next := now.Add(time.Hour)
		d.mu.Lock()
		for k, a := range d.providing {
			if a.done || a.running != nil {
				continue
			}
			if !now.Before(a.retryAt) {
				d.startLocked(k, a)
			} else if a.retryAt.Before(next) {
				next = a.retryAt
			}
		}
		d.mu.Unlock()
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(next.Sub(now))
	}
}

// StopProviding stops re-announcing key. Records already stored by other
// peers stay until they expire; callers that need a faster withdrawal must
// say so in their own protocol.
func (d *DHT) StopProviding(key string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if a := d.providing[key]; a != nil {
		a.done, a.err = false, nil
	}
	delete(d.providing, key)
}

// Providing returns the keys this node provides, sorted.
func (d *DHT) Providing() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	keys := make([]string, 0, len(d.providing))
	for k := range d.providing {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Reprovide announces every provided key again now, for example after the
// routing table went from empty to not empty, and waits for the
// announcements (or ctx). Keys whose announcement fails are retried later.
func (d *DHT) Reprovide(ctx context.Context) {
	d.mu.Lock()
	var running []<-chan struct{}
	if !d.closed {
		for k, a := range d.providing {
			running = append(running, d.startLocked(k, a))
		}
	}
	d.mu.Unlock()
	for _, r := range running {
		select {
		case <-r:
		case <-ctx.Done():
			return
		}
	}
}

func (d *DHT) reprovideLoop() {
	defer d.wg.Done()
	t := time.NewTicker(d.cfg.ReprovideInterval)
	defer t.Stop()
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-t.C:
			d.Reprovide(d.ctx)
			d.expireSeen()
		}
	}
}

func (d *DHT) expireSeen() {
	cutoff := time.Now().Add(-amino.DefaultProvideValidity)
	d.mu.Lock()
	defer d.mu.Unlock()
	for k, t := range d.seen {
		if t.Before(cutoff) {
			delete(d.seen, k)
		}
	}
}

// Concurrency is how many requests a query keeps in flight (Kademlia's
// alpha): Kademlia's own 3, not kad-dht's default of 10, which is made for
// the public IPFS network, where many of the peers a query asks never
// answer. A realm's peers are its members, and one that leaves a request
// unanswered is suspect at once (sender.go), so more requests in flight
// buy little but load: every request wakes a peer. Measured, back to back
// (docs/benchmarks.md): in a 50-node realm on one 2-core machine, lookups
// p50 / p99 8.8 / 54.7 ms with 3 against 21.5 / 114.9 ms with 10, and
// repeated lookups 5.8 / 30.5 against 19.6 / 160.0 ms. What it costs is
// modelled (scripts/scalemodel, docs/reliability.md): across sites a first
// provider comes later, at 10,000 nodes 77 instead of 46 ms (p50), for a
// third of the requests (5.2 instead of 15.3); a provide takes 44 messages
// instead of 58, a refresh 326 requests instead of 454.
const Concurrency = 3

// RefreshPeriod is how often kad-dht refreshes the routing table: a query
// for the node's own key and one for a random key of every common-prefix
// length, each of which asks the peers closest to its key, connecting to
// them. kad-dht's default is 10 minutes; in a 50-node realm every refresh
// had each node connect again to 20-40 peers it had trimmed (TLS and realm
// handshakes both ways, the connections' memory), an idle cost that grows
// with the routing table. A realm keeps its table fresh by other means: the
// membership tells the DHT of every departure (ForgetPeer) within seconds,
// a peer that leaves a request unanswered is suspect at once (sender.go),
// and a node that joins meets the peers closest to it with its own
// queries, which put it in their tables. So an hour, as a backstop for
// buckets that thinned; kad-dht still refreshes when the table holds 10
// peers or fewer (its fixLowPeers, on a removal and every few minutes).
const RefreshPeriod = time.Hour

// joinLooksUpSelf makes the refreshes of a node's join (kad-dht's own, as
// its first peers arrive, and the node's after a bootstrap peer answers)
// look up the node's own key only, not also a random key of every
// common-prefix length: it marks every length refreshed now, and kad-dht
// refreshes a length when RefreshPeriod has passed since.
//
// The lookup of its own key is the join that Kademlia needs: the node
// meets the peers closest to it, which put it in their tables, so that
// every lookup of a key near it finds it. The others filled the far
// buckets at once, and in a realm of 50 they had a joining node connect to
// nearly every other (31 peers after the lookups of its own key and its
// alias, 50 after those of two lengths; at 10,000 nodes a dozen lookups of
// 20-odd peers each): handshakes both ways, and memory that outlived the
// connections by minutes (see docs/benchmarks.md). A node's far buckets fill
// as it works instead (each lookup it makes adds the peers that answered
// it, and the peers' own lookups add it to theirs), and by the first
// periodic refresh.
func joinLooksUpSelf(rt *kb.RoutingTable) {
	now := time.Now()
	for cpl := range uint(kb.PeerIDPreimageMaxCpl + 1) {
		if key, err := rt.GenRandomKey(cpl); err == nil {
			rt.ResetCplRefreshedAtForID(key, now)
		}
	}
}

// LookupSettle bounds how long a Lookup with a limit waits for more
// providers after the last one it found (or, when the node's own store
// named them, after the first peer's answer), before it returns what it
// has.
// A key's provider records are held by the peers closest to it, each of
// which got every provider's announcement, so the first answer that names
// providers nearly always names them all; waiting for the query to visit
// every one of the closest peers (as kad-dht does) made a lookup in a
// 50-node realm take several round trips more than finding the providers
// did. Within that bound the wait ends as soon as settleAnswers peers have
// answered since the last new provider: what they knew came with their
// answers.
const LookupSettle = 20 * time.Millisecond

// settleAnswers is how many peers' answers since the last new provider end
// a Lookup with a limit: the answer that brought it (kad-dht reports a
// peer's answer after handing over its providers) and two more that
// brought nothing new. A fixed wait of LookupSettle was most of a lookup in
// a calm realm (20 of its 25-35 ms); the answers to a query's concurrent
// requests come back within a round trip or so of each other. It counts
// answers, not time, because time did not tell: a wait as long as the
// first find took ended 2 ms after a node's own store named two providers
// of three, before any peer could name the third (a node's store need not
// hold every announcement).
const settleAnswers = 3

// Lookup returns up to limit providers of key (all it finds when limit <= 0)
// with their addresses. It asks the local store and the network until ctx
// ends or enough are found; with a limit, also once settleAnswers peers
// answered since the last new provider, or LookupSettle passed since it
// (since the first answer, for providers from the node's own store).
// No providers is not an error: the slice is empty.
func (d *DHT) Lookup(ctx context.Context, key string, limit int) ([]peer.AddrInfo, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	if d.ctx.Err() != nil {
		return nil, ErrClosed
	}
	count := limit
	if count <= 0 {
		count = 0 // kad: 0 means no limit
	}
	qctx, stop := context.WithCancel(ctx)
	defer stop()
	var events <-chan *routing.QueryEvent
	kctx := qctx
	if limit > 0 {
		// kad-dht blocks on a subscriber's channel until it reads or
		// qctx ends: the loop below drains it.
		kctx, events = routing.RegisterForQueryEvents(qctx)
	}
	found := d.kad.FindProvidersAsync(d.bound(kctx), KeyCID(d.realm, key), count)
	var settle <-chan time.Time
	answers := 0                // peers' answers since the last new provider
	heard, done := false, false // a peer answered; the query was stopped
	var out []peer.AddrInfo
	for found != nil {
		select {
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if ev.Type != routing.PeerResponse || done {
				continue
			}
			heard = true
			if len(out) == 0 {
				continue
			}
			if settle == nil {
				// The first answer since providers are known (those of
				// the node's own store, or this answer's): the bound
				// starts now, not at the store's answer, which may lack
				// what only peers know.
				settle = time.After(LookupSettle)
			}
			if answers++; answers >= settleAnswers {
				stop() // the query ends; its channel closes
				settle, done = nil, true
			}
		case ai, ok := <-found:
			if !ok {
				found = nil
				continue
			}
			if ai.ID == d.kad.PeerID() {
				ai.Addrs = d.kad.Host().Addrs()
			} else if len(ai.Addrs) == 0 {
				ai.Addrs = d.kad.Host().Peerstore().Addrs(ai.ID)
			}
			out = append(out, ai)
			if limit > 0 && !done {
				answers = 0
				if heard {
					settle = time.After(LookupSettle)
				}
			}
		case <-settle:
			stop() // the query ends; its channel closes
			settle, done = nil, true
		}
	}
	if len(out) == 0 && ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return nil, ctx.Err()
	}
	return out, nil
}

// PutValue stores a value record under "/<namespace>/<key>"; its namespace
// must have a validator in Config.
func (d *DHT) PutValue(ctx context.Context, key string, value []byte) error {
	return d.kad.PutValue(d.bound(ctx), key, value)
}

// GetValue returns the best value record for key, as its validator selects.
func (d *DHT) GetValue(ctx context.Context, key string) ([]byte, error) {
	return d.kad.GetValue(d.bound(ctx), key)
}

// Bootstrap refreshes the routing table now.
func (d *DHT) Bootstrap(ctx context.Context) error { return d.kad.Bootstrap(d.bound(ctx)) }

// RefreshRoutingTable asks the DHT to refresh its routing table and returns
// when the refresh is done.
func (d *DHT) RefreshRoutingTable(ctx context.Context) error {
	select {
	case err := <-d.kad.RefreshRoutingTable():
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// RoutingTablePeers returns the peers in the routing table.
func (d *DHT) RoutingTablePeers() []peer.ID { return d.kad.RoutingTable().ListPeers() }

// Stats returns a snapshot of the routing table and the stored records.
func (d *DHT) Stats(ctx context.Context) (Stats, error) {
	rt := d.kad.RoutingTable()
	s := Stats{Nodes: rt.Size()}
	// In auto mode kad-dht switches by serving its protocol or not.
	s.Mode = ModeClient
	if slices.Contains(d.kad.Host().Mux().Protocols(), ProtocolPrefix(d.realm)+"/kad/1.0.0") {
		s.Mode = ModeServer
	}
	for cpl := uint(0); cpl <= 256; cpl++ {
		if rt.NPeersForCpl(cpl) > 0 {
			s.Buckets++
		}
	}
	d.mu.Lock()
	s.Providing = len(d.providing)
	keys := make([][]byte, 0, len(d.seen)+len(d.providing))
	for k := range d.seen {
		keys = append(keys, []byte(k))
	}
	for k := range d.providing {
		keys = append(keys, KeyCID(d.realm, k).Hash())
	}
	d.mu.Unlock()
	uniq := make(map[string]struct{}, len(keys))
	for _, k := range keys {
		if _, dup := uniq[string(k)]; dup {
			continue
		}
		uniq[string(k)] = struct{}{}
		provs, err := d.kad.ProviderStore().GetProviders(ctx, k)
		if err != nil {
			return s, fmt.Errorf("dht: stats: %w", err)
		}
		if len(provs) > 0 {
			s.ProviderKeys++
		}
	}
	res, err := d.store.Query(ctx, dsq.Query{KeysOnly: true})
	if err != nil {
		return s, fmt.Errorf("dht: stats: %w", err)
	}
	defer res.Close()
	for e := range res.Next() {
		if e.Error != nil {
			return s, fmt.Errorf("dht: stats: %w", e.Error)
		}
		if !strings.HasPrefix(e.Key, records.ProvidersKeyPrefix) {
			s.ValueRecords++
		}
	}
	s.StoredKeys = s.ProviderKeys + s.ValueRecords
	return s, nil
}

// Close stops the DHT and its reprovide loop. It does not close the host.
func (d *DHT) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.mu.Unlock()
	d.smu.Lock()
	if d.expiry != nil {
		d.expiry.Stop()
		d.expiry = nil
	}
	d.smu.Unlock()
	d.cancel()
	d.wg.Wait()
	return d.kad.Close()
}
