package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/macula-io/macula/access"
	"github.com/macula-io/macula/ucan"
)

// Protocol returns the registry's protocol ID in a realm.
func Protocol(realmName string) protocol.ID {
	return protocol.ID("/macula/" + realmName + "/registry/1.0.0")
}

// Registry is a node's part of the realm's registry: names and groups of
// processes, replicated between the nodes of the realm. Its methods are
// safe for concurrent use. See the package doc.
type Registry struct {
	// Set in New, read-only after.
	cfg     Config
	log     logger
	keys    keyRules
	h       host.Host
	self    peer.ID
	proto   protocol.ID
	members Membership // nil: the links are the membership
	access  access.Policy
	secure  bool
	clock   clock
	def     *cluster // the default cluster
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	isClosed atomic.Bool
	nextProc atomic.Uint64
	// localEntries counts this node's own entries, across clusters.
	localEntries atomic.Int64

	stats counters

	// mu guards the fields below it.
	mu       sync.RWMutex
	closed   bool
	clusters map[string]*cluster // connected clusters, "" included
	procs    map[uint64]*Process
	repl     replication
}

// counters are the Stats that are counted as they happen.
type counters struct {
	conflicts, droppedEvents, droppedMailbox, droppedSend    atomic.Uint64
	droppedUnauthorized, droppedRelayed, droppedOverLimit    atomic.Uint64
	badFrames, framesSent, framesReceived, sentMessages      atomic.Uint64
	receivedMessages, deltasApplied, snapshotsApplied, gaps  atomic.Uint64
	deliveredRemote, noProcess, refusedDispatch, resyncAsked atomic.Uint64
}

// New starts the registry of the node whose libp2p host is h: it serves
// Protocol(cfg.Realm), links to the peers that speak it, and replicates
// this node's entries to them. members tells which nodes of the realm are
// alive and in which clusters; nil means that a node's entries live as
// long as this node's link to it (enough for a realm where every node is
// connected to every other). New connects to nobody.
func New(h host.Host, members Membership, cfg Config) (*Registry, error) {
	if h == nil {
		return nil, errors.New("registry: a host is required")
	}
	cfg, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	r := &Registry{
		cfg:      cfg,
		keys:     newKeyRules(cfg.Realm),
		h:        h,
		self:     h.ID(),
		proto:    Protocol(cfg.Realm),
		members:  members,
		access:   cfg.Access,
		secure:   !access.IsOpen(cfg.Access),
		clusters: make(map[string]*cluster),
		procs:    make(map[uint64]*Process),
	}
	r.log.l = cfg.Logger.With("realm", cfg.Realm)
	r.log.set(cfg.LogLevel)
	r.clock.now = cfg.now
	if r.clock.now == nil {
		r.clock.now = time.Now
	}
	r.clock.maxDrift = cfg.MaxClockDrift
	// Process numbers start at the start time in nanoseconds, so that an
	// address of a previous run of this node does not name a process of
	// this one.
	r.nextProc.Store(uint64(time.Now().UnixNano()))
	r.def = newCluster(r, "", uint64(r.clock.read()))
	r.clusters[""] = r.def
	r.ctx, r.cancel = context.WithCancel(context.Background())
	if err := r.startReplication(); err != nil {
		r.cancel()
		return nil, err
	}
	return r, nil
}

// Close stops the registry: it stops serving the protocol, ends every
// local process (their entries go, with reason registry_closed), closes
// every monitor, and waits for its goroutines. Every later call fails with
// ErrClosed. Safe to call more than once.
func (r *Registry) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.isClosed.Store(true)
	procs := make([]*Process, 0, len(r.procs))
	for _, p := range r.procs {
		procs = append(procs, p)
	}
	clusters := r.clusterList()
	r.mu.Unlock()

	// Stop taking work from peers first, then end the local processes
	// (their removals are queued to the links, which drain for a moment
	// before they close), then the monitors.
	r.stopServing()
	for _, p := range procs {
		p.stop(ErrClosed)
		r.endProcess(p, ReasonRegistryClosed, "registry closed")
	}
	r.stopReplication()
	r.cancel()
	r.wg.Wait()
	for _, c := range clusters {
		c.mon.endAll()
	}
	r.log.info("registry stopped")
	return nil
}

