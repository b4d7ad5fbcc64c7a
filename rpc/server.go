package rpc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/macula-io/macula/event"
	"github.com/macula-io/macula/frame"
	"github.com/macula-io/macula/peerdid"
	"github.com/macula-io/macula/ucan"
)

// serverConn serves the calls arriving on one stream.
type serverConn struct {
	x      *RPC
	w      *wstream
	caller Caller
	// callerStr is caller.PeerID as text, made once per stream.
	callerStr string
	// trace: the stream speaks ProtocolTrace (requests may carry a trace
	// context). Set at construction, read-only after.
	trace bool
	// open is the caller's verdict in an open realm (made once per
	// stream); nil in a secure realm, where every call looks it up.
	open *ucan.Verdict
	sem  chan struct{}  // bounds handlers running for this caller
	wg   sync.WaitGroup // handlers running

	// mu guards running.
	mu      sync.Mutex
	running map[uint64]*callCtx
}

func (x *RPC) handleStream(s network.Stream) {
	x.mu.Lock()
	if x.closed {
		x.mu.Unlock()
		_ = s.Reset()
		return
	}
	p := s.Conn().RemotePeer()
	sc := &serverConn{
		x: x, caller: Caller{PeerID: p, DID: peerdid.Of(p)}, callerStr: p.String(), trace: s.Protocol() == x.protoTrace,
		sem:     make(chan struct{}, x.cfg.MaxConcurrentPerPeer),
		running: make(map[uint64]*callCtx),
	}
	if x.openRealm {
		sc.open = ucan.OpenVerdict(sc.caller.DID)
	}
	sc.w = newWStream(s, x.cfg.MaxConcurrentPerPeer+16, func() bool { return len(sc.sem) > 0 }) // a handler still running: its answer may share the write
	x.serving[sc] = struct{}{}
	x.wg.Add(1)
	x.mu.Unlock()
	defer x.wg.Done()
	err := sc.readLoop()
	if err != nil && !errors.Is(err, errStreamClosed) {
		x.log.Debug("rpc stream closed", "peer", p, "err", err)
	}
	x.dropAds(sc)
	// Calls still running lose their caller: cancel them, then wait.
	sc.mu.Lock()
	for _, c := range sc.running {
		c.cancel(context.Canceled)
	}
	sc.mu.Unlock()
	sc.wg.Wait()
	sc.w.finish(err != nil)
	sc.w.wait()
	x.mu.Lock()
	delete(x.serving, sc)
	x.mu.Unlock()
}

func (sc *serverConn) readLoop() error {
	x := sc.x
	fr := frame.NewReader(bufio.NewReaderSize(sc.w.s, readBufSize), uint32(x.cfg.MaxPayload+frameOverhead))
	for {
		h, body, err := fr.Next()
		if err != nil {
			return err
		}
		if h.Version != wireVersion && !(h.Version == wireVersionTrace && h.Type == frameRequest && sc.trace) {
			return fmt.Errorf("%w: version %d of frame type %d", errMalformed, h.Version, h.Type)
		}
		switch h.Type {
		case frameRequest:
			req, err := parseRequestVersion(body, h.Version)
			if err != nil {
				return err
			}
			if len(req.payload) > x.cfg.MaxPayload {
				sc.refusedEvent(req.procedure, ServedBadRequest)
				sc.respondErr(req.id, req.codec, &RemoteError{Code: CodeBadRequest, Message: fmt.Sprintf("payload of %d bytes is over the limit of %d", len(req.payload), x.cfg.MaxPayload)})
				continue
			}
			vd := sc.open
			if vd == nil {
				vd = x.cfg.Access.Peer(sc.caller.PeerID)
			}
			if sc.open == nil && !internal(req.procedure) {
				// Looked up per call: the node replaces the verdict when
				// the peer presents new chains, and drops it when the
				// peer leaves the realm.
				if err := ucan.Check(vd, ucan.Call, req.procedure); err != nil {
					x.stats.refused.Add(1)
					sc.refusedEvent(req.procedure, ServedUnauthorized)
					sc.respondErr(req.id, req.codec, &RemoteError{Code: CodeUnauthorized, Message: fmt.Sprintf("calling %s: %v", req.procedure, err)})
					continue
				}
			}
			if !x.load.take(sc.caller.PeerID, len(req.payload)) {
				sc.refusedEvent(req.procedure, ServedOverloaded)
				sc.respondErr(req.id, req.codec, &RemoteError{Code: CodeOverloaded, Message: "too many calls or payload bytes in flight from this caller, or from all"})
				continue
			}
			select {
			case sc.sem <- struct{}{}:
			default:
				x.load.give(sc.caller.PeerID, len(req.payload))
				sc.refusedEvent(req.procedure, ServedOverloaded)
				sc.respondErr(req.id, req.codec, &RemoteError{Code: CodeOverloaded, Message: "too many calls in flight from this caller"})
				continue
			}
			req.payload = append([]byte(nil), req.payload...) // the reader reuses body
			ctx := newCallCtx(req.timeout)
			sc.mu.Lock()
			sc.running[req.id] = ctx
			sc.mu.Unlock()
			sc.wg.Add(1)
			x.drain.enter()
			go func() {
				defer sc.wg.Done()
				defer x.drain.exit()
				sc.serve(ctx, req, vd)
			}()
		case frameAdsSet, frameAdsAdd:
			procs, err := parseProcedures(body)
			if err != nil {
				return err
			}
			if err := x.onAds(sc, procs, h.Type == frameAdsSet); err != nil {
				return err
			}
		case frameCancel:
			id, err := parseCancel(body)
			if err != nil {
				return err
			}
			sc.mu.Lock()
			if c := sc.running[id]; c != nil {
				c.cancel(context.Canceled)
			}
			sc.mu.Unlock()
		default:
			return fmt.Errorf("%w: frame type %d", errMalformed, h.Type)
		}
	}
}

