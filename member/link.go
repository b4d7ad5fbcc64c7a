package member

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/macula-io/macula/frame"
	"github.com/macula-io/macula/internal/heard"
)

// A link joins this node to one other member: our stream to it (out), on
// which we write, and its stream to us (in), which we read. Each side opens
// its own and answers a stream it accepts with its own, so a link is up
// when both are. The first frame on each stream is the writer's summary;
// then digests if the summaries differ, news as it comes, and a heartbeat
// whenever the stream has been quiet for ProbeInterval.
type link struct {
	peer    peer.ID // set at creation, read-only after
	created time.Time

	// Guarded by Members.mu.
	out        *outStream
	in         *inStream
	opening    bool      // a goroutine is opening out
	outSince   time.Time // when out was opened
	digestSent bool      // our digest went out on out
	wantDigest bool      // the summaries differ: send our digest once out is open
	// heardN is the count of packets received from the peer over direct
	// QUIC connections at the last tick, heardAt when it last grew: the
	// peer's sign of life when it sends no frames (heardLocked).
	heardN  uint64
	heardAt time.Time
}

func (l *link) up() bool { return l.out != nil && l.in != nil }

// ping is the heartbeat frame.
var ping = encodeFrame(typePing, nil)

// encodeFrame returns a whole frame.
func encodeFrame(typ uint8, body []byte) []byte {
	return frame.Append(make([]byte, 0, frame.HeaderLen+len(body)), typ, wireVersion, body)
}

// ---- opening links ----

// openLocked starts opening a link to p: connecting with addrs (or what
// the peerstore and p's record know), opening our stream, and, once p
// opens its own back, syncing. It does nothing past MaxLinks or
// maxOpening.
func (m *Members) openLocked(p peer.ID, addrs []ma.Multiaddr) {
	l := m.links[p]
	if l != nil && (l.out != nil || l.opening) {
		return
	}
	if m.opening >= maxOpening || (l == nil && len(m.links) >= m.cfg.MaxLinks) {
		return
	}
	if l == nil {
		l = &link{peer: p, created: time.Now()}
		m.links[p] = l
	}
	if addrs == nil {
		if e := m.v.entries[p]; e != nil && e.rec != nil {
			addrs = e.rec.Addrs
		}
	}
	l.opening = true
	m.opening++
	m.wg.Add(1)
	go m.openOut(l, addrs)
}

// openOut opens our stream of link l.
func (m *Members) openOut(l *link, addrs []ma.Multiaddr) {
	defer m.wg.Done()
	ctx, cancel := context.WithTimeout(m.ctx, openTimeout)
	defer cancel()
	// Members reached only through a relay are linked over the relayed
	// connection: the traffic is small, and hole punching may move it.
	ctx = network.WithAllowLimitedConn(ctx, "macula membership")
	var s network.Stream
	err := func() error {
		if m.h.Network().Connectedness(l.peer) != network.Connected {
			if len(addrs) > 0 {
				m.h.Peerstore().AddAddrs(l.peer, addrs, peerstore.TempAddrTTL)
			}
			if err := m.h.Connect(ctx, peer.AddrInfo{ID: l.peer, Addrs: addrs}); err != nil {
				return err
			}
		}
		var err error
		s, err = m.h.NewStream(ctx, l.peer, m.quietProto, m.proto)
		return err
	}()
	m.mu.Lock()
	defer m.mu.Unlock()
	l.opening = false
	m.opening--
	if err == nil && (m.closing || m.links[l.peer] != l) {
		_ = s.Reset()
		return
	}
	if err != nil {
		if m.ctx.Err() == nil {
			m.log.Debug("cannot open a membership link", "peer", l.peer, "err", err)
			m.failedLocked(l.peer, err)
		}
		if l.in == nil && m.links[l.peer] == l {
			delete(m.links, l.peer)
		}
		return
	}
	m.startOutLocked(l, s)
}