// clusterList returns the connected clusters. The caller holds mu.
func (r *Registry) clusterList() []*cluster {
	out := make([]*cluster, 0, len(r.clusters))
	for _, c := range r.clusters {
		out = append(out, c)
	}
	return out
}

// enter counts a goroutine that Close waits for; false once closing.
func (r *Registry) enter() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		return false
	}
	r.wg.Add(1)
	return true
}

// SetLogLevel changes the registry's log level at run time.
func (r *Registry) SetLogLevel(l LogLevel) error {
	switch l {
	case LogOff, LogInfo, LogVerbose:
		r.log.set(l)
		return nil
	}
	return fmt.Errorf("registry: unknown log level %d", l)
}

// LogLevel returns the registry's log level.
func (r *Registry) LogLevel() LogLevel { return r.log.get() }

// Realm returns the registry's realm.
func (r *Registry) Realm() string { return r.cfg.Realm }

// Self returns this node's peer ID.
func (r *Registry) Self() peer.ID { return r.self }

// --- options ------------------------------------------------------------

// Option modifies one call: InCluster, Limit.
type Option struct {
	cluster    string
	clusterSet bool
	limit      int
}

// InCluster makes a call act on the named cluster (which this node must
// have connected to) instead of the default one.
func InCluster(name string) Option { return Option{cluster: name, clusterSet: true} }

// Limit caps the results of Members, Names and Groups (0: no cap).
func Limit(n int) Option { return Option{limit: n} }

type options struct {
	cluster string
	limit   int
}

func merge(opts []Option) options {
	var o options
	for _, x := range opts {
		if x.clusterSet {
			o.cluster = x.cluster
		}
		if x.limit > 0 {
			o.limit = x.limit
		}
	}
	return o
}

// clusterFor returns the connected cluster of that name.
func (r *Registry) clusterFor(name string) (*cluster, error) {
	if name == "" {
		if r.isClosed.Load() {
			return nil, ErrClosed
		}
		return r.def, nil
	}
	r.mu.RLock()
	c, closed := r.clusters[name], r.closed
	r.mu.RUnlock()
	switch {
	case closed:
		return nil, ErrClosed
	case c != nil:
		return c, nil
	}
	if err := checkCluster(name); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("%w: %s (call Connect first)", ErrNotConnected, quote(name))
}

// --- processes ----------------------------------------------------------

// Spawn starts a local process. It lives until ctx is done, its Close is
// called, its handler panics, or the registry closes; then its names and
// memberships are removed (reason process_ended, with the cause in the
// detail) as one batch.
func (r *Registry) Spawn(ctx context.Context, pc ProcessConfig) (*Process, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	size := pc.Mailbox
	switch {
	case size == 0:
		size = r.cfg.Mailbox
	case size < 0:
		return nil, fmt.Errorf("registry: ProcessConfig.Mailbox is %d; it must be positive (0 means %d)", size, r.cfg.Mailbox)
	}
	pctx, stop := context.WithCancelCause(ctx)
	p := &Process{
		r: r, addr: Addr{Node: r.self, ID: r.nextProc.Add(1)}, hasHandler: pc.Handler != nil,
		ctx: pctx, stop: stop, done: make(chan struct{}), mbox: make(chan Message, size),
	}
	r.mu.Lock()
	switch {
	case r.closed:
		r.mu.Unlock()
		stop(ErrClosed)
		return nil, ErrClosed
	case len(r.procs) >= r.cfg.MaxProcesses:
		r.mu.Unlock()
		stop(ErrLimit)
		return nil, fmt.Errorf("%w: %d processes (Config.MaxProcesses)", ErrLimit, r.cfg.MaxProcesses)
	}
	r.procs[p.addr.ID] = p
	if pc.Handler != nil {
		r.wg.Add(1)
		go p.run(pc.Handler)
	}
	r.mu.Unlock()
	context.AfterFunc(pctx, func() {
		if !r.enter() {
			return // Close ends it
		}
		defer r.wg.Done()
		detail := "closed"
		if c := context.Cause(pctx); c != nil && !errors.Is(c, errClosedProcess) {
			detail = c.Error()
		}
		r.endProcess(p, ReasonProcessEnded, detail)
	})
	return p, nil
}

