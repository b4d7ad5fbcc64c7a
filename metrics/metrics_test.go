package metrics

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/macula-io/macula/event"
	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/node"
	"github.com/macula-io/macula/rpc"
)

func TestMain(m *testing.M) { testnet.VerifyTestMain(m) }

const realmName = "io.acme.metrics"

func startNode(t *testing.T, name string, bootstrap ...*node.Node) *node.Node {
	t.Helper()
	cfg := node.DefaultConfig(realmName, name)
	cfg.ListenAddrs = []string{"/ip4/127.0.0.1/udp/0/quic-v1"}
	cfg.Logger = testnet.QuietLogger()
	for _, b := range bootstrap {
		for _, a := range b.Addrs() {
			cfg.Bootstrap = append(cfg.Bootstrap, a.String())
		}
	}
	n, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// gather returns the families of reg by name.
func gather(t *testing.T, reg *prometheus.Registry) map[string]*dto.MetricFamily {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		out[f.GetName()] = f
	}
	return out
}

// value returns the value of the series of family name whose labels are
// exactly labels (name=value pairs), or -1.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.GetMetric() {
		if len(m.GetLabel())*2 != len(labels) {
			continue
		}
		for i, l := range m.GetLabel() {
			if l.GetName() != labels[2*i] || l.GetValue() != labels[2*i+1] {
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
	return -1
}

// TestCallsMoveTheCounters: calls from b to a procedure of a show up on
// both sides, by procedure and outcome, with latency histograms; calls to
// names nobody advertises stay under _other; the label tables are bounded.
func TestCallsMoveTheCounters(t *testing.T) {
	a := startNode(t, "a")
	b := startNode(t, "b", a)
	testnet.Eventually(t, 30*time.Second, func() error {
		if len(a.Peers()) != 1 || len(b.Peers()) != 1 {
			return fmt.Errorf("peers: a %d, b %d", len(a.Peers()), len(b.Peers()))
		}
		return nil
	})
	regA, regB := prometheus.NewRegistry(), prometheus.NewRegistry()
	ma, err := New(regA, Sources{Node: a}, Config{MaxLabelValues: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer ma.Close()
	mb, err := New(regB, Sources{Node: b}, Config{MaxLabelValues: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()

	proc := realmName + ".echo"
	failing := realmName + ".fail"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := a.RPC().Advertise(ctx, proc, func(_ context.Context, r *rpc.Request) ([]byte, error) { return r.Payload, nil }); err != nil {
		t.Fatal(err)
	}
	if err := a.RPC().Advertise(ctx, failing, func(context.Context, *rpc.Request) ([]byte, error) {
		return nil, &rpc.RemoteError{Code: "nope", Message: "always"}
	}); err != nil {
		t.Fatal(err)
	}
	testnet.Eventually(t, 30*time.Second, func() error {
		_, err := b.RPC().Call(ctx, proc, []byte("x"), rpc.WithTimeout(5*time.Second))
		return err
	})
	before := gather(t, regB)
	callsBefore := value(before, "macula_rpc_calls_total", "outcome", "ok", "procedure", proc)
	for i := 0; i < 5; i++ {
		if _, err := b.RPC().Call(ctx, proc, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.RPC().Call(ctx, failing, nil); err == nil {
		t.Fatal("the failing procedure did not fail")
	}
	for i := 0; i < 10; i++ { // unknown names: never a label of their own
		_, err := b.RPC().Call(ctx, fmt.Sprintf("%s.nobody%d", realmName, i), nil, rpc.WithTimeout(3*time.Second))
		if !errors.Is(err, rpc.ErrNotFound) && !errors.Is(err, rpc.ErrTimeout) {
			t.Fatalf("call of an unknown procedure: %v", err)
		}
	}

	fb := gather(t, regB)
	if got := value(fb, "macula_rpc_calls_total", "outcome", "ok", "procedure", proc); got != callsBefore+5 {
		t.Errorf("b's ok calls of %s = %v, want %v", proc, got, callsBefore+5)
	}
	if got := value(fb, "macula_rpc_calls_total", "outcome", "remote_error", "procedure", failing); got != 1 {
		t.Errorf("b's remote_error calls of %s = %v, want 1", failing, got)
	}
	if got := value(fb, "macula_rpc_call_duration_seconds", "procedure", proc); got < callsBefore+5 {
		t.Errorf("b's latency histogram of %s counts %v calls, want at least %v", proc, got, callsBefore+5)
	}
	other := value(fb, "macula_rpc_calls_total", "outcome", "not_found", "procedure", OtherLabel) +
		value(fb, "macula_rpc_calls_total", "outcome", "timeout", "procedure", OtherLabel)
	if other < 10-1 { // -1: a missing series reads -1
		t.Errorf("calls of unknown names under _other = %v, want 10", other)
	}
	for _, m := range fb["macula_rpc_calls_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "procedure" && l.GetValue() != proc && l.GetValue() != failing && l.GetValue() != OtherLabel {
				t.Errorf("a label for %q", l.GetValue())
			}
		}
	}

	testnet.Eventually(t, 10*time.Second, func() error {
		fa := gather(t, regA)
		if got := value(fa, "macula_rpc_served_total", "outcome", "ok", "procedure", proc); got < 5 {
			return fmt.Errorf("a served %v ok calls of %s, want at least 5", got, proc)
		}
		if got := value(fa, "macula_rpc_served_total", "outcome", "remote_error", "procedure", failing); got != 1 {
			return fmt.Errorf("a served %v remote_error calls of %s, want 1", got, failing)
		}
		if got := value(fa, "macula_peers", "path", "direct"); got != 1 {
			return fmt.Errorf("a's direct peers = %v, want 1", got)
		}
		if got := value(fa, "macula_rpc_advertised_procedures"); got != 2 {
			return fmt.Errorf("a advertises %v procedures, want 2", got)
		}
		return nil
	})

	// Bounded: MaxLabelValues 3 and three names taken (echo, fail, one
	// more): a fourth goes to _other.
	for i := 0; i < 3; i++ {
		name := fmt.Sprintf("%s.extra%d", realmName, i)
		if err := a.RPC().Advertise(ctx, name, func(context.Context, *rpc.Request) ([]byte, error) { return nil, nil }); err != nil {
			t.Fatal(err)
		}
		testnet.Eventually(t, 30*time.Second, func() error {
			_, err := b.RPC().Call(ctx, name, nil, rpc.WithTimeout(5*time.Second))
			return err
		})
	}
	fb = gather(t, regB)
	names := map[string]bool{}
	for _, m := range fb["macula_rpc_calls_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "procedure" {
				names[l.GetValue()] = true
			}
		}
	}
	if len(names) != 4 || !names[OtherLabel] {
		t.Errorf("procedure labels = %v, want 3 names and %s", names, OtherLabel)
	}
}

func TestNewChecksItsArguments(t *testing.T) {
	if _, err := New(prometheus.NewRegistry(), Sources{}, Config{}); err == nil {
		t.Error("New without a node worked")
	}
	a := startNode(t, "alone")
	if _, err := New(nil, Sources{Node: a}, Config{}); err == nil {
		t.Error("New with a nil registerer worked")
	}
	reg := prometheus.NewRegistry()
	m, err := New(reg, Sources{Node: a}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(reg, Sources{Node: a}, Config{}); err == nil {
		t.Error("a second Metrics on the same registry worked")
	}
	m.Close()
	m.Close()
	if fams := gather(t, reg); len(fams) != 0 {
		t.Errorf("after Close the registry still has %d families", len(fams))
	}
	if a.Events().Wants(event.CallStop) { // nobody else listens to it
		t.Error("the handler is still attached after Close")
	}
}

func TestRelays(t *testing.T) {
	const r1, r2 = "12D3KooWRLYwQm1f3hEJLNy1fprSDsZEhVoStqHScQcMDnMKFA9Q", "12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq"
	var addrs []ma.Multiaddr
	for _, s := range []string{
		"/ip4/10.0.4.2/udp/7400/quic-v1",
		"/ip4/7.0.0.10/udp/7400/quic-v1/p2p/" + r1 + "/p2p-circuit",
		"/ip6/::1/udp/7400/quic-v1/p2p/" + r1 + "/p2p-circuit",
		"/ip4/7.0.0.11/udp/7400/quic-v1/p2p/" + r2 + "/p2p-circuit",
	} {
		addrs = append(addrs, ma.StringCast(s))
	}
	got := Relays(addrs)
	if len(got) != 2 || got[0] != r1 || got[1] != r2 {
		t.Fatalf("Relays = %v, want [%s %s]", got, r1, r2)
	}
}
