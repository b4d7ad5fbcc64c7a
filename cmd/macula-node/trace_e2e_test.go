package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	collector "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/macula-io/macula/api"
	"github.com/macula-io/macula/internal/testnet"
)

// otlpSpan is a span a collector received, with the node it came from.
type otlpSpan struct {
	node, name, traceID, spanID, parentID string
}

// fakeCollector is an OTLP/HTTP receiver: it decodes every export request
// (protobuf) and keeps the spans.
type fakeCollector struct {
	srv   *httptest.Server
	mu    sync.Mutex
	spans []otlpSpan
}

func startCollector(t *testing.T) *fakeCollector {
	c := &fakeCollector{}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req collector.ExportTraceServiceRequest
		if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" || proto.Unmarshal(body, &req) != nil {
			http.Error(w, "not an OTLP/HTTP protobuf export", http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		for _, rs := range req.ResourceSpans {
			node := ""
			for _, kv := range rs.GetResource().GetAttributes() {
				if kv.Key == "macula.node" {
					node = kv.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					c.spans = append(c.spans, otlpSpan{node: node, name: s.Name, traceID: fmt.Sprintf("%x", s.TraceId),
						spanID: fmt.Sprintf("%x", s.SpanId), parentID: fmt.Sprintf("%x", s.ParentSpanId)})
				}
			}
		}
		c.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&collector.ExportTraceServiceResponse{})
		w.Write(out)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *fakeCollector) has(node, name, traceID, spanID string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.spans {
		if s.node == node && s.name == name && s.traceID == traceID && s.spanID == spanID {
			return true
		}
	}
	return false
}

func (c *fakeCollector) find(node, name, traceID string) (otlpSpan, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.spans {
		if s.node == node && s.name == name && s.traceID == traceID {
			return s, true
		}
	}
	return otlpSpan{}, false
}

// TestTraceAcrossProcesses: two macula-node run processes export their
// spans over OTLP (--otlp-endpoint, to a collector of the test's). A
// program calls a webhook procedure advertised on b through a's API with a
// traceparent header: the collector gets a's client span and b's server
// span in the program's trace (b's the child of a's), and the webhook's
// request carries the trace on.
func TestTraceAcrossProcesses(t *testing.T) {
	t.Parallel()
	col := startCollector(t)
	const realmName = "io.trace.e2e"
	start := func(name string, bootstrap ...string) *runNode {
		dir := filepath.Join(t.TempDir(), name)
		args := []string{"run", "--realm", realmName, "--name", name, "--data-dir", dir, "--listen", "/ip4/127.0.0.1/udp/0/quic-v1",
			"--api", "127.0.0.1:0", "--http3", "off", "--otlp-endpoint", col.srv.URL}
		for _, b := range bootstrap {
			args = append(args, "--bootstrap", b)
		}
		n := &runNode{proc: startProc(t, name, nil, args...), dir: dir}
		n.waitReady(t)
		return n
	}
	a := start("tr-a")
	b := start("tr-b", a.st.Addrs[0])

	var mu sync.Mutex
	var hookParent string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hookParent = r.Header.Get("traceparent")
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`"ok"`))
	}))
	defer hook.Close()
	proc := realmName + ".traced"
	cb := api.NewClient(b.st.API)
	defer cb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := cb.Advertise(ctx, proc, hook.URL+"/traced", 0); err != nil {
		t.Fatal(err)
	}

	const traceID = "0af7651916cd43dd8448eb211c80319c"
	testnet.Eventually(t, 45*time.Second, func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+a.st.API+"/v1/call/"+proc, bytes.NewReader([]byte(`"hi"`)))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("traceparent", "00-"+traceID+"-b7ad6b7169203331-01")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d: %s", resp.StatusCode, body)
		}
		return nil
	})
	http.DefaultClient.CloseIdleConnections()

	// The batches go out within seconds (the exporter's delay is 5 s).
	var server otlpSpan
	testnet.Eventually(t, 45*time.Second, func() error {
		var ok bool
		if server, ok = col.find("tr-b", "serve "+proc, traceID); !ok {
			return fmt.Errorf("no server span of tr-b in trace %s yet", traceID)
		}
		// Calls before the procedure was found made client spans of
		// their own: the server span's parent must be one of a's.
		if !col.has("tr-a", "call "+proc, traceID, server.parentID) {
			return fmt.Errorf("tr-b's server span's parent %s is no client span of tr-a in trace %s", server.parentID, traceID)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if want := "00-" + traceID + "-" + server.spanID + "-01"; hookParent != want {
		t.Errorf("the webhook got traceparent %q, want %q", hookParent, want)
	}
}