// startOutLocked makes s the link's stream out: its first frame is our
// summary.
func (m *Members) startOutLocked(l *link, s network.Stream) {
	o := newOutStream(m, l, s)
	l.out, l.outSince, l.digestSent = o, time.Now(), false
	delete(m.retry, l.peer)
	o.push(encodeFrame(typeSummary, m.v.summary().encode()), true)
	m.wg.Add(1)
	go o.writeLoop()
	if l.wantDigest {
		m.sendDigestLocked(l)
	}
}

// failedLocked notes a failure to reach p. Once p has been unreachable for
// ProbeTimeout while the overlay wants a link to it, p is suspected, weakly
// (alertUnreachable): a member behind a NAT this node cannot cross is
// alive all the same, and refutes; one that is gone does not, and fails
// after SuspicionTimeout. The weak suspicion is raised once, until a link
// to p is made: an unreachable live member is not suspected over and over.
func (m *Members) failedLocked(p peer.ID, err error) {
	now := time.Now()
	r := m.retry[p]
	if r == nil {
		r = &retryState{firstFail: now}
		m.retry[p] = r
	}
	r.fails++
	wait := retryMin << min(r.fails-1, 10)
	r.next = now.Add(min(wait, retryMax))
	e := m.v.entries[p]
	if m.wanted[p] && e != nil && e.isLive() && now.Sub(r.firstFail) >= m.cfg.ProbeTimeout && !r.suspected {
		r.suspected = true
		m.suspectLocked(p, alertUnreachable, fmt.Sprintf("unreachable: %v", err))
	}
}

// handleStream accepts a member's stream to us.
func (m *Members) handleStream(s network.Stream) {
	p := s.Conn().RemotePeer()
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.links[p]
	if m.closing || (l == nil && len(m.links) >= m.cfg.MaxLinks) {
		_ = s.Reset()
		return
	}
	if l == nil {
		l = &link{peer: p, created: time.Now()}
		m.links[p] = l
	}
	if old := l.in; old != nil {
		// The peer opened a new stream (it restarted, or lost the old
		// one first): the newest is the one it writes to.
		l.in = nil
		_ = old.s.Reset()
	}
	in := &inStream{s: s, link: l, done: make(chan struct{})}
	in.lastRecv.Store(time.Now().UnixNano())
	l.in = in
	m.wg.Add(1)
	go m.readLoop(in)
	if l.out == nil && !l.opening {
		m.openLocked(p, nil)
	}
}

// ---- reading ----

// inStream is a member's stream to us and what its reader keeps.
type inStream struct {
	s        network.Stream
	link     *link
	lastRecv atomic.Int64  // unix ns of the last frame
	done     chan struct{} // closed when the read loop has returned

	// Owned by the read loop.
	seen    map[peer.ID]struct{} // members named in the peer's digest so far
	summary bool                 // the peer's summary was read
}

// readLoop reads a member's stream until it ends; a bad frame ends it.
func (m *Members) readLoop(in *inStream) {
	defer m.wg.Done()
	p := in.link.peer
	fr := frame.NewReader(in.s, maxFrame)
	var err error
	for {
		var h frame.Header
		var body []byte
		h, body, err = fr.Next()
		if err != nil {
			break
		}
		in.lastRecv.Store(time.Now().UnixNano())
		m.framesIn.Add(1)
		if err = m.handleFrame(in, h, body); err != nil {
			if errors.Is(err, io.EOF) {
				break // the peer's departure: the link is closed already
			}
			m.droppedInvalid.Add(1)
			m.logRateLimited(&m.invalidLogged, "closing a membership stream after a bad frame", "peer", p, "err", err)
			break
		}
	}
	defer close(in.done)
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.lingering, in)
	if in.link.in != in {
		_ = in.s.Reset()
		return // replaced by a newer stream, or closed
	}
	in.link.in = nil
	_ = in.s.Reset()
	reason := "the peer closed its stream"
	if !errors.Is(err, io.EOF) {
		reason = fmt.Sprintf("stream error: %v", err)
	}
	m.lostLocked(in.link, reason, false)
}

