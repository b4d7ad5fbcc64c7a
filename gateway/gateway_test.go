package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"

	wire "github.com/macula-io/macula/api"
	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/node"
)

func TestMain(m *testing.M) {
	testnet.VerifyTestMain(m)
}

const testRealm = "io.acme.orders"

// startNode starts a node on loopback and closes it when the test ends.
func startNode(t *testing.T, realmName, name string, bootstrap ...*node.Node) *node.Node {
	t.Helper()
	return startNodeWith(t, nil, realmName, name, bootstrap...)
}

// startNodeWith is startNode with mod applied to the node's Config.
func startNodeWith(t testing.TB, mod func(*node.Config), realmName, name string, bootstrap ...*node.Node) *node.Node {
	t.Helper()
	cfg := node.DefaultConfig(realmName, name)
	cfg.ListenAddrs = []string{"/ip4/127.0.0.1/udp/0/quic-v1"}
	cfg.Logger = testnet.QuietLogger()
	cfg.ReconnectInterval = 50 * time.Millisecond
	cfg.ReconnectMaxInterval = 200 * time.Millisecond
	for _, b := range bootstrap {
		for _, a := range b.Addrs() {
			cfg.Bootstrap = append(cfg.Bootstrap, a.String())
		}
	}
	if mod != nil {
		mod(&cfg)
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
	cfg := Config{Addr: "127.0.0.1:0", HTTP3Addr: "127.0.0.1:0", LogLevel: new(slog.LevelVar), Logger: testnet.QuietLogger()}
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

// testClient is a Client of a test's gateway, with a way to send the
// requests no Client method sends (bad parameters, unknown routes).
type testClient struct {
	*wire.Client
	base string       // "http://host:port" or "https://host:port"
	hc   *http.Client // over the same protocol as Client
}

// clientFor returns a client of g over proto ("http" or "http3"), closed
// when the test ends.
func clientFor(t *testing.T, g *Gateway, proto string) *testClient {
	t.Helper()
	c := &testClient{}
	switch proto {
	case "http":
		tr := &http.Transport{}
		c.Client, c.base, c.hc = wire.NewClient(g.Addr()), "http://"+g.Addr(), &http.Client{Transport: tr}
		t.Cleanup(tr.CloseIdleConnections)
	case "http3":
		tr := &http3.Transport{TLSClientConfig: pinned(t, g)}
		c.Client, c.base, c.hc = wire.NewHTTP3Client(g.HTTP3Addr(), pinned(t, g)), "https://"+g.HTTP3Addr(), &http.Client{Transport: tr}
		t.Cleanup(func() { tr.Close() })
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

// raw sends a request as it is and returns nil for a 2xx answer, else the
// error answer as an *wire.APIError, as the wire.Client's methods do.
func (c *testClient) raw(ctx context.Context, method, path string, h http.Header, body []byte) error {
	_, err := c.send(ctx, method, path, h, body)
	return err
}

// send is raw that also returns the answer's status.
func (c *testClient) send(ctx context.Context, method, path string, h http.Header, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	maps.Copy(req.Header, h)
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode/100 == 2 {
		return resp.StatusCode, nil
	}
	var eb wire.ErrorBody
	if err := json.Unmarshal(raw, &eb); err != nil || eb.Error.Code == "" {
		return resp.StatusCode, &wire.APIError{Status: resp.StatusCode, Code: fmt.Sprintf("http_%d", resp.StatusCode), Message: string(raw)}
	}
	return resp.StatusCode, &wire.APIError{Status: resp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message, Remote: eb.Error.Remote}
}

func ctxFor(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