// run is the goroutine of a process with a handler.
func (p *Process) run(handler func(context.Context, Message)) {
	defer p.r.wg.Done()
	defer func() {
		if v := recover(); v != nil {
			p.r.log.warn("registry: process handler panicked; the process ends", "process", p.addr, "panic", fmt.Sprint(v))
			p.stop(fmt.Errorf("panic: %v", v))
		}
	}()
	for {
		select {
		case <-p.ctx.Done():
			return
		case m, ok := <-p.mbox:
			if !ok {
				return
			}
			handler(p.ctx, m)
		}
	}
}

// process returns the live local process with that number, or nil.
func (r *Registry) process(id uint64) *Process {
	r.mu.RLock()
	p := r.procs[id]
	r.mu.RUnlock()
	return p
}

// endProcess removes a process and its entries (one batch per cluster) and
// closes its mailbox. Only the first call does anything.
func (r *Registry) endProcess(p *Process, reason Reason, detail string) {
	if !p.ended.CompareAndSwap(false, true) {
		<-p.done
		return
	}
	r.mu.Lock()
	delete(r.procs, p.addr.ID)
	clusters := r.clusterList()
	r.mu.Unlock()
	for _, c := range clusters {
		c.endProc(p.addr.ID, reason, detail)
	}
	if r.log.on() {
		r.log.verbose("registry: process ended", "process", p.addr, "reason", reason, "detail", detail)
	}
	p.cause = fmt.Errorf("%w: %s", ErrProcessEnded, detail)
	p.closeMailbox()
	close(p.done)
}

// endProc removes the entries of a local process, as one batch.
func (c *cluster) endProc(proc uint64, reason Reason, detail string) {
	c.mu.Lock()
	set := c.byProc[proc]
	if len(set) == 0 {
		c.mu.Unlock()
		return
	}
	ids := make([]entryID, 0, len(set))
	for id := range set {
		ids = append(ids, id)
	}
	sortIDs(ids)
	var b batch
	for _, id := range ids {
		c.ownDelLocked(&b, id, reason, detail)
	}
	c.flushLocked(&b)
	c.mu.Unlock()
	c.notify(&b)
}

// --- writes -------------------------------------------------------------

// authorize checks, in a secure realm, that this node's own grant allows
// cmd on the key or prefix.
func (r *Registry) authorize(cmd ucan.Command, key string) error {
	if !r.secure {
		return nil
	}
	var err error
	if key == "" || key[len(key)-1] == '/' {
		err = ucan.CheckPattern(r.access.Self(), cmd, ResourcePattern(r.cfg.Realm, key))
	} else {
		err = ucan.Check(r.access.Self(), cmd, Resource(r.cfg.Realm, key))
	}
	if err != nil {
		return fmt.Errorf("%w: %s on %s: %w", ErrUnauthorized, cmd, quote(key), err)
	}
	return nil
}

var commandOf = [...]ucan.Command{kindName: ucan.Register, kindMember: ucan.Join}

