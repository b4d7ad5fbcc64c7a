package rpc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/macula-io/macula/event"
	"github.com/macula-io/macula/frame"
	"github.com/macula-io/macula/tracing"
	"github.com/macula-io/macula/ucan"
)

// CallOption changes one call.
type CallOption func(*callOpts)

type callOpts struct {
	timeout  time.Duration
	start    time.Time // when Call began
	deadline time.Time // the call's deadline (never zero in a call)
	// dctx is ctx bound by deadline, made only on the slow paths (lookup,
	// dial, waiting for a slot, a local handler); cancel releases it.
	dctx       context.Context
	cancel     context.CancelFunc
	idempotent bool
	codec      Codec
	policy     Policy
	// trace is the binary trace context the request carries (package
	// tracing); nil when the call's ctx has none.
	trace []byte
}

// WithTimeout bounds the call; the earlier of it and the context's deadline
// wins.
func WithTimeout(d time.Duration) CallOption { return func(o *callOpts) { o.timeout = d } }

// Idempotent marks a call safe to run twice: if the connection is lost after
// it was sent, it is retried on another provider.
func Idempotent() CallOption { return func(o *callOpts) { o.idempotent = true } }

// WithCodec tags the payload's encoding (default Raw).
func WithCodec(c Codec) CallOption { return func(o *callOpts) { o.codec = c } }

// WithPolicy overrides the service's policy for this call.
func WithPolicy(p Policy) CallOption { return func(o *callOpts) { o.policy = p } }

// maxAttempts bounds the providers one call tries.
const maxAttempts = 4

// Call calls procedure with payload and returns the handler's answer. The
// payload is not retained after Call returns.
func (x *RPC) Call(ctx context.Context, procedure string, payload []byte, opts ...CallOption) ([]byte, error) {
	o := callOpts{policy: x.cfg.Policy}
	for _, f := range opts {
		f(&o)
	}
	if err := x.validateProcedure(procedure); err != nil {
		return nil, err
	}
	if len(payload) > x.cfg.MaxPayload {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, len(payload), x.cfg.MaxPayload)
	}
	start := time.Now()
	o.start = start
	// The deadline is kept, not turned into a context with a timer: a call
	// that goes out on an open stream waits on its connection's deadline
	// sweeper, one timer for all its calls.
	dl, ok := ctx.Deadline()
	if o.timeout > 0 && (!ok || start.Add(o.timeout).Before(dl)) {
		dl = start.Add(o.timeout)
	} else if !ok {
		dl = start.Add(x.cfg.DefaultTimeout)
	}
	o.deadline = dl
	defer func() {
		if o.cancel != nil {
			o.cancel()
		}
	}()
	x.bus.Emit(event.Event{Kind: event.CallStart, Time: start, Procedure: procedure})
	var span trace.Span
	if x.tracer != nil {
		ctx, span = x.tracer.Start(ctx, "call "+procedure, trace.WithSpanKind(trace.SpanKindClient), trace.WithTimestamp(start),
			trace.WithAttributes(attribute.String("rpc.system", "macula"), attribute.String("rpc.method", procedure)))
	}
	o.trace = tracing.FromContext(ctx)
	reply, callee, err := x.call(ctx, procedure, payload, &o)
	d := time.Since(start)
	outcome := outcomeOf(err)
	x.stats.record(outcome, d)
	x.bus.Emit(event.Event{Kind: event.CallStop, Time: start.Add(d), Procedure: procedure, Duration: d, Outcome: outcome, Peer: callee})
	if span != nil {
		endSpan(span, callee, outcome, err)
	}
	return reply, err
}