func (m *Members) handleFrame(in *inStream, h frame.Header, body []byte) error {
	if h.Version != wireVersion {
		return malformed("frame type %d version %d", h.Type, h.Version)
	}
	if !in.summary && h.Type != typeSummary {
		return malformed("frame type %d before the summary", h.Type)
	}
	switch h.Type {
	case typeSummary:
		if in.summary {
			return malformed("a second summary")
		}
		s, err := decodeSummary(body)
		if err != nil {
			return err
		}
		in.summary = true
		m.onSummary(in, s)
	case typeDigest:
		g, err := decodeDigest(body)
		if err != nil {
			return err
		}
		m.onDigest(in, g)
	case typeRecord:
		return m.handleRecord(in.link.peer, body)
	case typeAlert:
		left, err := m.handleAlert(in.link.peer, body)
		if err != nil {
			return err
		}
		if left {
			// The peer leaves: closing the link tells it that its
			// departure arrived (it waits for that before it stops).
			m.mu.Lock()
			if in.link.in == in {
				in.link.in = nil
				_ = in.s.Reset()
				m.lostLocked(in.link, "left", false)
			}
			m.mu.Unlock()
			return io.EOF
		}
	case typePing:
		if len(body) != 0 {
			return malformed("ping with a body")
		}
		m.mu.Lock()
		out := in.link.out
		m.mu.Unlock()
		if out != nil && !m.quietOn(in) {
			out.answerPing(time.Now())
		}
	default:
		return malformed("unknown frame type %d", h.Type)
	}
	return nil
}

// onSummary answers a peer's summary: when our views differ, we send our
// digest, and the peer (which does the same) sends what we lack.
func (m *Members) onSummary(in *inStream, s summary) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.Hash == m.v.hash || in.link.in != in {
		return
	}
	m.syncs.Add(1)
	m.sendDigestLocked(in.link)
}

// sendDigestLocked sends our digest on the link, once per stream; before
// our stream is open it notes that the digest is due.
func (m *Members) sendDigestLocked(l *link) {
	if l.out == nil {
		l.wantDigest = true
		return
	}
	if l.digestSent {
		return
	}
	l.digestSent, l.wantDigest = true, false
	entries := m.v.digestEntries()
	for len(entries) > 0 {
		g := digest{}
		size := 0
		for len(entries) > 0 && size < digestChunk {
			g.Entries = append(g.Entries, entries[0])
			size += len(entries[0].ID) + 12
			entries = entries[1:]
		}
		g.Last = len(entries) == 0
		if !l.out.push(encodeFrame(typeDigest, g.encode()), true) {
			return // closed meanwhile
		}
	}
}

