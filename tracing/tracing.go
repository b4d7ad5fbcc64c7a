// Package tracing carries W3C trace context (https://www.w3.org/TR/trace-context/)
// across Macula's wire: the binary form that rpc requests carry (request
// frames of version 2 on rpc/1.1.0 streams), and the traceparent/tracestate
// headers of the API's calls and of webhooks. A trace started by a program
// (an OpenTelemetry span in its context, or a traceparent header on POST
// /v1/call) goes through the nodes the call crosses, and out to the
// webhook that serves it. Pub/sub messages do not carry it yet.
//
// Spans are made only when the program configures a TracerProvider
// (node.Config.RPC.TracerProvider; macula-node run --otlp-endpoint exports
// them over OTLP/HTTP, package tracing/otlp). Without one no span is made
// and nothing is exported; a context that already carries a trace is still
// passed on, so a trace crosses nodes that do not record.
//
// # Binary form
//
//	version uint8 (0) | trace-id [16] | parent-id [8] | flags uint8 |
//	tracestate length uint16 (big endian, at most MaxState) | tracestate (its header text)
//
// 28 bytes without tracestate. A reader refuses another version, an
// all-zero trace or parent id, and a tracestate over MaxState or not
// valid per W3C.
package tracing

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// MaxState bounds the tracestate carried on the wire, in bytes (W3C
// advises propagating at least 512).
const MaxState = 512

// Len is the length of the binary form without tracestate.
const Len = 1 + 16 + 8 + 1 + 2

// ErrMalformed: bytes that are not the binary form.
var ErrMalformed = errors.New("tracing: malformed trace context")

// Append appends sc's binary form. A tracestate over MaxState is left out.
func Append(dst []byte, sc trace.SpanContext) []byte {
	tid, sid := sc.TraceID(), sc.SpanID()
	dst = append(dst, 0)
	dst = append(dst, tid[:]...)
	dst = append(dst, sid[:]...)
	dst = append(dst, byte(sc.TraceFlags()))
	ts := sc.TraceState().String()
	if len(ts) > MaxState {
		ts = ""
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(ts)))
	return append(dst, ts...)
}

// Parse reads a binary form from the start of b and returns the span
// context (remote) and the bytes after it.
func Parse(b []byte) (trace.SpanContext, []byte, error) {
	if len(b) < Len {
		return trace.SpanContext{}, nil, fmt.Errorf("%w: %d bytes", ErrMalformed, len(b))
	}
	if b[0] != 0 {
		return trace.SpanContext{}, nil, fmt.Errorf("%w: version %d", ErrMalformed, b[0])
	}
	var tid trace.TraceID
	var sid trace.SpanID
	copy(tid[:], b[1:17])
	copy(sid[:], b[17:25])
	flags := trace.TraceFlags(b[25])
	n := int(binary.BigEndian.Uint16(b[26:28]))
	if n > MaxState || len(b) < Len+n {
		return trace.SpanContext{}, nil, fmt.Errorf("%w: tracestate of %d bytes", ErrMalformed, n)
	}
	cfg := trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: flags, Remote: true}
	if n > 0 {
		ts, err := trace.ParseTraceState(string(b[Len : Len+n]))
		if err != nil {
			return trace.SpanContext{}, nil, fmt.Errorf("%w: tracestate: %v", ErrMalformed, err)
		}
		cfg.TraceState = ts
	}
	sc := trace.NewSpanContext(cfg)
	if !sc.IsValid() {
		return trace.SpanContext{}, nil, fmt.Errorf("%w: zero trace or parent id", ErrMalformed)
	}
	return sc, b[Len+n:], nil
}

// FromContext returns the binary form of ctx's span context, or nil when
// it has none: what a sender puts on the wire.
func FromContext(ctx context.Context) []byte {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return nil
	}
	return Append(make([]byte, 0, Len+len(sc.TraceState().String())), sc)
}

// Propagator is the W3C header propagator (traceparent, tracestate) of the
// API and its webhooks.
var Propagator = propagation.TraceContext{}

// Tracer returns tp's tracer for Macula's spans, or nil when tp is nil
// (no spans).
func Tracer(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		return nil
	}
	return tp.Tracer("github.com/macula-io/macula")
}
