package gateway

import (
	"bytes"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/node"
)

// TestTraceThroughAPIAndWebhook: a program calls through node a's API with
// a traceparent header; the procedure is a webhook advertised through
// node b's API. Both nodes record spans (in-memory exporters): a's client
// span and b's server span are in the program's trace, b's server span is
// the child of a's, and the webhook's request carries a traceparent in the
// same trace whose parent is b's server span.
func TestTraceThroughAPIAndWebhook(t *testing.T) {
	expA, expB := tracetest.NewInMemoryExporter(), tracetest.NewInMemoryExporter()
	traced := func(exp *tracetest.InMemoryExporter) func(*node.Config) {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
		t.Cleanup(func() { tp.Shutdown(t.Context()) })
		return func(c *node.Config) { c.RPC.TracerProvider = tp }
	}
	a := startNodeWith(t, traced(expA), testRealm, "trace-a")
	b := startNodeWith(t, traced(expB), testRealm, "trace-b", a)
	testnet.Eventually(t, 30*time.Second, func() error {
		if !a.IsPeer(b.ID()) {
			return fmt.Errorf("a does not see b yet")
		}
		return nil
	})
	ga, gb := startGateway(t, a, nil), startGateway(t, b, nil)
	cb := clientFor(t, gb, "http")

	var mu sync.Mutex
	var hookParent string
	hook := startWebhook(t)
	proc := testRealm + ".traced_hook"
	hook.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hookParent = r.Header.Get("traceparent")
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`"ok"`))
	})
	if err := cb.Advertise(ctxFor(t, 30*time.Second), proc, hook.url("/"), 0); err != nil {
		t.Fatal(err)
	}

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	const programSpan = "00f067aa0ba902b7"
	call := func() (int, error) {
		req, err := http.NewRequestWithContext(ctxFor(t, 20*time.Second), http.MethodPost,
			"http://"+ga.Addr()+"/v1/call/"+proc, bytes.NewReader([]byte(`"hi"`)))
		if err != nil {
			return 0, err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("traceparent", "00-"+traceID+"-"+programSpan+"-01")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	testnet.Eventually(t, 30*time.Second, func() error {
		code, err := call()
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("status %d", code)
		}
		return err
	})
	http.DefaultClient.CloseIdleConnections()

	// The last call's spans (earlier ones may have been not_found).
	var client, server tracetest.SpanStub
	for _, s := range expA.GetSpans() {
		if s.Name == "call "+proc && s.Status.Code != 2 {
			client = s
		}
	}
	// b ends its span after it has answered: wait for it.
	testnet.Eventually(t, 10*time.Second, func() error {
		for _, s := range expB.GetSpans() {
			if s.Name == "serve "+proc && s.SpanContext.TraceID().String() == traceID {
				server = s
			}
		}
		if !server.SpanContext.IsValid() {
			return fmt.Errorf("no span serve %s in trace %s among %v", proc, traceID, names(expB.GetSpans()))
		}
		return nil
	})
	if client.SpanContext.TraceID().String() != traceID {
		t.Fatalf("a's client span: trace %s, want %s (spans %v)", client.SpanContext.TraceID(), traceID, names(expA.GetSpans()))
	}
	if client.Parent.SpanID().String() != programSpan {
		t.Errorf("a's client span's parent %s, want the program's %s", client.Parent.SpanID(), programSpan)
	}
	if server.SpanContext.TraceID().String() != traceID {
		t.Fatalf("b's server span: trace %s, want %s (spans %v)", server.SpanContext.TraceID(), traceID, names(expB.GetSpans()))
	}
	if server.Parent.SpanID() != client.SpanContext.SpanID() {
		t.Errorf("b's server span's parent %s, want a's client span %s", server.Parent.SpanID(), client.SpanContext.SpanID())
	}
	mu.Lock()
	defer mu.Unlock()
	want := "00-" + traceID + "-" + server.SpanContext.SpanID().String() + "-01"
	if hookParent != want {
		t.Errorf("the webhook's traceparent is %q, want %q (b's server span)", hookParent, want)
	}
}

func names(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return out
}