// call returns the callee's peer ID as a string (cached: base58 encoding a
// peer ID on every call is expensive), "" when none was reached.
func (x *RPC) call(ctx context.Context, procedure string, payload []byte, o *callOpts) ([]byte, string, error) {
	if x.ctx.Err() != nil {
		return nil, "", ErrClosed
	}
	self := x.openSelf
	if !x.openRealm {
		// A node without the grant learns so here, without traffic.
		self = x.cfg.Access.Self()
		if err := ucan.Check(self, ucan.Call, procedure); err != nil {
			return nil, "", fmt.Errorf("%w: calling %s: %w", ErrUnauthorized, procedure, err)
		}
	}
	if h := x.handler(procedure); h != nil {
		// A procedure advertised here is served here: no network path.
		reply, err := x.serveLocal(o.ctx(ctx), h, procedure, payload, o.codec, self)
		return reply, x.selfStr, err
	}
	var triedBuf [maxAttempts]peer.ID
	tried := triedBuf[:0]
	var lastErr error
	refreshed := false
	refusals := 0
	for attempt := 0; attempt < maxAttempts; attempt++ {
		p, c, fresh, err := x.choose(ctx, procedure, o, tried, !refreshed && attempt > 0)
		refreshed = refreshed || fresh
		if err != nil {
			if lastErr != nil && errors.Is(err, ErrNotFound) {
				return nil, "", lastErr
			}
			return nil, "", err
		}
		tried = append(tried, p)
		reply, sent, err := x.callPeer(ctx, p, c, procedure, payload, o)
		if err == nil {
			return reply, x.peerString(p, c), nil
		}
		var re *RemoteError
		var refused *providerRefused
		switch {
		case errors.As(err, &refused):
			// Not sent: this provider has no right to serve the
			// procedure. Another one is tried; refusals do not count as
			// attempts, but a lookup returns at most lookupLimit of them.
			if err := o.ctxErr(ctx); err != nil {
				return nil, "", err
			}
			lastErr = fmt.Errorf("%w: %s: no authorized provider (%v)", ErrNotFound, procedure, refused)
			if refusals++; refusals <= lookupLimit {
				attempt--
			}
			continue
		case errors.As(err, &re) && re.Code == CodeNotAdvertised:
			// It never ran: this provider withdrew. Try another.
			x.forget(procedure, p)
			lastErr = fmt.Errorf("%w: %s (a provider withdrew)", ErrNotFound, procedure)
			continue
		case errors.Is(err, ErrDisconnected) && (!sent || o.idempotent):
			x.markUnreachable(procedure, p)
			lastErr = err
			if err := o.ctxErr(ctx); err != nil {
				return nil, x.peerString(p, nil), err
			}
			continue
		case errors.Is(err, ErrDisconnected):
			// It may have run: no retry, but keep the next calls away.
			x.markUnreachable(procedure, p)
		}
		return nil, x.peerString(p, nil), err
	}
	return nil, "", lastErr
}

// ctx returns ctx bound by the call's deadline, making it on first use.
func (o *callOpts) ctx(ctx context.Context) context.Context {
	if o.dctx == nil {
		o.dctx, o.cancel = context.WithDeadline(ctx, o.deadline)
	}
	return o.dctx
}

// ctxErr is ctxError(ctx), or ErrTimeout once the call's deadline passed.
func (o *callOpts) ctxErr(ctx context.Context) error {
	if ctx.Err() != nil {
		return ctxError(ctx)
	}
	if !time.Now().Before(o.deadline) {
		return ErrTimeout
	}
	return nil
}

func ctxError(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return ErrTimeout
	}
	return ctx.Err()
}