// onDigest queues, for the peer, what we know better than its digest says,
// and after its last digest frame, what it did not name at all.
func (m *Members) onDigest(in *inStream, g *digest) {
	if in.seen == nil {
		in.seen = make(map[peer.ID]struct{})
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if in.link.in != in {
		return // a link that is going
	}
	// A peer that saw our views differ when we did not (ours changed in
	// between) still gets our digest: the exchange is always both ways.
	m.sendDigestLocked(in.link)
	o := in.link.out
	var send []peer.ID
	for _, d := range g.Entries {
		if len(in.seen) < m.cfg.MaxMembers+1 {
			in.seen[d.ID] = struct{}{}
		}
		if m.v.newer(d) {
			send = append(send, d.ID)
		}
	}
	if g.Last {
		if _, ok := in.seen[m.self]; !ok {
			send = append(send, m.self)
		}
		for id := range m.v.entries {
			if _, ok := in.seen[id]; !ok {
				send = append(send, id)
			}
		}
		in.seen = nil
	}
	if o != nil {
		o.want(send)
	}
}

// ---- writing ----

// outStream is our stream to a member, with its queue and the writer
// goroutine that drains it.
type outStream struct {
	m    *Members
	link *link
	s    network.Stream
	wake chan struct{} // cap 1: there is something to write
	done chan struct{} // closed when the writer has returned

	lastSent atomic.Int64 // unix ns of the last write
	answered atomic.Int64 // unix ns of the last heartbeat queued in answer (answerPing)

	// mu guards the fields below it.
	mu       sync.Mutex
	frames   [][]byte             // whole frames, in order
	pending  []peer.ID            // members whose news to send, drawn from the view
	queued   map[peer.ID]struct{} // pending, as a set
	closed   bool
	draining bool // write what is queued, then close the stream
}

func newOutStream(m *Members, l *link, s network.Stream) *outStream {
	o := &outStream{m: m, link: l, s: s, wake: make(chan struct{}, 1), done: make(chan struct{}), queued: make(map[peer.ID]struct{})}
	o.lastSent.Store(time.Now().UnixNano())
	return o
}

func (o *outStream) signal() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// push queues a frame; it reports false when the queue is full (the link
// must then be closed: a member that missed news would keep a wrong view
// until its next sync). force queues past the limit (summaries, digests,
// the departure).
func (o *outStream) push(fr []byte, force bool) bool {
	o.mu.Lock()
	if o.closed || (o.draining && !force) {
		o.mu.Unlock()
		return true
	}
	if !force && len(o.frames) >= o.m.cfg.LinkQueue {
		o.mu.Unlock()
		return false
	}
	o.frames = append(o.frames, fr)
	o.mu.Unlock()
	o.signal()
	return true
}

// want queues the news of members, to be read from the view when the
// writer gets to them (so a large sync holds IDs, not records).
func (o *outStream) want(ids []peer.ID) {
	if len(ids) == 0 {
		return
	}
	o.mu.Lock()
	for _, id := range ids {
		if _, ok := o.queued[id]; !ok {
			o.queued[id] = struct{}{}
			o.pending = append(o.pending, id)
		}
	}
	o.mu.Unlock()
	o.signal()
}

// pendingBatch is how many members' news the writer reads from the view
// at a time.
const pendingBatch = 64

func (o *outStream) writeLoop() {
	defer o.m.wg.Done()
	defer close(o.done)
	var buf []byte
	for {
		select {
		case <-o.wake:
		case <-o.m.ctx.Done():
			return
		}
		for {
			o.mu.Lock()
			if o.closed {
				o.mu.Unlock()
				return
			}
			frames := o.frames
			o.frames = nil
			var ids []peer.ID
			if len(frames) == 0 && len(o.pending) > 0 {
				n := min(len(o.pending), pendingBatch)
				ids = o.pending[:n:n]
				o.pending = o.pending[n:]
				for _, id := range ids {
					delete(o.queued, id)
				}
			}
			drain := o.draining
			o.mu.Unlock()
			if len(frames) == 0 && len(ids) == 0 {
				if drain {
					o.finish()
					return
				}
				break
			}
			buf = buf[:0]
			for _, fr := range frames {
				buf = append(buf, fr...)
			}
			count := len(frames)
			if len(ids) > 0 {
				o.m.mu.Lock()
				for _, id := range ids {
					if typ, wire := o.m.v.fact(id); wire != nil {
						buf = frame.Append(buf, typ, wireVersion, wire)
						count++
					}
				}
				o.m.mu.Unlock()
			}
			if len(buf) == 0 {
				continue
			}
			if _, err := o.s.Write(buf); err != nil {
				o.m.mu.Lock()
				if o.link.out == o {
					o.link.out = nil
					o.m.lostLocked(o.link, fmt.Sprintf("write: %v", err), false)
				}
				o.m.mu.Unlock()
				o.close()
				return
			}
			o.m.framesOut.Add(uint64(count))
			o.lastSent.Store(time.Now().UnixNano())
			if cap(buf) > 1<<20 {
				buf = nil
			}
		}
	}
}

// drain lets the writer send what is queued, within d, then close.
func (o *outStream) drain(d time.Duration) {
	_ = o.s.SetWriteDeadline(time.Now().Add(d))
	o.mu.Lock()
	o.draining = true
	o.mu.Unlock()
	o.signal()
}

// waitDrained waits for the writer to finish, at most d.
func (o *outStream) waitDrained(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-o.done:
	case <-t.C:
	}
}

// finish closes the stream after a drain: what was written still goes
// out (a reset would discard it).
func (o *outStream) finish() {
	o.mu.Lock()
	o.closed = true
	o.mu.Unlock()
	_ = o.s.Close()
}

