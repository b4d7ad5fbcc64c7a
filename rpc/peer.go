package rpc

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/macula-io/macula/tracing"
)

// ErrUnreachable: CallPeer could not send the request (no connection or
// stream to the peer). It matches ErrDisconnected too; unlike a call that
// lost its connection after it was sent, it certainly did not run.
var ErrUnreachable = fmt.Errorf("%w: request not sent", ErrDisconnected)

// Internal procedures are how services built on rpc (actors, registry) talk
// to one node of the realm over its long-lived stream. Their names start
// with "/" (so no realm procedure can have them); they are served only
// where Handle registered them, never announced in the DHT, and not checked
// against ucan.Call or ucan.Advertise: the handler authorizes each request
// with Request.Verdict (the caller's verdict, never nil).
func internal(name string) bool { return strings.HasPrefix(name, "/") }

// Handle serves the internal procedure name (it must start with "/", at
// most 255 bytes) with h on this node. Reach it with CallPeer.
func (x *RPC) Handle(name string, h Handler) error {
	if !internal(name) || len(name) > 255 || h == nil {
		return fmt.Errorf("rpc: Handle %q: want a name starting with \"/\", at most 255 bytes, and a handler", name)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		return ErrClosed
	}
	old := *x.handlers.Load()
	if _, ok := old[name]; ok {
		return fmt.Errorf("%w: %s", ErrAlreadyAdvertised, name)
	}
	m := maps.Clone(old)
	m[name] = h
	x.handlers.Store(&m)
	return nil
}

// Unhandle stops serving the internal procedure name; later requests are
// answered "not advertised".
func (x *RPC) Unhandle(name string) {
	if !internal(name) {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	old := *x.handlers.Load()
	if _, ok := old[name]; ok {
		m := maps.Clone(old)
		delete(m, name)
		x.handlers.Store(&m)
	}
}

// CallPeer calls the internal procedure name on the node p, on the
// long-lived stream to p: no provider lookup, no failover, no retry. p may
// be this node. Errors are Call's; one that wraps ErrUnreachable was not
// sent. The reply is the handler's; the payload is not retained.
func (x *RPC) CallPeer(ctx context.Context, p peer.ID, name string, payload []byte, opts ...CallOption) ([]byte, error) {
	if !internal(name) || len(name) > 255 {
		return nil, fmt.Errorf("rpc: CallPeer %q: not an internal procedure", name)
	}
	if len(payload) > x.cfg.MaxPayload {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, len(payload), x.cfg.MaxPayload)
	}
	o := callOpts{policy: x.cfg.Policy}
	for _, f := range opts {
		f(&o)
	}
	o.start = time.Now()
	dl, ok := ctx.Deadline()
	if o.timeout > 0 && (!ok || o.start.Add(o.timeout).Before(dl)) {
		dl = o.start.Add(o.timeout)
	} else if !ok {
		dl = o.start.Add(x.cfg.DefaultTimeout)
	}
	o.deadline = dl
	defer func() {
		if o.cancel != nil {
			o.cancel()
		}
	}()
	var span trace.Span
	if x.tracer != nil {
		ctx, span = x.tracer.Start(ctx, "call "+name, trace.WithSpanKind(trace.SpanKindClient), trace.WithTimestamp(o.start),
			trace.WithAttributes(attribute.String("rpc.system", "macula"), attribute.String("rpc.method", name)))
	}
	o.trace = tracing.FromContext(ctx)
	reply, err := x.callPeerInternal(ctx, p, name, payload, &o)
	outcome := outcomeOf(err)
	x.stats.record(outcome, time.Since(o.start))
	if span != nil {
		endSpan(span, p.String(), outcome, err)
	}
	return reply, err
}

func (x *RPC) callPeerInternal(ctx context.Context, p peer.ID, name string, payload []byte, o *callOpts) ([]byte, error) {
	if x.ctx.Err() != nil {
		return nil, ErrClosed
	}
	if p == x.h.ID() {
		h := x.handler(name)
		if h == nil {
			return nil, &RemoteError{Code: CodeNotAdvertised, Message: name + " is not served here"}
		}
		vd := x.openSelf
		if !x.openRealm {
			vd = x.cfg.Access.Self()
		}
		return x.serveLocal(o.ctx(ctx), h, name, payload, o.codec, vd)
	}
	var c *clientConn
	x.mu.Lock()
	c = x.conns[p]
	x.mu.Unlock()
	reply, sent, err := x.callPeer(ctx, p, c, name, payload, o)
	if err != nil && !sent && errors.Is(err, ErrDisconnected) {
		return nil, fmt.Errorf("%w: %s: %v", ErrUnreachable, p, err)
	}
	return reply, err
}