func (sc *serverConn) serve(ctx *callCtx, req request, vd *ucan.Verdict) {
	x := sc.x
	// The caller's slot is free once the handler is done, before the
	// answer goes out: a caller that waits for each answer before its next
	// call never finds its own finished call still counted (it did, and
	// got "overloaded", when the slot was freed after the send).
	freed := false
	free := func() {
		if !freed {
			freed = true
			<-sc.sem
			x.load.give(sc.caller.PeerID, len(req.payload))
		}
	}
	defer free()
	outcome := ServedOK
	if x.bus.Wants(event.CallServed) && !internal(req.procedure) {
		// The call's start: its deadline is the arrival plus the time
		// left, so only calls without one read the clock here.
		start := ctx.deadline.Add(-time.Duration(req.timeout))
		if req.timeout <= 0 {
			start = time.Now()
		}
		defer func() { sc.servedEvent(req.procedure, outcome, time.Since(start)) }()
	}
	defer func() {
		ctx.cancel(context.Canceled)
		sc.mu.Lock()
		delete(sc.running, req.id)
		sc.mu.Unlock()
	}()
	// The caller's trace goes on into the handler (and whatever it
	// calls), with a server span of ours in between when we record.
	var hctx context.Context = ctx
	if req.sc.IsValid() {
		hctx = trace.ContextWithRemoteSpanContext(ctx, req.sc)
	}
	if x.tracer != nil && (req.sc.IsValid() || !internal(req.procedure)) {
		// Internal procedures get a span only inside a trace: alone they
		// are the node's own chatter.
		var span trace.Span
		hctx, span = x.tracer.Start(hctx, "serve "+req.procedure, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("rpc.system", "macula"), attribute.String("rpc.method", req.procedure),
				attribute.String("macula.peer", sc.callerStr)))
		defer func() {
			span.SetAttributes(attribute.String("macula.outcome", outcome))
			if outcome != ServedOK {
				span.SetStatus(codes.Error, outcome)
			}
			span.End()
		}()
	}
	h := x.handler(req.procedure)
	if h == nil {
		outcome = ServedNotAdvertised
		free()
		sc.respondErr(req.id, req.codec, &RemoteError{Code: CodeNotAdvertised, Message: req.procedure + " is not advertised here"})
		return
	}
	x.stats.served.Add(1)
	reply, err := func() (reply []byte, err error) {
		defer func() {
			if r := recover(); r != nil {
				x.log.Error("rpc handler panicked", "procedure", req.procedure, "panic", r)
				err = &RemoteError{Code: CodeInternal, Message: fmt.Sprintf("handler panicked: %v", r)}
			}
		}()
		return h(hctx, &Request{Procedure: req.procedure, Payload: req.payload, Codec: req.codec, Caller: sc.caller, Verdict: vd})
	}()
	free()
	if ctx.Err() != nil {
		outcome = ServedCancelled
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			outcome = ServedTimeout
			sc.respondErr(req.id, req.codec, &RemoteError{Code: CodeTimeout, Message: "handler ran past the deadline"})
		}
		return // cancelled: the caller no longer waits
	}
	if err != nil {
		outcome = ServedRemoteError
		var re *RemoteError
		if !errors.As(err, &re) {
			re = &RemoteError{Code: CodeInternal, Message: err.Error()}
		}
		sc.respondErr(req.id, req.codec, re)
		return
	}
	if len(reply) > x.cfg.MaxPayload {
		outcome = ServedRemoteError
		sc.respondErr(req.id, req.codec, &RemoteError{Code: CodeInternal, Message: fmt.Sprintf("reply of %d bytes is over the limit of %d", len(reply), x.cfg.MaxPayload)})
		return
	}
	b := startFrame(frameResponse)
	*b = appendResponse(*b, &response{id: req.id, status: statusOK, codec: req.codec, payload: reply})
	sealFrame(b)
	_ = sc.w.send(b)
}

// servedEvent emits a call_served event (the caller made sure the bus
// wants one).
func (sc *serverConn) servedEvent(procedure, outcome string, d time.Duration) {
	sc.x.bus.Emit(event.Event{Kind: event.CallServed, Procedure: procedure, Peer: sc.callerStr, Outcome: outcome, Duration: d})
}

// refusedEvent emits a call_served event for a call refused before its
// handler ran, if the bus wants one.
func (sc *serverConn) refusedEvent(procedure, outcome string) {
	if sc.x.bus.Wants(event.CallServed) && !internal(procedure) {
		sc.servedEvent(procedure, outcome, 0)
	}
}

func (sc *serverConn) respondErr(id uint64, codec Codec, re *RemoteError) {
	b := startFrame(frameResponse)
	*b = appendResponse(*b, &response{id: id, status: statusError, codec: codec, err: re})
	sealFrame(b)
	_ = sc.w.send(b)
}