func (x *RPC) serveLocal(ctx context.Context, h Handler, procedure string, payload []byte, codec Codec, vd *ucan.Verdict) (reply []byte, err error) {
	x.stats.served.Add(1)
	if x.bus.Wants(event.CallServed) && !internal(procedure) {
		start := time.Now()
		defer func() {
			x.bus.Emit(event.Event{Kind: event.CallServed, Procedure: procedure, Outcome: servedOutcomeOf(err), Duration: time.Since(start)})
		}()
	}
	done := make(chan result, 1)
	x.wg.Add(1)
	go func() {
		defer x.wg.Done()
		var r result
		defer func() {
			if p := recover(); p != nil {
				r = result{err: &RemoteError{Code: CodeInternal, Message: fmt.Sprintf("handler panicked: %v", p)}}
			}
			done <- r
		}()
		r.reply, r.err = h(ctx, &Request{Procedure: procedure, Payload: payload, Codec: codec, Caller: x.self, Verdict: vd})
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		return nil, ctxError(ctx)
	}
	if r.err != nil {
		if ctx.Err() != nil {
			return nil, ctxError(ctx)
		}
		var re *RemoteError
		if !errors.As(r.err, &re) {
			return nil, &RemoteError{Code: CodeInternal, Message: r.err.Error()}
		}
		return nil, r.err
	}
	if len(r.reply) > x.cfg.MaxPayload {
		return nil, &RemoteError{Code: CodeInternal, Message: fmt.Sprintf("reply of %d bytes is over the limit of %d", len(r.reply), x.cfg.MaxPayload)}
	}
	return r.reply, nil
}

// Pending is a call in progress, from CallAsync.
type Pending struct {
	done  chan struct{}
	reply []byte
	err   error
}

// Done is closed when the call has finished.
func (p *Pending) Done() <-chan struct{} { return p.done }

// Result returns the call's outcome; it blocks until Done.
func (p *Pending) Result() ([]byte, error) {
	<-p.done
	return p.reply, p.err
}

