package node

import (
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/macula-io/macula/internal/testnet"
)

func TestMain(m *testing.M) {
	testnet.VerifyTestMain(m)
}

func quietLogger() *slog.Logger {
	if os.Getenv("NODE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startNode starts a node on loopback and closes it when the test ends.
func startNode(t *testing.T, realmName, name string, mod func(*Config)) *Node {
	t.Helper()
	cfg := DefaultConfig(realmName, name)
	cfg.ListenAddrs = []string{"/ip4/127.0.0.1/udp/0/quic-v1"}
	cfg.Logger = quietLogger()
	cfg.ReconnectInterval = 50 * time.Millisecond
	cfg.ReconnectMaxInterval = 200 * time.Millisecond
	if mod != nil {
		mod(&cfg)
	}
	n, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", name, err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("Close(%s): %v", name, err)
		}
	})
	return n
}

func bootstrapOf(n *Node) []string {
	var out []string
	for _, a := range n.Addrs() {
		out = append(out, a.String())
	}
	return out
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestTwoNodesHandshake(t *testing.T) {
	a := startNode(t, "io.acme.orders", "a", nil)
	b := startNode(t, "io.acme.orders", "b", func(c *Config) { c.Bootstrap = bootstrapOf(a) })
	eventually(t, 10*time.Second, "a and b to see each other", func() bool {
		return len(a.Peers()) == 1 && len(b.Peers()) == 1
	})
	p := a.Peers()[0]
	if p.ID != b.ID() || p.Name != "b" || p.DID != b.DID() || p.Alias != "did:macula:io.acme.orders.b" {
		t.Fatalf("a's view of b = %+v", p)
	}
}
