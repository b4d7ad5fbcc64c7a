package registry

import (
	"context"
	"errors"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	p2pevent "github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/host/eventbus"

	"github.com/macula-io/macula/frame"
)

// Tunables not worth a Config field.
const (
	// openTimeout bounds opening our stream to a peer.
	openTimeout = 10 * time.Second
	// writeTimeout bounds one write to a peer's stream: a peer that reads
	// nothing for that long is cut off (its link closes).
	writeTimeout = 30 * time.Second
	// closeFlush is how long Close lets each link send its goodbye.
	closeFlush = 2 * time.Second
	// openRetry is the least wait between two attempts to open our stream
	// to a peer that keeps failing.
	openRetry = 2 * time.Second
	// maxDials bounds the dials of unconnected members in flight.
	maxDials = 4
	// dialBackoffMax caps the wait between two dials of one member.
	dialBackoffMax = 30 * time.Second
)

// ConnTag tags, in the connection manager, the connections of a secure
// realm's links: that realm takes a node's entries from the node itself
// only, so the link is needed while both live, and the node's trimming of
// idle connections keeps it. An open realm's links run on the connections
// that exist and are not tagged: entries are relayed.
const ConnTag = "macula-registry"

// skey names a stream: a node's entries in a cluster.
type skey struct {
	cluster string
	origin  peer.ID
}

// mark is a position in a stream.
type mark struct{ epoch, ver uint64 }

// replication is the registry's links to its peers.
type replication struct {
	hostSub p2pevent.Subscription // set in startReplication, read-only after

	// mu guards the fields below. Lock order: cluster.mu, then mu, then a
	// link's mu.
	mu       sync.Mutex
	links    map[peer.ID]*peerLink
	live     map[peer.ID]bool // live nodes by the membership
	dials    map[peer.ID]*dialState
	dialing  int // dials in flight
	stopping bool

	// kick (cap 1) tells the anti-entropy loop that something changed
	// while it may be sleeping long (kickAntiEntropy).
	kick chan struct{}
	// rounds counts the anti-entropy loop's rounds (for tests).
	rounds atomic.Uint64
}

// dialState paces the dials of a live member this node is not connected
// to.
type dialState struct {
	next     time.Time
	failures int
}

// peerLink is one session with a peer: one bidirectional stream, opened by
// the node with the smaller peer ID (so that two nodes never race to pair
// two streams), written by the link's writer goroutine and read by its
// reader; and what we know the peer holds. When the stream ends, the
// session ends: the link is forgotten, and the next session starts afresh
// with a new stream (after a restart of either registry, a lost stream,
// a new connection).
type peerLink struct {
	r    *Registry
	id   peer.ID
	wake chan struct{} // cap 1: there is something to send
	done chan struct{} // closed when the link is closed

	closeOnce sync.Once

	// mu guards the fields below.
	mu        sync.Mutex
	s         network.Stream // the session's stream; nil until open
	opening   bool
	lastOpen  time.Time
	helloSeen bool
	clusters  map[string]bool // the peer's named clusters, from its frames
	ctrl      []byte          // queued control frames; never dropped
	msgs      []byte          // queued message frames; bounded
	synced    map[string]bool // clusters whose digest from the peer arrived
	sent      map[skey]mark   // what the peer holds of each stream, as far as we know
	need      map[skey]bool   // relayed streams to push
	prev      map[skey]mark   // the peer's previous digest, for the stall rule
	draining  bool            // send what is queued, then close
	// Quiet digests (sync.go): the fingerprint of what we held and the
	// time when our last tick's digests went out, and until when the
	// peer's last digest, which differed, makes every tick send them.
	digestFP   uint64
	digestAt   time.Time
	eagerUntil time.Time
	closed     bool
	said       atomic.Bool // the peer said goodbye

	staging map[skey]*staged // full deltas being received; owned by the reader
}

// staged is a full delta whose frames are still arriving.
type staged struct {
	epoch, to uint64
	items     []item
}

