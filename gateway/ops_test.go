package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	wire "github.com/macula-io/macula/api"
	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/metrics"
	"github.com/macula-io/macula/node"
	"github.com/macula-io/macula/rpc"
)

// opsPair is two nodes of a realm, each with its metrics and gateway; a
// advertises echo.
type opsPair struct {
	a, b   *node.Node
	ga, gb *Gateway
	echo   string
}

func startOpsPair(t *testing.T) *opsPair {
	t.Helper()
	p := &opsPair{echo: testRealm + ".echo"}
	p.a = startNode(t, testRealm, "a")
	p.b = startNode(t, testRealm, "b", p.a)
	testnet.Eventually(t, 30*time.Second, func() error {
		if len(p.a.Peers()) != 1 || len(p.b.Peers()) != 1 {
			return fmt.Errorf("a has %d peers, b %d", len(p.a.Peers()), len(p.b.Peers()))
		}
		return nil
	})
	withMetrics := func(n *node.Node) func(*Config) {
		m, err := metrics.New(prometheus.NewRegistry(), metrics.Sources{Node: n}, metrics.Config{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return func(c *Config) { c.Metrics = m }
	}
	p.ga = startGateway(t, p.a, withMetrics(p.a))
	p.gb = startGateway(t, p.b, withMetrics(p.b))
	ctx := ctxFor(t, 30*time.Second)
	if err := p.a.RPC().Advertise(ctx, p.echo, func(_ context.Context, r *rpc.Request) ([]byte, error) { return r.Payload, nil }); err != nil {
		t.Fatal(err)
	}
	return p
}

// scrape gets /metrics of g and parses it with Prometheus's own parser.
func scrape(t *testing.T, g *Gateway) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := plainClient(t).Get("http://" + g.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /metrics: %d %s %.300s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

// sample is the value of the series of fams[name] with the given labels
// (a subset), 0 when there is none.
func sample(fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	f := fams[name]
	if f == nil {
		return 0
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	return 0
}

// TestMetricsMoveWithCalls: calls through b's API to a's procedure move
// /metrics on both sides, parsed with expfmt.
func TestMetricsMoveWithCalls(t *testing.T) {
	p := startOpsPair(t)
	c := clientFor(t, p.gb, "http")
	call := func() error {
		_, err := c.Call(ctxFor(t, 10*time.Second), p.echo, []byte(`{"n":1}`), wire.CallOptions{ContentType: "application/json"})
		return err
	}
	testnet.Eventually(t, 30*time.Second, call)
	okCalls := map[string]string{"procedure": p.echo, "outcome": "ok"}
	beforeB, beforeA := scrape(t, p.gb), scrape(t, p.ga)
	const n = 7
	for i := 0; i < n; i++ {
		if err := call(); err != nil {
			t.Fatal(err)
		}
	}
	afterB := scrape(t, p.gb)
	if d := sample(afterB, "macula_rpc_calls_total", okCalls) - sample(beforeB, "macula_rpc_calls_total", okCalls); d != n {
		t.Errorf("b's macula_rpc_calls_total{procedure=%q,outcome=ok} moved by %v, want %d", p.echo, d, n)
	}
	if d := sample(afterB, "macula_rpc_call_duration_seconds", map[string]string{"procedure": p.echo}) -
		sample(beforeB, "macula_rpc_call_duration_seconds", map[string]string{"procedure": p.echo}); d != n {
		t.Errorf("b's latency histogram moved by %v, want %d", d, n)
	}
	testnet.Eventually(t, 10*time.Second, func() error {
		afterA := scrape(t, p.ga)
		if d := sample(afterA, "macula_rpc_served_total", okCalls) - sample(beforeA, "macula_rpc_served_total", okCalls); d != n {
			return fmt.Errorf("a's macula_rpc_served_total moved by %v, want %d", d, n)
		}
		return nil
	})
	if v := sample(afterB, "macula_peers", map[string]string{"path": "direct"}); v != 1 {
		t.Errorf("macula_peers{path=direct} = %v, want 1", v)
	}
	for _, name := range []string{"macula_pubsub_dropped_total", "macula_dht_routing_table_peers", "macula_nat_type",
		"macula_ucan_refusals_total", "macula_hole_punches_total", "macula_relay_reservations", "macula_members"} {
		if afterB[name] == nil {
			t.Errorf("no family %s", name)
		}
	}

	// Publishes move the pub/sub counters.
	pubBefore := sample(afterB, "macula_pubsub_published_total", nil)
	for i := 0; i < 3; i++ {
		if err := c.Publish(ctxFor(t, 5*time.Second), testRealm+".things.new", []byte(`{}`), "application/json"); err != nil {
			t.Fatal(err)
		}
	}
	if d := sample(scrape(t, p.gb), "macula_pubsub_published_total", nil) - pubBefore; d != 3 {
		t.Errorf("macula_pubsub_published_total moved by %v, want 3", d)
	}
}

// TestDashboardData: the snapshot shows the node, its peer, the mesh, the
// procedure with its calls, and the stream sends snapshots.
func TestDashboardData(t *testing.T) {
	p := startOpsPair(t)
	cb := clientFor(t, p.gb, "http")
	ca := clientFor(t, p.ga, "http")
	testnet.Eventually(t, 30*time.Second, func() error {
		_, err := cb.Call(ctxFor(t, 10*time.Second), p.echo, []byte("x"), wire.CallOptions{})
		return err
	})
	d, err := ca.Dashboard(ctxFor(t, 20*time.Second), true)
	if err != nil {
		t.Fatal(err)
	}
	if d.Node.PeerID != p.a.ID().String() || len(d.Peers) != 1 || d.Mesh == nil || len(d.Mesh.Nodes) != 2 || len(d.Mesh.Links) != 1 {
		t.Fatalf("dashboard: node %s, %d peers, mesh %+v", d.Node.PeerID, len(d.Peers), d.Mesh)
	}
	var echo *wire.ProcedureStats
	for i := range d.Procedures {
		if d.Procedures[i].Procedure == p.echo {
			echo = &d.Procedures[i]
		}
	}
	if echo == nil || !echo.Advertised || echo.Served["ok"] == 0 || len(echo.ServedLatency.Counts) != len(d.LatencyBoundsMS)+1 {
		t.Fatalf("echo on a's dashboard: %+v (bounds %v)", echo, d.LatencyBoundsMS)
	}

	// The stream.
	ctx := ctxFor(t, 20*time.Second)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.ga.Addr()+"/v1/dashboard/stream?interval=250ms", nil)
	resp, err := plainClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream Content-Type %q", resp.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	snaps := 0
	for snaps < 2 && sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			var s wire.Dashboard
			if err := json.Unmarshal([]byte(data), &s); err != nil {
				t.Fatalf("snapshot: %v", err)
			}
			if s.Node.PeerID != p.a.ID().String() {
				t.Fatalf("snapshot of %s", s.Node.PeerID)
			}
			snaps++
		}
	}
	if snaps < 2 {
		t.Fatalf("got %d snapshots: %v", snaps, sc.Err())
	}

	// The page and its assets.
	for _, path := range []string{"/", "/ui/app.js", "/ui/style.css"} {
		resp, err := plainClient(t).Get("http://" + p.ga.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(b) == 0 || strings.Contains(string(b), "http://") && path != "/ui/app.js" {
			t.Errorf("GET %s: %d, %d bytes", path, resp.StatusCode, len(b))
		}
	}
	resp, err = plainClient(t).Get("http://" + p.ga.Addr() + "/ui/nothing.js")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /ui/nothing.js: %d", resp.StatusCode)
	}
}

// TestMetricsNotEnabled: a gateway without metrics says so.
func TestMetricsNotEnabled(t *testing.T) {
	n := startNode(t, testRealm, "nometrics")
	g := startGateway(t, n, nil)
	_, err := clientFor(t, g, "http").Metrics(ctxFor(t, 5*time.Second))
	wantAPIError(t, err, http.StatusNotFound, wire.CodeNotEnabled)
}

// plainClient is an HTTP/1.1 client whose idle connections close when the
// test ends (goleak).
func plainClient(t *testing.T) *http.Client {
	tr := &http.Transport{DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}