func (r *Registry) write(p *Process, k kind, key string, meta []byte, opts []Option) error {
	o := merge(opts)
	if err := r.keys.checkKey(key); err != nil {
		return err
	}
	if len(meta) > r.cfg.MaxMetaSize {
		return fmt.Errorf("%w: metadata of %d bytes; the limit is %d (Config.MaxMetaSize)", ErrTooLarge, len(meta), r.cfg.MaxMetaSize)
	}
	if p.r != r {
		return errors.New("registry: the process belongs to another registry")
	}
	c, err := r.clusterFor(o.cluster)
	if err != nil {
		return err
	}
	if err := r.authorize(commandOf[k], key); err != nil {
		return err
	}
	c.mu.Lock()
	switch {
	case c.gone:
		c.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrNotConnected, quote(c.name))
	case p.ended.Load():
		c.mu.Unlock()
		return ErrProcessEnded
	}
	id := entryID{kind: k, key: key, proc: p.addr.ID}
	old := c.own.entries[id]
	if k == kindName {
		// Writers hold c.mu, so the slot can be read without its
		// shard's lock.
		if slot := c.names.shard(key).m[key]; slot != nil && slot.win != nil && slot.win.addr() != p.addr {
			owner := slot.win.addr()
			c.mu.Unlock()
			return &TakenError{Key: key, Cluster: c.name, Owner: owner}
		}
	}
	if old != nil && bytes.Equal(old.meta, meta) {
		c.mu.Unlock()
		return nil
	}
	if old == nil && r.localEntries.Load() >= int64(r.cfg.MaxLocalEntries) {
		c.mu.Unlock()
		return fmt.Errorf("%w: %d entries of this node's processes (Config.MaxLocalEntries)", ErrLimit, r.cfg.MaxLocalEntries)
	}
	since := r.clock.read()
	if old != nil {
		since = old.since
	}
	var b batch
	c.ownPutLocked(&b, id, bytes.Clone(meta), since)
	c.flushLocked(&b)
	c.mu.Unlock()
	c.notify(&b)
	if r.log.on() {
		r.log.verbose("registry: "+[...]string{kindName: "registered", kindMember: "joined"}[k], "cluster", c.name, "key", key, "process", p.addr)
	}
	return nil
}

func (r *Registry) remove(p *Process, k kind, key string, opts []Option) error {
	o := merge(opts)
	if err := r.keys.checkKey(key); err != nil {
		return err
	}
	c, err := r.clusterFor(o.cluster)
	if err != nil {
		return err
	}
	reason := ReasonUnregistered
	if k == kindMember {
		reason = ReasonLeft
	}
	c.mu.Lock()
	if c.gone {
		c.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrNotConnected, quote(c.name))
	}
	var b batch
	ok := c.ownDelLocked(&b, entryID{kind: k, key: key, proc: p.addr.ID}, reason, "")
	c.flushLocked(&b)
	c.mu.Unlock()
	c.notify(&b)
	if !ok {
		if k == kindMember {
			return fmt.Errorf("%w: %s of %s", ErrNotMember, quote(key), p.addr)
		}
		return fmt.Errorf("%w: %s is not registered to %s", ErrNotFound, quote(key), p.addr)
	}
	return nil
}

// --- reads --------------------------------------------------------------

// Lookup returns the process registered under key, in this node's view of
// the realm (or of the cluster of opts). It reads local memory only.
// ErrNotFound if there is none.
func (r *Registry) Lookup(key string, opts ...Option) (Entry, error) {
	c := r.def
	if len(opts) > 0 {
		var err error
		if c, err = r.clusterFor(merge(opts).cluster); err != nil {
			return Entry{}, err
		}
	}
	if r.isClosed.Load() {
		return Entry{}, ErrClosed
	}
	sh := c.names.shard(key)
	sh.mu.RLock()
	var e *entry
	if slot := sh.m[key]; slot != nil {
		e = slot.win
	}
	sh.mu.RUnlock()
	if e == nil {
		// Only valid keys are ever stored: validate on a miss only.
		if err := r.keys.checkKey(key); err != nil {
			return Entry{}, err
		}
		return Entry{}, fmt.Errorf("%w: %s", ErrNotFound, quote(key))
	}
	return Entry{Key: key, Cluster: c.name, Addr: e.addr(), Meta: e.meta, Registered: e.since}, nil
}

