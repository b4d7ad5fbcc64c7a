package rpc

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/macula-io/macula/internal/testnet"

	"github.com/macula-io/macula/tracing"
)

var testSpan = trace.NewSpanContext(trace.SpanContextConfig{
	TraceID: trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
	SpanID:  trace.SpanID{8, 7, 6, 5, 4, 3, 2, 1}, TraceFlags: trace.FlagsSampled,
})

// FuzzParseRequestTrace: request bodies of version 2 (with a trace
// context) decode to what encodes them again, and carry a valid context.
func FuzzParseRequestTrace(f *testing.F) {
	f.Add(appendRequest(nil, &request{id: 1, procedure: "io.a.b", trace: tracing.Append(nil, testSpan), payload: []byte("x")}))
	f.Add(appendRequest(nil, &request{id: 1, procedure: "io.a.b", payload: []byte("x")}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseRequestVersion(b, wireVersionTrace)
		if err != nil {
			return
		}
		if !r.sc.IsValid() || len(r.trace) < tracing.Len {
			t.Fatalf("a version 2 request without a valid trace context: %+v", r)
		}
		again := appendRequest(nil, &r)
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs: %x vs %x", again, b)
		}
	})
}

func TestRequestVersions(t *testing.T) {
	r := request{id: 7, timeout: 5, codec: JSON, procedure: "io.a.b", trace: tracing.Append(nil, testSpan), payload: []byte(`{"x":1}`)}
	got, err := parseRequestVersion(appendRequest(nil, &r), wireVersionTrace)
	if err != nil || !got.sc.Equal(testSpan.WithRemote(true)) || string(got.payload) != `{"x":1}` || got.procedure != "io.a.b" {
		t.Fatalf("version 2: %+v, %v", got, err)
	}
	// Version 1 reads its bytes as the payload, trace context or not: a
	// node never sends version 2 on a stream that did not negotiate it.
	r.trace = nil
	got, err = parseRequestVersion(appendRequest(nil, &r), wireVersion)
	if err != nil || got.sc.IsValid() || string(got.payload) != `{"x":1}` {
		t.Fatalf("version 1: %+v, %v", got, err)
	}
	if _, err := parseRequestVersion(appendRequest(nil, &r), wireVersionTrace); err == nil {
		t.Fatal("a version 2 request without a trace context parsed")
	}
}

// tracedNode is a test node that records its spans in memory.
func tracedNode(t *testing.T) (*tnode, *tracetest.InMemoryExporter) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return newNode(t, func(c *Config) { c.TracerProvider = tp }), exp
}

// TestTraceCrossesNodes: a call from a to b gives a client span on a and a
// server span on b, in one trace, and the handler's context carries it on;
// a callee that speaks only rpc/1.0.0 (an older node) still gets the call,
// without the trace.
func TestTraceCrossesNodes(t *testing.T) {
	a, expA := tracedNode(t)
	b, expB := tracedNode(t)
	mesh(t, a, b)
	var seen trace.SpanContext
	var mu sync.Mutex
	advertise(t, b, "io.acme.orders.traced", func(ctx context.Context, req *Request) ([]byte, error) {
		mu.Lock()
		seen = trace.SpanContextFromContext(ctx)
		mu.Unlock()
		return req.Payload, nil
	})
	waitCallable(t, a, "io.acme.orders.traced")
	expA.Reset()
	expB.Reset()
	root, span := sdktrace.NewTracerProvider().Tracer("test").Start(context.Background(), "program")
	if _, err := a.rpc.Call(root, "io.acme.orders.traced", []byte("x")); err != nil {
		t.Fatal(err)
	}
	span.End()
	want := span.SpanContext().TraceID()
	client := findSpan(t, expA.GetSpans(), "call io.acme.orders.traced")
	// b ends its span after it has answered: a may hold the reply first.
	server := waitSpan(t, expB, "serve io.acme.orders.traced")
	if client.SpanContext.TraceID() != want || server.SpanContext.TraceID() != want {
		t.Fatalf("trace ids: program %s, client %s, server %s", want, client.SpanContext.TraceID(), server.SpanContext.TraceID())
	}
	if server.Parent.SpanID() != client.SpanContext.SpanID() || !server.Parent.IsRemote() {
		t.Errorf("server span's parent %v, want the client span %v (remote)", server.Parent, client.SpanContext)
	}
	mu.Lock()
	if seen.TraceID() != want {
		t.Errorf("the handler's context is in trace %s, want %s", seen.TraceID(), want)
	}
	mu.Unlock()

	// b forgets the traced protocol, as an older node: new streams from a
	// fall back to rpc/1.0.0, the call works, no trace reaches b.
	b.h.RemoveStreamHandler(b.rpc.protoTrace)
	_ = a.h.Network().ClosePeer(b.h.ID())
	mesh(t, b, a)
	expB.Reset()
	testnet.Eventually(t, 20*time.Second, func() error {
		_, err := a.rpc.Call(root, "io.acme.orders.traced", []byte("x"))
		return err
	})
	mu.Lock()
	if seen.TraceID() == want {
		t.Errorf("an rpc/1.0.0 callee saw the caller's trace %s", want)
	}
	mu.Unlock()
	// b records (it has a tracer): its span is a root of its own.
	if s := waitSpan(t, expB, "serve io.acme.orders.traced"); s.Parent.IsValid() {
		t.Errorf("b's span has parent %v over rpc/1.0.0", s.Parent)
	}
}

// waitSpan waits for the span called name among exp's: a server records its
// span after the reply is on its way.
func waitSpan(t *testing.T, exp *tracetest.InMemoryExporter, name string) tracetest.SpanStub {
	t.Helper()
	var found tracetest.SpanStub
	testnet.Eventually(t, 10*time.Second, func() error {
		for _, s := range exp.GetSpans() {
			if s.Name == name {
				found = s
				return nil
			}
		}
		return fmt.Errorf("no span %q among %v", name, spanNames(exp.GetSpans()))
	})
	return found
}

func spanNames(spans tracetest.SpanStubs) []string {
	var names []string
	for _, s := range spans {
		names = append(names, s.Name)
	}
	return names
}

func findSpan(t *testing.T, spans tracetest.SpanStubs, name string) tracetest.SpanStub {
	t.Helper()
	for _, s := range spans {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no span %q among %v", name, spanNames(spans))
	return tracetest.SpanStub{}
}
