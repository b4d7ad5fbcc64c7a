package registry

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/macula-io/macula/internal/testnet"
)

const testRealm = "io.acme.orders"

// wait bounds every wait for something that must happen: generous, so that
// a loaded machine (CI, a shared box) is slow, never failing. Tests never
// assert on timings.
const wait = 30 * time.Second

func TestMain(m *testing.M) {
	if os.Getenv("REGISTRY_DRIVER") != "" {
		os.Exit(runDriver()) // inside a lab namespace: see driver_test.go
	}
	testnet.VerifyTestMain(m)
}

func quietLogger() *slog.Logger { return testnet.QuietLogger() }

// newRegistry starts a registry on a fresh loopback host, without a
// membership, and closes it when the test ends.
func newRegistry(t testing.TB, mod func(*Config)) *Registry {
	t.Helper()
	return newRegistryWith(t, nil, mod)
}

func newRegistryWith(t testing.TB, m Membership, mod func(*Config)) *Registry {
	t.Helper()
	h := testnet.Host(t)
	cfg := Config{Realm: testRealm, Logger: quietLogger(), AntiEntropy: 100 * time.Millisecond}
	if os.Getenv("MACULA_TEST_LOG") != "" {
		cfg.LogLevel = LogVerbose
	}
	if mod != nil {
		mod(&cfg)
	}
	r, err := New(h, m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Error(err)
		}
	})
	return r
}

// spawn starts a channel process that lives until the test ends.
func spawn(t testing.TB, r *Registry) *Process {
	t.Helper()
	p, err := r.Spawn(context.Background(), ProcessConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func monitor(t testing.TB, r *Registry, pattern string, opts ...Option) *Monitor {
	t.Helper()
	m, err := r.Monitor(pattern, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

// next returns the next batch of m, failing after a few seconds.
func next(t testing.TB, m *Monitor) Batch {
	t.Helper()
	select {
	case b, ok := <-m.C():
		if !ok {
			t.Fatal("monitor closed")
		}
		return b
	case <-time.After(wait):
		t.Fatal("no batch from the monitor")
	}
	return Batch{}
}

// quiet checks that m gets nothing for a moment.
func quiet(t testing.TB, m *Monitor) {
	t.Helper()
	select {
	case b := <-m.C():
		t.Fatalf("unexpected batch %v", b.Events)
	case <-time.After(50 * time.Millisecond):
	}
}

// eventually waits until cond holds, for at most d.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	testnet.Eventually(t, d, func() error {
		if !cond() {
			return errors.New("waiting for " + what)
		}
		return nil
	})
}

func mustJoin(t testing.TB, p *Process, key, meta string, opts ...Option) {
	t.Helper()
	if err := p.Join(key, []byte(meta), opts...); err != nil {
		t.Fatalf("Join(%q): %v", key, err)
	}
}

func mustRegister(t testing.TB, p *Process, key, meta string, opts ...Option) {
	t.Helper()
	if err := p.Register(key, []byte(meta), opts...); err != nil {
		t.Fatalf("Register(%q): %v", key, err)
	}
}

func addrs(ms []Member) []Addr {
	out := make([]Addr, len(ms))
	for i, m := range ms {
		out[i] = m.Addr
	}
	return out
}