// Wait waits for the result or for ctx.
func (p *Pending) Wait(ctx context.Context) ([]byte, error) {
	select {
	case <-p.done:
		return p.reply, p.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// CallAsync starts a call and returns at once. The call is bound by ctx like
// Call; payload must not change until the call is done.
func (x *RPC) CallAsync(ctx context.Context, procedure string, payload []byte, opts ...CallOption) *Pending {
	p := &Pending{done: make(chan struct{})}
	x.mu.Lock()
	if x.closed {
		x.mu.Unlock()
		p.err = ErrClosed
		close(p.done)
		return p
	}
	x.wg.Add(1)
	x.mu.Unlock()
	go func() {
		defer x.wg.Done()
		defer close(p.done)
		p.reply, p.err = x.Call(ctx, procedure, payload, opts...)
	}()
	return p
}

// pendingCall is a call waiting for its response on a clientConn.
type pendingCall struct {
	ch       chan result // capacity 1; one send, by whoever removed it from pending
	deadline time.Time
	sent     time.Time
}

type result struct {
	reply []byte
	err   error
}

// clientConn is the long-lived stream to one callee.
type clientConn struct {
	x       *RPC
	peer    peer.ID
	peerStr string // peer.String(), once: base58 is costly
	// trace: the stream speaks ProtocolTrace, so requests may carry a
	// trace context. Set at open, read-only after.
	trace    bool
	inflight atomic.Int64
	w        *wstream
	sem      chan struct{} // bounds calls in flight
	ids      atomic.Uint64
	// draining: a direct connection replaced the relayed one this stream
	// runs on; no new calls, and the stream closes when the last one ends.
	draining atomic.Bool
	// adsMu serialises the sending of our procedure list (ads.go).
	adsMu sync.Mutex
	// adsSent is the generation of our list the stream had last; written
	// under both adsMu and RPC.mu, so either suffices to read it.
	adsSent uint64

	// lastRecv is when the last frame came from the peer (unix ns); kept
	// only with Config.Unanswered.
	lastRecv atomic.Int64

	// mu guards pending, err, nextSweep and probeArmed.
	mu      sync.Mutex
	pending map[uint64]*pendingCall
	err     error // set once the stream is finished
	// sweep fails the calls whose deadline passed; it is armed at
	// nextSweep (zero: not armed), the earliest deadline it knows of.
	sweep     *time.Timer
	nextSweep time.Time
	// probe, with Config.Unanswered only, checks whether calls wait on a
	// silent peer (checkUnanswered); armed while calls are pending.
	probe      *time.Timer
	probeArmed bool
}

// callPeer sends one call to p. sent reports whether the request may have
// reached p (and so may have run).
// c is the stream to p if choose found one, else nil.
func (x *RPC) callPeer(ctx context.Context, p peer.ID, c *clientConn, procedure string, payload []byte, o *callOpts) (reply []byte, sent bool, err error) {
	if c != nil && c.draining.Load() {
		c = nil // moving to a direct connection: take the new stream
	}
	reply, sent, err = x.callPeerOnce(ctx, p, c, procedure, payload, o)
	if !sent && errors.Is(err, errDrained) {
		// Drained between choose and sending: nothing was sent; go again
		// on the stream that replaced it.
		reply, sent, err = x.callPeerOnce(ctx, p, nil, procedure, payload, o)
	}
	return reply, sent, err
}

func (x *RPC) callPeerOnce(ctx context.Context, p peer.ID, c *clientConn, procedure string, payload []byte, o *callOpts) (reply []byte, sent bool, err error) {
	if c == nil {
		c, err = x.conn(o.ctx(ctx), p)
		if err != nil {
			if err := o.ctxErr(ctx); err != nil {
				return nil, false, err
			}
			return nil, false, err
		}
	}
	if !x.openRealm && !internal(procedure) {
		if err := x.checkProvider(ctx, p, procedure, o); err != nil {
			return nil, false, err
		}
	}
	select {
	case c.sem <- struct{}{}:
	default:
		select {
		case c.sem <- struct{}{}:
		case <-o.ctx(ctx).Done():
			return nil, false, o.ctxErr(ctx)
		}
	}
	defer func() { <-c.sem }()
	c.inflight.Add(1)
	defer c.inflight.Add(-1)

	id := c.ids.Add(1)
	now := time.Now()
	left := o.deadline.Sub(now)
	if left <= 0 {
		return nil, false, ErrTimeout
	}
	pc := &pendingCall{ch: make(chan result, 1), deadline: o.deadline, sent: now}
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return nil, false, c.err
	}
	c.pending[id] = pc
	if c.nextSweep.IsZero() || o.deadline.Before(c.nextSweep) {
		c.nextSweep = o.deadline
		c.sweep.Reset(left)
	}
	if c.probe != nil && !c.probeArmed {
		c.probeArmed = true
		c.probe.Reset(x.cfg.ProbeAfter)
	}
	c.mu.Unlock()

	req := request{id: id, timeout: int64(left), codec: o.codec, procedure: procedure, payload: payload}
	if o.idempotent {
		req.flags |= flagIdempotent
	}
	version := uint8(wireVersion)
	if o.trace != nil && c.trace {
		req.trace, version = o.trace, wireVersionTrace
	}
	b := startFrameVersion(frameRequest, version)
	*b = appendRequest(*b, &req)
	sealFrame(b)
	if x.cfg.Depends != nil {
		x.cfg.Depends(p)
	}
	if err := c.w.send(b); err != nil {
		c.drop(id)
		return nil, false, fmt.Errorf("%w: %s: %v", ErrDisconnected, p, err)
	}
	select {
	case r := <-pc.ch:
		return r.reply, true, r.err
	case <-ctx.Done():
		c.drop(id)
		cb := startFrame(frameCancel)
		*cb = appendCancel(*cb, id)
		sealFrame(cb)
		c.w.trySend(cb)
		return nil, true, ctxError(ctx)
	}
}

// sweepNow fails the calls whose deadline passed and arms the sweep timer
// at the earliest deadline left. With a common timeout it runs about once
// per timeout, however many calls there are.
func (c *clientConn) sweepNow() {
	type expired struct {
		id uint64
		pc *pendingCall
	}
	var gone []expired
	now := time.Now()
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	var next time.Time
	for id, pc := range c.pending {
		if !now.Before(pc.deadline) {
			delete(c.pending, id)
			gone = append(gone, expired{id, pc})
		} else if next.IsZero() || pc.deadline.Before(next) {
			next = pc.deadline
		}
	}
	c.nextSweep = next
	if !next.IsZero() {
		c.sweep.Reset(next.Sub(now))
	}
	c.mu.Unlock()
	for _, e := range gone {
		// The cancel goes out before the caller learns of the timeout:
		// whatever it sends next follows the cancel on the stream.
		cb := startFrame(frameCancel)
		*cb = appendCancel(*cb, e.id)
		sealFrame(cb)
		c.w.trySend(cb)
		e.pc.ch <- result{err: ErrTimeout}
	}
	if len(gone) > 0 {
		c.closeIfDrained()
	}
}

// checkUnanswered tells Config.Unanswered of the peer when calls have
// waited ProbeAfter while nothing came from it, and arms itself again while
// calls are pending.
func (c *clientConn) checkUnanswered() {
	after := c.x.cfg.ProbeAfter
	now := time.Now()
	c.mu.Lock()
	if c.err != nil || len(c.pending) == 0 {
		c.probeArmed = false
		c.mu.Unlock()
		return
	}
	quiet := time.Unix(0, c.lastRecv.Load()) // silent since
	oldest := now
	for _, pc := range c.pending {
		if pc.sent.Before(oldest) {
			oldest = pc.sent
		}
	}
	if oldest.After(quiet) {
		quiet = oldest
	}
	wait := after - now.Sub(quiet)
	silent := wait <= 0
	if silent {
		wait = after
	}
	c.probe.Reset(wait)
	c.mu.Unlock()
	if silent {
		c.x.cfg.Unanswered(c.peer)
	}
}

func (c *clientConn) drop(id uint64) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
	c.closeIfDrained()
}