func (l *peerLink) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// startReplication serves the protocol and starts the link and
// anti-entropy loops.
func (r *Registry) startReplication() error {
	r.repl.links = make(map[peer.ID]*peerLink)
	r.repl.live = make(map[peer.ID]bool)
	r.repl.dials = make(map[peer.ID]*dialState)
	r.repl.kick = make(chan struct{}, 1)
	sub, err := r.h.EventBus().Subscribe([]any{
		new(p2pevent.EvtPeerIdentificationCompleted),
		new(p2pevent.EvtPeerProtocolsUpdated),
		new(p2pevent.EvtPeerConnectednessChanged),
	}, eventbus.Name("macula-registry"), eventbus.BufSize(256))
	if err != nil {
		return err
	}
	r.repl.hostSub = sub
	if r.members != nil {
		for _, m := range r.members.List() {
			if m.ID != r.self {
				r.repl.live[m.ID] = true
			}
		}
		ch := r.members.Watch(r.ctx)
		r.wg.Add(1)
		go r.watchMembers(ch)
	}
	r.h.SetStreamHandler(r.proto, r.handleStream)
	r.wg.Add(2)
	go r.watchPeers()
	go r.antiEntropy()
	// Peers connected before we started.
	for _, p := range r.h.Network().Peers() {
		if ok, _ := r.h.Peerstore().SupportsProtocols(p, r.proto); len(ok) > 0 {
			r.ensureLink(p)
		}
	}
	return nil
}

// stopServing stops taking streams and peer events.
func (r *Registry) stopServing() {
	r.h.RemoveStreamHandler(r.proto)
	r.repl.hostSub.Close()
}

// stopReplication says goodbye on every link, lets it drain for a moment,
// and closes it.
func (r *Registry) stopReplication() {
	r.repl.mu.Lock()
	r.repl.stopping = true
	links := make([]*peerLink, 0, len(r.repl.links))
	for _, l := range r.repl.links {
		links = append(links, l)
	}
	r.repl.mu.Unlock()
	// Each writer sends the goodbye and closes its side of the stream; each
	// reader ends when the peer, having read it, closes its own, or at the
	// deadline.
	dl := time.Now().Add(closeFlush)
	for _, l := range links {
		l.mu.Lock()
		l.ctrl = frame.Append(l.ctrl, typeBye, wireVersion, nil)
		l.draining = true
		st := l.s
		l.mu.Unlock()
		if st == nil {
			l.close() // no session to say goodbye on
			continue
		}
		_ = st.SetDeadline(dl)
		l.signal()
	}
}

// watchPeers opens links to peers that speak the protocol and closes the
// links of peers that disconnect.
func (r *Registry) watchPeers() {
	defer r.wg.Done()
	for e := range r.repl.hostSub.Out() {
		switch e := e.(type) {
		case p2pevent.EvtPeerIdentificationCompleted:
			if slices.Contains(e.Protocols, r.proto) {
				r.ensureLink(e.Peer)
			}
		case p2pevent.EvtPeerProtocolsUpdated:
			if slices.Contains(e.Added, r.proto) {
				r.ensureLink(e.Peer)
			}
		case p2pevent.EvtPeerConnectednessChanged:
			if e.Connectedness != network.Connected {
				r.peerGone(e.Peer)
			}
		}
	}
}

// link returns the link to p, creating it unless stopping.
func (r *Registry) link(p peer.ID) *peerLink {
	r.repl.mu.Lock()
	defer r.repl.mu.Unlock()
	if l := r.repl.links[p]; l != nil {
		return l
	}
	if r.repl.stopping || p == r.self {
		return nil
	}
	l := &peerLink{
		r: r, id: p, wake: make(chan struct{}, 1), done: make(chan struct{}),
		clusters: map[string]bool{}, synced: map[string]bool{}, sent: map[skey]mark{},
		need: map[skey]bool{}, prev: map[skey]mark{}, staging: map[skey]*staged{},
	}
	r.repl.links[p] = l
	if r.secure {
		r.h.ConnManager().TagPeer(p, ConnTag, 1)
	}
	r.def.attach(l)
	return l
}

// ensureLink opens a session with p unless there is one or one is being
// opened. Only the node with the smaller peer ID opens: the other waits for
// its stream.
func (r *Registry) ensureLink(p peer.ID) {
	if r.self > p {
		return
	}
	l := r.link(p)
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.s != nil || l.opening || l.closed || time.Since(l.lastOpen) < openRetry && !l.lastOpen.IsZero() {
		return
	}
	if !r.enter() {
		return
	}
	l.opening = true
	l.lastOpen = time.Now()
	go l.open()
}

// open opens the session's stream and runs its writer; a reader goroutine
// reads the peer's frames.
func (l *peerLink) open() {
	defer l.r.wg.Done()
	r := l.r
	ctx, cancel := context.WithTimeout(r.ctx, openTimeout)
	s, err := r.h.NewStream(network.WithAllowLimitedConn(ctx, "macula registry"), l.id, r.proto)
	cancel()
	l.mu.Lock()
	l.opening = false
	if err != nil || l.closed || l.draining {
		l.mu.Unlock()
		if s != nil {
			_ = s.Reset()
		}
		if err != nil && r.ctx.Err() == nil {
			r.log.debug("registry: cannot open a stream to the peer", "peer", l.id, "err", err)
		}
		r.kickAntiEntropy() // relink tries again after openRetry
		return
	}
	l.mu.Unlock()
	if !r.enter() {
		_ = s.Reset()
		return
	}
	go func() {
		defer r.wg.Done()
		l.serve(s)
	}()
	l.start(s)
}