// Members returns the members of the group key, in address order; with a
// prefix (a key ending in "/", or "" for all), the members of every group
// under it, by key then address. Registered names are not members. It
// reads local memory only; the result is the caller's (the Meta slices are
// shared: do not modify them).
func (r *Registry) Members(key string, opts ...Option) ([]Member, error) {
	o := merge(opts)
	prefix, err := r.keys.checkQuery(key)
	if err != nil {
		return nil, err
	}
	c, err := r.clusterFor(o.cluster)
	if err != nil {
		return nil, err
	}
	if !prefix {
		sh := c.groups.shard(key)
		sh.mu.RLock()
		var out []Member
		if slot := sh.m[key]; slot != nil {
			ms := membersOf(slot)
			if o.limit > 0 && len(ms) > o.limit {
				ms = ms[:o.limit]
			}
			out = slices.Clone(ms)
		}
		sh.mu.RUnlock()
		if out == nil {
			out = []Member{}
		}
		return out, nil
	}
	out := []Member{}
	for _, k := range c.groupKeys(key) {
		sh := c.groups.shard(k)
		sh.mu.RLock()
		if slot := sh.m[k]; slot != nil {
			out = append(out, membersOf(slot)...)
		}
		sh.mu.RUnlock()
		if o.limit > 0 && len(out) >= o.limit {
			return out[:o.limit], nil
		}
	}
	return out, nil
}

// groupKeys returns the group keys under prefix ("" for all), sorted.
func (c *cluster) groupKeys(prefix string) []string {
	if prefix != "" {
		return c.groupPrefix.keys(prefix)
	}
	var out []string
	for i := range c.groups.shards {
		sh := &c.groups.shards[i]
		sh.mu.RLock()
		for k := range sh.m {
			out = append(out, k)
		}
		sh.mu.RUnlock()
	}
	sort.Strings(out)
	return out
}

// nameKeys returns the registered names under prefix ("" for all), sorted.
func (c *cluster) nameKeys(prefix string) []string {
	if prefix != "" {
		return c.namePrefix.keys(prefix)
	}
	var out []string
	for i := range c.names.shards {
		sh := &c.names.shards[i]
		sh.mu.RLock()
		for k := range sh.m {
			out = append(out, k)
		}
		sh.mu.RUnlock()
	}
	sort.Strings(out)
	return out
}

// Names returns the registered names under prefix (a key ending in "/",
// "" for all, or one key), sorted by key.
func (r *Registry) Names(prefix string, opts ...Option) ([]Entry, error) {
	o := merge(opts)
	isPrefix, err := r.keys.checkQuery(prefix)
	if err != nil {
		return nil, err
	}
	c, err := r.clusterFor(o.cluster)
	if err != nil {
		return nil, err
	}
	keys := []string{prefix}
	if isPrefix {
		keys = c.nameKeys(prefix)
	}
	out := []Entry{}
	for _, k := range keys {
		sh := c.names.shard(k)
		sh.mu.RLock()
		if slot := sh.m[k]; slot != nil && slot.win != nil {
			e := slot.win
			out = append(out, Entry{Key: k, Cluster: c.name, Addr: e.addr(), Meta: e.meta, Registered: e.since})
		}
		sh.mu.RUnlock()
		if o.limit > 0 && len(out) >= o.limit {
			break
		}
	}
	return out, nil
}

// Group is a group key and its number of members, as Groups returns it.
type Group struct {
	Key     string
	Members int
}

// Groups returns the group keys under prefix ("" for all), sorted, with
// their number of members.
func (r *Registry) Groups(prefix string, opts ...Option) ([]Group, error) {
	o := merge(opts)
	isPrefix, err := r.keys.checkQuery(prefix)
	if err != nil {
		return nil, err
	}
	c, err := r.clusterFor(o.cluster)
	if err != nil {
		return nil, err
	}
	keys := []string{prefix}
	if isPrefix {
		keys = c.groupKeys(prefix)
	}
	out := []Group{}
	for _, k := range keys {
		sh := c.groups.shard(k)
		sh.mu.RLock()
		if slot := sh.m[k]; slot != nil {
			out = append(out, Group{Key: k, Members: len(slot.members)})
		}
		sh.mu.RUnlock()
		if o.limit > 0 && len(out) >= o.limit {
			break
		}
	}
	return out, nil
}

