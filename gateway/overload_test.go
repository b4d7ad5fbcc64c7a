package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	wire "github.com/macula-io/macula/api"
	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/node"
)

// post sends a POST to the gateway's HTTP API and returns the status, the
// Retry-After header and the error code of the answer ("" on success).
func post(ctx context.Context, g *Gateway, path, body string) (int, string, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+g.Addr()+path, strings.NewReader(body))
	if err != nil {
		return 0, "", "", err
	}
	req.Header.Set("Content-Type", wire.ContentTypeRaw)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	var eb wire.ErrorBody
	if resp.StatusCode >= 300 {
		_ = json.NewDecoder(resp.Body).Decode(&eb)
	}
	return resp.StatusCode, resp.Header.Get("Retry-After"), eb.Error.Code, nil
}

// A flood of calls at one node's API is refused past MaxInFlight with 503,
// code overloaded and Retry-After, at once (not queued); publishes share
// the limit; the node serves again as soon as calls end.
func TestAPIOverloaded(t *testing.T) {
	maxInFlight = 3
	defer func() { maxInFlight = MaxInFlight }()
	a, b := connectedPair(t, "caller", "callee")
	advertiseTestProcs(t, b)
	g := startGateway(t, a, nil)
	maxInFlight = MaxInFlight
	testnet.Eventually(t, 30*time.Second, func() error {
		st, _, code, err := post(ctxFor(t, 30*time.Second), g, "/v1/call/"+procEcho+"?timeout=10s", "x")
		if err != nil || st != http.StatusOK {
			return fmt.Errorf("call %s: %d %s %v", procEcho, st, code, err)
		}
		return nil
	})

	// Three calls that hold their slot until cancelled.
	hold, release := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, _, _ = post(hold, g, "/v1/call/"+procSleep+"?timeout=60s", "x")
		}()
	}
	defer func() { release(); wg.Wait() }()
	testnet.Eventually(t, 30*time.Second, func() error {
		if n := len(g.api.inFlight); n != 3 {
			return fmt.Errorf("%d calls in flight, want 3", n)
		}
		return nil
	})

	for _, path := range []string{"/v1/call/" + procEcho + "?timeout=10s", "/v1/publish/" + testRealm + ".news"} {
		start := time.Now()
		st, ra, code, err := post(ctxFor(t, 30*time.Second), g, path, "x")
		if err != nil {
			t.Fatal(err)
		}
		if st != http.StatusServiceUnavailable || code != wire.CodeOverloaded || ra != "1" {
			t.Fatalf("POST %s with 3 calls in flight: %d %q Retry-After %q; want 503 overloaded Retry-After 1", path, st, code, ra)
		}
		t.Logf("POST %s refused in %v", path, time.Since(start))
	}

	release()
	wg.Wait()
	testnet.Eventually(t, 30*time.Second, func() error {
		st, _, code, err := post(ctxFor(t, 30*time.Second), g, "/v1/call/"+procEcho+"?timeout=10s", "x")
		if err != nil || st != http.StatusOK {
			return fmt.Errorf("call after the flood: %d %s %v", st, code, err)
		}
		return nil
	})
}

// A callee that runs as many calls of this node as it takes per caller
// answers the next "overloaded"; the API says 503 overloaded with
// Retry-After, not a handler's error.
func TestAPIRemoteOverloaded(t *testing.T) {
	a := startNode(t, testRealm, "caller")
	cfg := node.DefaultConfig(testRealm, "callee")
	cfg.ListenAddrs = []string{"/ip4/127.0.0.1/udp/0/quic-v1"}
	cfg.Logger = testnet.QuietLogger()
	cfg.RPC.MaxConcurrentPerPeer = 1
	for _, ad := range a.Addrs() {
		cfg.Bootstrap = append(cfg.Bootstrap, ad.String())
	}
	b, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	advertiseTestProcs(t, b)
	g := startGateway(t, a, nil)
	testnet.Eventually(t, 30*time.Second, func() error {
		st, _, code, err := post(ctxFor(t, 30*time.Second), g, "/v1/call/"+procEcho+"?timeout=10s", "x")
		if err != nil || st != http.StatusOK {
			return fmt.Errorf("call %s: %d %s %v", procEcho, st, code, err)
		}
		return nil
	})
	hold, release := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Again whenever it ends: the first probe below may reach the
		// callee first and take its one slot, refusing this call.
		for hold.Err() == nil {
			_, _, _, _ = post(hold, g, "/v1/call/"+procSleep+"?timeout=60s", "x")
		}
	}()
	defer func() { release(); <-done }()
	testnet.Eventually(t, 30*time.Second, func() error {
		st, ra, code, err := post(ctxFor(t, 30*time.Second), g, "/v1/call/"+procEcho+"?timeout=10s", "x")
		if err != nil {
			return err
		}
		if st != http.StatusServiceUnavailable || code != wire.CodeOverloaded || ra != "1" {
			return fmt.Errorf("second call while one runs on a callee that takes one: %d %q Retry-After %q; want 503 overloaded Retry-After 1", st, code, ra)
		}
		return nil
	})
}