// start begins a session on s: our hello first, then the writer, on the
// calling goroutine.
func (l *peerLink) start(s network.Stream) {
	r := l.r
	hello := appendHello(nil, r.Clusters())
	l.mu.Lock()
	l.s = s
	// The hello goes before anything queued meanwhile.
	l.ctrl = append(hello, l.ctrl...)
	seen := l.helloSeen
	l.mu.Unlock()
	if seen {
		// The peer's hello came first: our digests follow ours now (not
		// under l.mu: digests take the clusters' locks, which come first).
		r.sendDigests(l)
	}
	r.log.info("registry: linked to peer", "peer", l.id)
	l.signal()
	l.writeLoop()
}

// writeLoop writes what is queued and what the peer lacks until the link
// closes.
func (l *peerLink) writeLoop() {
	graceful := false
	defer func() { l.shut(graceful) }()
	for {
		select {
		case <-l.wake:
		case <-l.done:
			return
		}
		for {
			l.mu.Lock()
			if l.closed {
				l.mu.Unlock()
				return
			}
			out := append(l.ctrl, l.msgs...)
			l.ctrl, l.msgs = nil, nil
			drain := l.draining
			s := l.s
			l.mu.Unlock()
			if len(out) > 0 {
				if err := l.write(s, out); err != nil {
					return
				}
				continue
			}
			if drain {
				graceful = true
				return
			}
			sent, err := l.push(s)
			if err != nil {
				return
			}
			if !sent {
				break
			}
		}
	}
}

func (l *peerLink) write(s network.Stream, b []byte) error {
	_ = s.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := s.Write(b)
	if err != nil {
		if l.r.ctx.Err() == nil {
			l.r.log.debug("registry: write to peer failed", "peer", l.id, "err", err)
		}
		return err
	}
	l.r.stats.framesSent.Add(1)
	return nil
}

// close ends the session at once (its stream reset); its state goes with
// it.
func (l *peerLink) close() { l.shut(false) }

// shut ends the session: gracefully (our side of the stream is closed after
// what was written, and the reader goes on until the peer closes its side,
// having read our goodbye), or at once (reset).
func (l *peerLink) shut(graceful bool) {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		st := l.s
		l.mu.Unlock()
		close(l.done)
		if st != nil {
			if graceful {
				_ = st.CloseWrite()
			} else {
				_ = st.Reset()
			}
		}
		r := l.r
		r.repl.mu.Lock()
		if r.repl.links[l.id] == l {
			delete(r.repl.links, l.id)
			if r.secure {
				r.h.ConnManager().UntagPeer(l.id, ConnTag)
			}
		}
		r.repl.mu.Unlock()
		r.mu.RLock()
		clusters := r.clusterList()
		r.mu.RUnlock()
		for _, c := range clusters {
			c.detach(l)
		}
	})
}

// peerGone closes the link of a peer whose connections are all gone.
// Without a membership, the link was the peer's liveness: its entries go.
func (r *Registry) peerGone(p peer.ID) {
	if r.h.Network().Connectedness(p) == network.Connected {
		return
	}
	r.repl.mu.Lock()
	l := r.repl.links[p]
	r.repl.mu.Unlock()
	said := false
	if l != nil {
		l.close()
		said = l.said.Load()
		r.log.info("registry: link to peer closed", "peer", p)
	}
	// (The link may have closed already, on a failed write.)
	if r.members == nil && !said {
		r.purgeNode(p, ReasonNodeDown, "the connection to the node closed", "")
	}
}

// handleStream takes a session opened by the peer: a new stream replaces
// any session with that peer (its registry restarted, or lost the old one).
func (r *Registry) handleStream(s network.Stream) {
	if !r.enter() {
		_ = s.Reset()
		return
	}
	defer r.wg.Done()
	p := s.Conn().RemotePeer()
	r.repl.mu.Lock()
	old := r.repl.links[p]
	r.repl.mu.Unlock()
	if old != nil {
		old.close()
	}
	l := r.link(p)
	if l == nil || !r.enter() {
		_ = s.Reset()
		return
	}
	go func() {
		defer r.wg.Done()
		l.start(s)
	}()
	l.serve(s)
}