// close stops the writer at once and resets the stream, unless it already
// finished draining.
func (o *outStream) close() {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return
	}
	o.closed = true
	o.frames, o.pending, o.queued = nil, nil, nil
	o.mu.Unlock()
	o.signal()
	_ = o.s.Reset()
}

// ---- losing links ----

// lostLocked tears down link l after one of its streams ended (reason),
// or went silent. A live member whose link went silent, or whose
// connections are all gone, is suspected; the overlay opens a new link if
// it still wants one.
func (m *Members) lostLocked(l *link, reason string, silent bool) {
	if m.links[l.peer] == l {
		delete(m.links, l.peer)
	}
	if l.out != nil {
		l.out.close()
		l.out = nil
	}
	if l.in != nil {
		_ = l.in.s.Reset()
		l.in = nil
	}
	if m.closing {
		return
	}
	p := l.peer
	m.log.Debug("membership link lost", "peer", p, "reason", reason)
	e := m.v.entries[p]
	if e == nil || !e.isLive() || !m.wanted[p] {
		return
	}
	connected := m.h.Network().Connectedness(p) == network.Connected
	if silent || !connected {
		// A link that worked went silent, or lost its connections: a
		// strong suspicion.
		m.suspectLocked(p, alertSuspect, reason)
	}
	m.failedLocked(p, errors.New(reason))
	if !silent && connected {
		// A stream ended but the connection is there: try again soon.
		m.retry[p].next = time.Now().Add(retryMin)
	}
}

// overflowLocked closes a link whose queue is full.
func (m *Members) overflowLocked(l *link) {
	m.overflows.Add(1)
	m.log.Info("membership link too slow; closing it (it will sync again)", "peer", l.peer)
	m.lostLocked(l, "queue full", false)
}

// quietOn reports whether this node sends no heartbeats on the link whose
// stream in is the peer's: the peer opened it with version 1.1.0 (it
// takes QUIC's acknowledgements of its own heartbeats as this node's sign
// of life), this node has the higher ID, and the stream runs over a direct
// QUIC connection. Both ends judge by the same stream, so they agree.
//
// Heartbeats one way instead of both: an idle link costs two packets per
// ProbeInterval (a heartbeat and QUIC's acknowledgement of it) instead of
// three, and each end fewer wake-ups; the heartbeats were over half of
// what an idle 50-node realm did (issue 17: 29% of one core with
// heartbeats every second, 12% with one every 5 s). Failures are found as
// fast: the quiet end hears a heartbeat every ProbeInterval, the other a
// packet (the acknowledgement) within an RTT of each of its own. Over a
// relay the packets are the relay's: heartbeats go both ways.
func (m *Members) quietOn(in *inStream) bool {
	return in != nil && m.self > in.link.peer && in.s.Protocol() == m.quietProto && heard.Direct(in.s.Conn())
}

// heardLocked returns when l's peer was last heard over a direct QUIC
// connection (any packet: an acknowledgement, a keep-alive, another
// protocol's traffic), as far as the ticks tell; the zero time when it has
// none. A process whose QUIC stack still answers is alive, if slow (the
// same evidence as the node's liveness pings: internal/heard); a stopped
// or dead one sends nothing.
func (m *Members) heardLocked(l *link, now time.Time) time.Time {
	n, direct := heard.Packets(m.h, l.peer)
	if !direct {
		l.heardN = 0
		return time.Time{}
	}
	if n > l.heardN {
		l.heardAt = now
	}
	l.heardN = n
	return l.heardAt
}