// Monitor starts watching the events of the keys pattern matches: a key,
// a prefix ending in "/", or "" for every key, in the default cluster or
// the one of opts. Events of every node arrive, this node's own included.
func (r *Registry) Monitor(pattern string, opts ...Option) (*Monitor, error) {
	o := merge(opts)
	prefix, err := r.keys.checkQuery(pattern)
	if err != nil {
		return nil, err
	}
	c, err := r.clusterFor(o.cluster)
	if err != nil {
		return nil, err
	}
	m := &Monitor{c: c, pattern: pattern, prefix: prefix && pattern != "", ch: make(chan Batch, r.cfg.MonitorBuffer)}
	// Under c.mu, so that no batch is half delivered to it.
	c.mu.Lock()
	if c.gone {
		c.mu.Unlock()
		return nil, fmt.Errorf("%w: %s", ErrNotConnected, quote(c.name))
	}
	c.mon.add(m)
	c.mu.Unlock()
	if r.isClosed.Load() {
		m.Close()
		return nil, ErrClosed
	}
	return m, nil
}

// --- clusters -------------------------------------------------------------

// Connect connects this node to a named cluster: from now on it holds and
// replicates the cluster's names and groups, with the other nodes that
// connected to it. Connecting again is a no-op.
func (r *Registry) Connect(ctx context.Context, name string) error {
	if name == "" {
		return fmt.Errorf("%w: the default cluster is always connected; name a cluster", ErrInvalidCluster)
	}
	if err := checkCluster(name); err != nil {
		return err
	}
	r.mu.Lock()
	switch {
	case r.closed:
		r.mu.Unlock()
		return ErrClosed
	case r.clusters[name] != nil:
		r.mu.Unlock()
		return nil
	}
	c := newCluster(r, name, uint64(r.clock.read()))
	r.clusters[name] = c
	r.mu.Unlock()
	r.log.info("registry: connected to cluster", "cluster", name)
	r.clusterJoined(c)
	if r.members != nil {
		if err := r.members.JoinCluster(ctx, name); err != nil {
			return fmt.Errorf("registry: connected to %s, but the realm's membership does not know yet: %w", quote(name), err)
		}
	}
	return nil
}

// Disconnect disconnects this node from a named cluster: every entry of
// the cluster goes from this node (its own processes' with reason
// cluster_left, which the other nodes see too), its monitors of the
// cluster are closed, and it stops replicating it. Disconnecting a cluster
// not connected is a no-op.
func (r *Registry) Disconnect(ctx context.Context, name string) error {
	if name == "" {
		return fmt.Errorf("%w: the default cluster cannot be disconnected", ErrInvalidCluster)
	}
	if err := checkCluster(name); err != nil {
		return err
	}
	r.mu.Lock()
	c := r.clusters[name]
	closed := r.closed
	delete(r.clusters, name)
	r.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if c == nil {
		return nil
	}
	c.mu.Lock()
	c.gone = true
	var b batch
	for _, st := range c.streamList() {
		c.dropStreamLocked(&b, st, ReasonClusterLeft, "this node left the cluster")
	}
	c.flushLocked(&b)
	c.mu.Unlock()
	c.mon.endAll()
	r.clusterLeft(c)
	r.log.info("registry: disconnected from cluster", "cluster", name)
	if r.members != nil {
		if err := r.members.LeaveCluster(ctx, name); err != nil {
			return fmt.Errorf("registry: left %s, but could not tell the realm's membership: %w", quote(name), err)
		}
	}
	return nil
}

// streamList returns the streams, this node's own last. The caller holds
// mu.
func (c *cluster) streamList() []*stream {
	out := make([]*stream, 0, len(c.streams))
	for _, st := range c.streams {
		if st != c.own {
			out = append(out, st)
		}
	}
	slices.SortFunc(out, func(a, b *stream) int {
		if a.origin < b.origin {
			return -1
		}
		return 1
	})
	return append(out, c.own)
}