// serve reads the session's stream until it ends, and then ends the
// session.
func (l *peerLink) serve(s network.Stream) {
	r := l.r
	err := l.read(s)
	r.kickAntiEntropy() // the session ends: relink may have a peer to link
	if err != nil && !errors.Is(err, io.EOF) && r.ctx.Err() == nil && !l.isDraining() {
		r.stats.badFrames.Add(1)
		r.log.debug("registry: stream from peer closed", "peer", l.id, "err", err)
	}
	if err != nil && !errors.Is(err, io.EOF) {
		l.close()
		_ = s.Reset()
		return
	}
	// The peer closed its side (its goodbye, if any, is read): close ours,
	// gracefully if we are closing too.
	l.shut(true)
	_ = s.Close()
}

func (l *peerLink) isDraining() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.draining
}

// read decodes and applies the frames of a peer's stream.
func (l *peerLink) read(s network.Stream) error {
	r := l.r
	limit := uint32(max(minFrameLimit, r.cfg.MaxMessageSize+4096))
	fr := frame.NewReader(s, limit)
	for first := true; ; first = false {
		h, body, err := fr.Next()
		if err != nil {
			return err
		}
		r.stats.framesReceived.Add(1)
		if h.Type != typeSend {
			// Replication news: the next anti-entropy round may have
			// digests to send.
			r.kickAntiEntropy()
		}
		if h.Version != wireVersion {
			return errMalformedf("frame type %d version %d", h.Type, h.Version)
		}
		if first != (h.Type == typeHello) {
			return errMalformedf("frame type %d where a hello must be first and only first", h.Type)
		}
		switch h.Type {
		case typeHello:
			cl, err := decodeHello(body)
			if err != nil {
				return err
			}
			l.onHello(cl)
		case typeClusters:
			op, cl, err := decodeClusters(body)
			if err != nil {
				return err
			}
			l.onClusters(op, cl)
		case typeDigest:
			d, err := decodeDigest(body)
			if err != nil {
				return err
			}
			l.onDigest(d)
		case typeDelta:
			d, err := decodeDelta(body, &r.keys, maxMetaSizeLimit)
			if err != nil {
				return err
			}
			if err := l.onDelta(&d); err != nil {
				return err
			}
		case typeSend:
			m, err := decodeSend(body, &r.keys, r.cfg.MaxMessageSize)
			if err != nil {
				return err
			}
			l.onSend(&m)
		case typeBye:
			if len(body) != 0 {
				return errMalformedf("bye with a body")
			}
			l.said.Store(true)
			r.log.info("registry: peer said goodbye; its entries are removed", "peer", l.id)
			r.purgeNode(l.id, ReasonNodeLeft, "the node closed its registry", "")
		default:
			return errMalformedf("frame type %d", h.Type)
		}
	}
}

// --- clusters on links ----------------------------------------------------

// attach makes the link one of the cluster's: it gets the cluster's
// changes.
func (c *cluster) attach(l *peerLink) {
	for {
		old := c.links.Load()
		var s []*peerLink
		if old != nil {
			if slices.Contains(*old, l) {
				return
			}
			s = slices.Clone(*old)
		}
		s = append(s, l)
		if c.links.CompareAndSwap(old, &s) {
			return
		}
	}
}

func (c *cluster) detach(l *peerLink) {
	for {
		old := c.links.Load()
		if old == nil || !slices.Contains(*old, l) {
			return
		}
		s := slices.DeleteFunc(slices.Clone(*old), func(x *peerLink) bool { return x == l })
		if c.links.CompareAndSwap(old, &s) {
			return
		}
	}
}

// wakeLinks tells the cluster's links that its own stream changed.
func (r *Registry) wakeLinks(c *cluster) {
	if s := c.links.Load(); s != nil {
		for _, l := range *s {
			l.signal()
		}
	}
	r.kickAntiEntropy()
}

// linkedPeers returns the peers linked in a cluster ("" for the default).
func (r *Registry) linkedPeers(cluster string) []peer.ID {
	r.repl.mu.Lock()
	defer r.repl.mu.Unlock()
	var out []peer.ID
	for p, l := range r.repl.links {
		l.mu.Lock()
		ok := l.helloSeen && (cluster == "" || l.clusters[cluster])
		l.mu.Unlock()
		if ok {
			out = append(out, p)
		}
	}
	return out
}