// fail ends the stream and every call waiting on it.
func (c *clientConn) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	pend := c.pending
	c.pending = map[uint64]*pendingCall{}
	c.mu.Unlock()
	c.sweep.Stop()
	if c.probe != nil {
		c.probe.Stop()
	}
	c.w.finish(true)
	for _, pc := range pend {
		pc.ch <- result{err: err}
	}
	c.x.mu.Lock()
	if c.x.conns[c.peer] == c {
		delete(c.x.conns, c.peer)
	}
	delete(c.x.draining, c)
	c.x.mu.Unlock()
}

// errDrained ends a stream that was replaced by one on a direct connection.
var errDrained = fmt.Errorf("%w: stream moved to a direct connection", ErrDisconnected)

// drain stops new calls on c and closes it once its calls have ended.
func (c *clientConn) drain() {
	c.draining.Store(true)
	c.closeIfDrained()
}

func (c *clientConn) closeIfDrained() {
	if !c.draining.Load() {
		return
	}
	c.mu.Lock()
	idle := len(c.pending) == 0
	c.mu.Unlock()
	if idle {
		c.fail(errDrained)
	}
}

func (c *clientConn) readLoop() {
	defer c.x.wg.Done()
	// A buffered reader: one stream Read takes many frames, not two
	// (header, body) per frame.
	fr := frame.NewReader(bufio.NewReaderSize(c.w.s, readBufSize), uint32(c.x.cfg.MaxPayload+frameOverhead))
	for {
		h, body, err := fr.Next()
		if err != nil {
			c.fail(fmt.Errorf("%w: %s: %v", ErrDisconnected, c.peer, err))
			c.w.wait()
			return
		}
		if c.probe != nil {
			c.lastRecv.Store(time.Now().UnixNano())
		}
		if h.Type != frameResponse || h.Version != wireVersion {
			c.fail(fmt.Errorf("%w: %s sent frame type %d version %d", ErrDisconnected, c.peer, h.Type, h.Version))
			c.w.wait()
			return
		}
		resp, err := parseResponse(body)
		if err != nil {
			c.fail(fmt.Errorf("%w: %s: %v", ErrDisconnected, c.peer, err))
			c.w.wait()
			return
		}
		c.mu.Lock()
		pc := c.pending[resp.id]
		delete(c.pending, resp.id)
		c.mu.Unlock()
		if pc == nil {
			continue // cancelled or timed out already
		}
		if resp.status == statusOK {
			pc.ch <- result{reply: append([]byte(nil), resp.payload...)}
		} else {
			re := *resp.err
			re.Data = append([]byte(nil), re.Data...)
			var err error = &re
			switch re.Code {
			case CodeTimeout:
				err = fmt.Errorf("%w: %s", ErrTimeout, re.Message)
			}
			pc.ch <- result{err: err}
		}
		c.closeIfDrained()
	}
}