// Connected reports whether this node is connected to the named cluster.
func (r *Registry) Connected(name string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.clusters[name] != nil
}

// Clusters returns the named clusters this node is connected to, sorted.
func (r *Registry) Clusters() []string {
	r.mu.RLock()
	out := make([]string, 0, len(r.clusters))
	for n := range r.clusters {
		if n != "" {
			out = append(out, n)
		}
	}
	r.mu.RUnlock()
	sort.Strings(out)
	return out
}

// Nodes returns the nodes of the realm that take part in the registry,
// this one included (with InCluster: the nodes connected to that
// cluster), sorted. It comes from the realm's membership, or, without one,
// from this node's links.
func (r *Registry) Nodes(opts ...Option) ([]peer.ID, error) {
	o := merge(opts)
	if err := checkCluster(o.cluster); err != nil {
		return nil, err
	}
	if r.isClosed.Load() {
		return nil, ErrClosed
	}
	var out []peer.ID
	if r.members != nil {
		for _, m := range r.members.List() {
			if o.cluster == "" || m.InCluster(o.cluster) || (m.ID == r.self && r.Connected(o.cluster)) {
				out = append(out, m.ID)
			}
		}
	} else {
		if o.cluster == "" || r.Connected(o.cluster) {
			out = append(out, r.self)
		}
		out = append(out, r.linkedPeers(o.cluster)...)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// --- resolution -----------------------------------------------------------

// Candidate is one registration of a contested name, as a Resolver sees
// it.
type Candidate struct {
	Addr Addr
	Meta []byte
	// Registered is the registration's hybrid clock stamp on its node.
	Registered Stamp
}

// Resolver picks which of two registrations of the same name keeps it and
// returns its Addr. Every node calls it with the same two candidates in
// the same order (a is the one DefaultResolver prefers), so it must be a
// pure function of its arguments: nodes that answered differently would
// each keep their own. It runs while the cluster's state is locked: it must
// be quick and must not call the registry. Carry what it needs to decide
// (a priority, a version) in the metadata. An answer that is neither
// candidate, or a panic, counts as a.
type Resolver func(cluster, key string, a, b Candidate) Addr

// DefaultResolver keeps the earlier registration: the smaller hybrid clock
// stamp, then the smaller node ID, then the smaller process number. The
// stamps order a registration after every registration its node knew of
// when it was made (the clock follows every stamp it receives), so a node
// that learnt of a name never takes it from its owner by having a clock
// that runs late; only registrations made without knowledge of each other
// (two sides of a partition, or two nodes within one replication delay)
// are ordered by their wall clocks, and ties by the node IDs, the same on
// every node. Keeping the earlier one leaves a long-held name with the
// process that has been using it.
func DefaultResolver(_, _ string, a, b Candidate) Addr {
	switch {
	case a.Registered != b.Registered:
		if a.Registered < b.Registered {
			return a.Addr
		}
		return b.Addr
	case a.Addr.Node != b.Addr.Node:
		if a.Addr.Node < b.Addr.Node {
			return a.Addr
		}
		return b.Addr
	case b.Addr.ID < a.Addr.ID:
		return b.Addr
	}
	return a.Addr
}

func (r *Registry) resolverName() string {
	if r.cfg.Resolve == nil {
		return "earlier registration wins"
	}
	return "the resolver's choice"
}

// callResolver asks Config.Resolve to choose between a and b.
func (r *Registry) callResolver(cluster, key string, a, b *entry) (w *entry) {
	w = a
	defer func() {
		if v := recover(); v != nil {
			r.log.warn("registry: the conflict resolver panicked; the earlier registration wins", "key", key, "panic", fmt.Sprint(v))
			w = a
		}
	}()
	got := r.cfg.Resolve(cluster, key,
		Candidate{Addr: a.addr(), Meta: a.meta, Registered: a.since},
		Candidate{Addr: b.addr(), Meta: b.meta, Registered: b.since})
	if got == b.addr() {
		return b
	}
	return a
}