// linksTickLocked sends heartbeats and finds silent links.
func (m *Members) linksTickLocked(now time.Time) {
	for _, l := range m.links {
		if l.out != nil && !m.quietOn(l.in) && now.Sub(time.Unix(0, l.out.lastSent.Load())) >= m.cfg.ProbeInterval {
			if !l.out.push(ping, false) {
				m.overflowLocked(l)
				continue
			}
		}
		var last time.Time
		if l.in != nil {
			last = time.Unix(0, l.in.lastRecv.Load())
			if h := m.heardLocked(l, now); h.After(last) {
				last = h
			}
		}
		switch silence := m.probeTimeoutLocked(); {
		case now.Before(m.stalledUntil):
		case l.in != nil && now.Sub(last) >= silence:
			m.lostLocked(l, fmt.Sprintf("nothing heard for %v", silence), true)
		case l.in == nil && l.out != nil && now.Sub(l.outSince) >= m.cfg.ProbeTimeout:
			// The peer took our stream but opened none back (it is at
			// MaxLinks, or going): not a sign of failure by itself. But
			// a peer that hangs does the same (its host still accepts
			// streams), link after link: once that has lasted
			// ProbeTimeout, it is suspected, weakly and once, as an
			// unreachable one (a live peer refutes). Each new link
			// clears the retry state, so that cannot tell.
			p := l.peer
			nb := m.noBack[p]
			if nb == nil {
				nb = &noBackState{first: now}
				m.noBack[p] = nb
			}
			m.lostLocked(l, fmt.Sprintf("no stream back within %v", m.cfg.ProbeTimeout), false)
			if !nb.suspected && m.wanted[p] && now.Sub(nb.first) >= m.cfg.ProbeTimeout {
				nb.suspected = true
				m.suspectLocked(p, alertUnreachable, fmt.Sprintf("no stream back for %v", now.Sub(nb.first).Round(time.Millisecond)))
			}
		}
	}
}

// overlayLocked keeps the links the overlay wants: it recomputes the
// neighbours when the live set changed, protects their connections, opens
// missing links and closes unneeded ones once they have lingered.
func (m *Members) overlayLocked(now time.Time) {
	if m.dirty {
		m.dirty = false
		next := make(map[peer.ID]bool)
		for _, p := range m.v.neighbours() {
			next[p] = true
			if !m.wanted[p] {
				m.h.ConnManager().Protect(p, ConnProtectTag)
			}
		}
		for p := range m.wanted {
			if !next[p] {
				m.h.ConnManager().Unprotect(p, ConnProtectTag)
			}
		}
		m.wanted = next
	}
	upWanted := 0
	for p := range m.wanted {
		l := m.links[p]
		if l != nil && l.up() {
			upWanted++
			delete(m.retry, p)
			delete(m.noBack, p)
			continue
		}
		if l != nil && (l.opening || l.out != nil) {
			continue
		}
		if r := m.retry[p]; r != nil && now.Before(r.next) {
			continue
		}
		m.openLocked(p, nil)
	}
	if upWanted == 0 && len(m.wanted) > 0 {
		return // keep whatever links we have until the overlay's are up
	}
	for p, l := range m.links {
		if m.wanted[p] || now.Sub(l.created) < m.cfg.LinkLinger || l.opening {
			continue
		}
		m.closeLinkLocked(l)
	}
}

// closeLinkLocked ends a link the overlay does not need: our stream
// closes after what is queued; the peer then closes its own.
func (m *Members) closeLinkLocked(l *link) {
	delete(m.links, l.peer)
	if l.out != nil {
		l.out.drain(leaveFlush)
		l.out = nil
	}
	// Our reader ends when the peer closes its stream in turn; it finds
	// itself no longer the link's, so nothing more happens. A peer that
	// does not within ProbeTimeout (it hangs) has the stream reset: a
	// reader waiting on it for ever would also hold Close.
	if l.in != nil {
		m.lingering[l.in] = time.Now().Add(max(m.cfg.ProbeTimeout, leaveFlush))
		l.in = nil
	}
}

// answerPing sends our heartbeat at once, in answer to the peer's, when it
// would be due within half a ProbeInterval anyway: the two ends' heartbeats
// then travel together, and each carries QUIC's acknowledgement of the
// other's. An idle link costs three packets a second instead of four, and
// each end fewer wake-ups (the overlay's heartbeats were most of an idle
// node's packets once its idle connections were trimmed; issue 17). A
// peer that sends pings as fast as it can gets at most one answer per half
// interval.
func (o *outStream) answerPing(now time.Time) {
	half := int64(o.m.cfg.ProbeInterval / 2)
	t := now.UnixNano()
	if t-o.lastSent.Load() < half || t-o.answered.Load() < half {
		return
	}
	o.answered.Store(t)
	o.push(ping, false)
}