// linkSays reports whether the peer's own frames say it is in cluster.
func (r *Registry) linkSays(p peer.ID, cluster string) bool {
	r.repl.mu.Lock()
	l := r.repl.links[p]
	r.repl.mu.Unlock()
	if l == nil {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.clusters[cluster]
}

// clusterJoined announces a new cluster to every peer and starts
// replicating it with those in it.
func (r *Registry) clusterJoined(c *cluster) {
	for _, l := range r.allLinks() {
		l.mu.Lock()
		if l.s != nil {
			l.ctrl = appendClusters(l.ctrl, clustersJoin, []string{c.name})
		}
		shared := l.clusters[c.name]
		l.mu.Unlock()
		if shared {
			c.attach(l)
			l.queueDigest(c, false)
		}
		l.signal()
	}
}

// clusterLeft announces that this node left a cluster.
func (r *Registry) clusterLeft(c *cluster) {
	for _, l := range r.allLinks() {
		c.detach(l)
		l.mu.Lock()
		if l.s != nil {
			l.ctrl = appendClusters(l.ctrl, clustersLeave, []string{c.name})
		}
		l.forgetClusterLocked(c.name)
		l.mu.Unlock()
		l.signal()
	}
}

func (l *peerLink) forgetClusterLocked(name string) {
	delete(l.synced, name)
	for k := range l.sent {
		if k.cluster == name {
			delete(l.sent, k)
		}
	}
	for k := range l.need {
		if k.cluster == name {
			delete(l.need, k)
		}
	}
	for k := range l.prev {
		if k.cluster == name {
			delete(l.prev, k)
		}
	}
}

func (r *Registry) allLinks() []*peerLink {
	r.repl.mu.Lock()
	defer r.repl.mu.Unlock()
	out := make([]*peerLink, 0, len(r.repl.links))
	for _, l := range r.repl.links {
		out = append(out, l)
	}
	return out
}

// onHello records the peer's clusters and starts the exchange of the
// clusters both are in.
func (l *peerLink) onHello(clusters []string) {
	r := l.r
	l.mu.Lock()
	l.helloSeen = true
	for _, c := range clusters {
		l.clusters[c] = true
	}
	l.mu.Unlock()
	for _, name := range append([]string{""}, clusters...) {
		if c := r.connected(name); c != nil {
			c.attach(l)
			l.queueDigest(c, false)
		}
	}
	l.signal()
}

// onClusters applies a peer's cluster join or leave.
func (l *peerLink) onClusters(op uint8, clusters []string) {
	r := l.r
	for _, name := range clusters {
		c := r.connected(name)
		l.mu.Lock()
		if op == clustersJoin {
			l.clusters[name] = true
		} else {
			delete(l.clusters, name)
			l.forgetClusterLocked(name)
		}
		l.mu.Unlock()
		if c == nil {
			continue
		}
		if op == clustersJoin {
			c.attach(l)
			l.queueDigest(c, false)
		} else {
			c.detach(l)
			r.purgeNode(l.id, ReasonClusterLeft, "the node left the cluster", name)
		}
	}
	l.signal()
}

// connected returns the connected cluster of that name, or nil.
func (r *Registry) connected(name string) *cluster {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		return nil
	}
	return r.clusters[name]
}

// onSend delivers a message to local processes.
func (l *peerLink) onSend(m *sendMsg) {
	r := l.r
	if m.key != "" && r.secure {
		if err := r.peerMay(l.id, dispatchCmd, m.key); err != nil {
			r.stats.refusedDispatch.Add(1)
			r.stats.droppedUnauthorized.Add(1)
			return
		}
	}
	var from Addr
	if m.from != 0 {
		from = Addr{Node: l.id, ID: m.from}
	}
	payload := append([]byte(nil), m.payload...)
	r.stats.receivedMessages.Add(1)
	for _, t := range m.targets {
		p := r.process(t)
		if p == nil {
			r.stats.noProcess.Add(1)
			continue
		}
		switch err := p.deliver(Message{Kind: MessageData, From: from, Key: m.key, Cluster: m.cluster, Payload: payload}); err {
		case nil:
			r.stats.deliveredRemote.Add(1)
		case ErrMailboxFull:
			r.stats.droppedMailbox.Add(1)
		default:
			r.stats.noProcess.Add(1)
		}
	}
}

// queueMessage queues a send frame to the peer, unless its queue is full.
func (l *peerLink) queueMessage(m *sendMsg) error {
	l.mu.Lock()
	if l.closed || l.draining {
		l.mu.Unlock()
		return ErrNodeGone
	}
	if len(l.msgs)+sendSize(m) > l.r.cfg.PeerQueueBytes {
		l.mu.Unlock()
		l.r.stats.droppedSend.Add(1)
		return nil
	}
	wake := len(l.msgs) == 0 && len(l.ctrl) == 0
	l.msgs = appendSend(l.msgs, m)
	l.mu.Unlock()
	l.r.stats.sentMessages.Add(1)
	if wake {
		l.signal()
	}
	return nil
}
