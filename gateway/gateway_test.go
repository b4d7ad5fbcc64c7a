package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/node"
)

func TestMain(m *testing.M) {
	testnet.VerifyTestMain(m)
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

const testRealm = "io.acme.orders"

// startNode starts a node on loopback and closes it when the test ends.
func startNode(t *testing.T, realmName, name string, bootstrap ...*node.Node) *node.Node {
	t.Helper()
	cfg := node.DefaultConfig(realmName, name)
	cfg.ListenAddrs = []string{"/ip4/127.0.0.1/udp/0/quic-v1"}
	cfg.Logger = quietLogger()
	cfg.ReconnectInterval = 50 * time.Millisecond
	cfg.ReconnectMaxInterval = 200 * time.Millisecond
	for _, b := range bootstrap {
		for _, a := range b.Addrs() {
			cfg.Bootstrap = append(cfg.Bootstrap, a.String())
		}
	}
	n, err := node.New(cfg)
	if err != nil {
		t.Fatalf("node.New(%s): %v", name, err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("Close(%s): %v", name, err)
		}
	})
	return n
}

// startGateway serves n on loopback, HTTP/1.1 and HTTP/3 on free ports, and
// closes the gateway when the test ends (before the node, as cleanups run
// last-in first-out).
func startGateway(t *testing.T, n *node.Node, mod func(*Config)) *Gateway {
	t.Helper()
	cfg := Config{Addr: "127.0.0.1:0", HTTP3Addr: "127.0.0.1:0", LogLevel: new(slog.LevelVar), Logger: quietLogger()}
	if mod != nil {
		mod(&cfg)
	}
	g, err := New(cfg, n)
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	t.Cleanup(func() {
		if err := g.Close(); err != nil {
			t.Errorf("gateway Close: %v", err)
		}
	})
	return g
}

// pinned returns a TLS config that trusts only the gateway's certificate.
func pinned(t *testing.T, g *Gateway) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(g.CertPEM()) {
		t.Fatalf("CertPEM is not a PEM certificate: %q", g.CertPEM())
	}
	return &tls.Config{RootCAs: pool}
}

// clientFor returns a client of g over proto ("http" or "http3"), closed
// when the test ends.
func clientFor(t *testing.T, g *Gateway, proto string) *Client {
	t.Helper()
	var c *Client
	switch proto {
	case "http":
		c = NewClient(g.Addr())
	case "http3":
		c = NewHTTP3Client(g.HTTP3Addr(), pinned(t, g))
	default:
		t.Fatalf("unknown protocol %q", proto)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("client Close: %v", err)
		}
	})
	return c
}

// eventually polls cond until it returns nil or the deadline passes, and
// then fails with cond's last error.
func eventually(t *testing.T, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %v", d, what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