// conn returns the stream to p, opening it (once, however many callers
// ask at the same time) if needed.
func (x *RPC) conn(ctx context.Context, p peer.ID) (*clientConn, error) {
	for {
		x.mu.Lock()
		if x.closed {
			x.mu.Unlock()
			return nil, ErrClosed
		}
		if c := x.conns[p]; c != nil {
			x.mu.Unlock()
			return c, nil
		}
		wait, busy := x.dialing[p]
		if !busy {
			wait = make(chan struct{})
			x.dialing[p] = wait
		}
		x.mu.Unlock()
		if busy {
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		c, err := x.open(ctx, p)
		x.mu.Lock()
		delete(x.dialing, p)
		close(wait)
		if err == nil {
			if x.closed {
				x.mu.Unlock()
				c.fail(ErrClosed)
				c.w.wait()
				return nil, ErrClosed
			}
			x.conns[p] = c
			x.wg.Add(1)
			go c.readLoop()
			if x.adsGen != 0 {
				x.wakeAds() // the new stream gets our procedures
			}
		}
		x.mu.Unlock()
		return c, err
	}
}

func (x *RPC) open(ctx context.Context, p peer.ID) (*clientConn, error) {
	dctx, cancel := context.WithTimeout(ctx, x.cfg.DialTimeout)
	defer cancel()
	s, err := x.h.NewStream(network.WithAllowLimitedConn(dctx, "macula rpc"), p, x.protoTrace, x.proto)
	if err != nil {
		return nil, fmt.Errorf("%w: no route to %s: %v", ErrDisconnected, p, err)
	}
	c := &clientConn{
		x: x, peer: p, peerStr: p.String(), trace: s.Protocol() == x.protoTrace,
		sem:     make(chan struct{}, x.cfg.MaxInFlightPerPeer),
		pending: make(map[uint64]*pendingCall),
	}
	c.w = newWStream(s, x.cfg.MaxInFlightPerPeer+16, func() bool { return len(c.sem) > 1 })
	c.sweep = time.AfterFunc(time.Hour, c.sweepNow)
	c.sweep.Stop()
	if x.cfg.Unanswered != nil {
		c.probe = time.AfterFunc(time.Hour, c.checkUnanswered)
		c.probe.Stop()
	}
	return c, nil
}

// peerString returns p.String(), from c (the stream to p) when known.
func (x *RPC) peerString(p peer.ID, c *clientConn) string {
	if c == nil {
		x.mu.Lock()
		c = x.conns[p]
		x.mu.Unlock()
	}
	if c != nil && c.peer == p {
		return c.peerStr
	}
	return p.String()
}

// AddAddrs lets callers teach the host a provider's addresses.
func (x *RPC) addAddrs(ai peer.AddrInfo) {
	if len(ai.Addrs) > 0 && ai.ID != x.h.ID() {
		x.h.Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.TempAddrTTL)
	}
}

// endSpan ends a call's span with its peer and outcome.
func endSpan(span trace.Span, peer, outcome string, err error) {
	if peer != "" {
		span.SetAttributes(attribute.String("macula.peer", peer))
	}
	span.SetAttributes(attribute.String("macula.outcome", outcome))
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
