package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	wire "github.com/macula-io/macula/api"
	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/node"
	"github.com/macula-io/macula/rpc"
)

// Procedures of the call tests, served by Go handlers on a second node.
const (
	procEcho    = testRealm + ".echo"
	procFail    = testRealm + ".fail"
	procFailRaw = testRealm + ".fail_raw"
	procSleep   = testRealm + ".sleep"
	procDeny    = testRealm + ".deny"
)

// advertiseTestProcs advertises the call tests' procedures on n.
func advertiseTestProcs(t *testing.T, n *node.Node) {
	t.Helper()
	handlers := map[string]rpc.Handler{
		procEcho: func(_ context.Context, req *rpc.Request) ([]byte, error) { return req.Payload, nil },
		procFail: func(context.Context, *rpc.Request) ([]byte, error) {
			return nil, &rpc.RemoteError{Code: "invalid_order", Message: "no such order", Data: []byte(`{"id":7}`)}
		},
		procFailRaw: func(context.Context, *rpc.Request) ([]byte, error) {
			return nil, &rpc.RemoteError{Code: "invalid_order", Message: "no such order", Data: []byte{0, 1, 0xff}}
		},
		procSleep: func(ctx context.Context, _ *rpc.Request) ([]byte, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		},
		procDeny: func(context.Context, *rpc.Request) ([]byte, error) {
			return nil, rpc.Errorf(rpc.CodeUnauthorized, "not you")
		},
	}
	for p, h := range handlers {
		if err := n.RPC().Advertise(ctxFor(t, 10*time.Second), p, h); err != nil {
			t.Fatalf("Advertise(%s): %v", p, err)
		}
	}
}

// connectedPair starts two nodes of the test realm that see each other.
func connectedPair(t *testing.T, a, b string) (*node.Node, *node.Node) {
	t.Helper()
	return connectedPairWith(t, nil, nil, a, b)
}

// connectedPairWith is connectedPair with modA and modB (either may be
// nil) applied to the nodes' Configs.
func connectedPairWith(t *testing.T, modA, modB func(*node.Config), a, b string) (*node.Node, *node.Node) {
	t.Helper()
	na := startNodeWith(t, modA, testRealm, a)
	nb := startNodeWith(t, modB, testRealm, b, na)
	testnet.Eventually(t, 10*time.Second, func() error {
		if !na.IsPeer(nb.ID()) || !nb.IsPeer(na.ID()) {
			return fmt.Errorf("%s sees %s: %v; %s sees %s: %v", a, b, na.IsPeer(nb.ID()), b, a, nb.IsPeer(na.ID()))
		}
		return nil
	})
	return na, nb
}

// TestCall calls Go handlers of one node through another node's API, over
// HTTP/1.1 and HTTP/3: the reply in each codec, and each way a call fails
// as its own status and code.
func TestCall(t *testing.T) {
	a, b := connectedPair(t, "caller", "callee")
	advertiseTestProcs(t, b)
	g := startGateway(t, a, nil)
	warm := clientFor(t, g, "http")
	// Waiting for the caller to find procEcho.
	testnet.Eventually(t, 15*time.Second, func() error {
		_, err := warm.Call(ctxFor(t, 5*time.Second), procEcho, []byte("x"), wire.CallOptions{Timeout: 2 * time.Second})
		return err
	})

	for _, proto := range []string{"http", "http3"} {
		t.Run(proto, func(t *testing.T) {
			c := clientFor(t, g, proto)
			ctx := ctxFor(t, 30*time.Second)
			t.Run("codecs", func(t *testing.T) {
				for _, ct := range []string{wire.ContentTypeJSON, wire.ContentTypeCBOR, wire.ContentTypeRaw, ""} {
					payload := []byte(`{"id":1}`)
					if ct == wire.ContentTypeCBOR {
						payload = []byte{0xa1, 0x62, 0x69, 0x64, 0x01} // {"id":1}
					}
					got, err := c.Call(ctx, procEcho, payload, wire.CallOptions{ContentType: ct, Timeout: 5 * time.Second})
					if err != nil || !bytes.Equal(got, payload) {
						t.Errorf("echo %q: %q, %v; want %q", ct, got, err, payload)
					}
				}
				big := bytes.Repeat([]byte{'x'}, DefaultMaxPayload)
				got, err := c.Call(ctx, procEcho, big, wire.CallOptions{})
				if err != nil || !bytes.Equal(got, big) {
					t.Errorf("echo of the largest payload: %d bytes, %v", len(got), err)
				}
			})
			t.Run("remote error with JSON data", func(t *testing.T) {
				_, err := c.Call(ctx, procFail, []byte(`{}`), wire.CallOptions{ContentType: wire.ContentTypeJSON})
				wantAPIError(t, err, http.StatusUnprocessableEntity, wire.CodeRemoteError)
				var ae *wire.APIError
				if !errors.As(err, &ae) || ae.Remote == nil {
					t.Fatalf("err = %#v, want Remote", err)
				}
				r := ae.Remote
				if r.Code != "invalid_order" || r.Message != "no such order" || string(r.Data) != `{"id":7}` || r.DataEncoding != wire.DataJSON {
					t.Errorf("remote = %+v (data %s)", r, r.Data)
				}
				if b, err := r.Bytes(); err != nil || string(b) != `{"id":7}` {
					t.Errorf("Bytes() = %q, %v", b, err)
				}
			})
			t.Run("remote error with binary data", func(t *testing.T) {
				_, err := c.Call(ctx, procFailRaw, nil, wire.CallOptions{})
				var ae *wire.APIError
				if !errors.As(err, &ae) || ae.Remote == nil {
					t.Fatalf("err = %v, want Remote", err)
				}
				if ae.Remote.DataEncoding != wire.DataBase64 || string(ae.Remote.Data) != `"AAH/"` {
					t.Errorf("remote = %+v (data %s)", ae.Remote, ae.Remote.Data)
				}
				if b, err := ae.Remote.Bytes(); err != nil || !bytes.Equal(b, []byte{0, 1, 0xff}) {
					t.Errorf("Bytes() = %v, %v", b, err)
				}
			})
			t.Run("unauthorized", func(t *testing.T) {
				_, err := c.Call(ctx, procDeny, nil, wire.CallOptions{})
				wantAPIError(t, err, http.StatusForbidden, wire.CodeUnauthorized)
			})
			t.Run("not found", func(t *testing.T) {
				_, err := c.Call(ctx, testRealm+".nobody", nil, wire.CallOptions{Timeout: 5 * time.Second})
				wantAPIError(t, err, http.StatusNotFound, wire.CodeNotFound)
			})
			t.Run("timeout", func(t *testing.T) {
				start := time.Now()
				_, err := c.Call(ctx, procSleep, nil, wire.CallOptions{Timeout: 300 * time.Millisecond})
				wantAPIError(t, err, http.StatusGatewayTimeout, wire.CodeTimeout)
				if d := time.Since(start); d > 5*time.Second {
					t.Errorf("a call with a timeout of 300ms answered after %v", d)
				}
				// The context's deadline alone sets the node's timeout.
				tctx, cancel := context.WithTimeout(ctx, time.Second)
				defer cancel()
				_, err = c.Call(tctx, procSleep, nil, wire.CallOptions{})
				wantAPIError(t, err, http.StatusGatewayTimeout, wire.CodeTimeout)
			})
			t.Run("invalid names", func(t *testing.T) {
				for _, p := range []string{"io.other.realm.get", testRealm + ".*", testRealm + ".>", testRealm, testRealm + "..x", testRealm + ".-upper", strings.ToUpper(testRealm) + ".x",
					testRealm + "." + strings.Repeat("x", 63) + "." + strings.Repeat("y", 63) + "." + strings.Repeat("z", 63) + "." + strings.Repeat("w", 63)} {
					_, err := c.Call(ctx, p, nil, wire.CallOptions{})
					wantAPIError(t, err, http.StatusBadRequest, wire.CodeInvalidName)
				}
			})
			t.Run("payload over the limit", func(t *testing.T) {
				_, err := c.Call(ctx, procEcho, make([]byte, DefaultMaxPayload+1), wire.CallOptions{})
				wantAPIError(t, err, http.StatusRequestEntityTooLarge, wire.CodeTooLarge)
			})
			t.Run("bad parameters", func(t *testing.T) {
				for _, h := range []string{"soon", "-1s", "0s"} {
					err := c.raw(ctx, http.MethodPost, "/v1/call/"+procEcho, http.Header{wire.TimeoutHeader: {h}}, nil)
					wantAPIError(t, err, http.StatusBadRequest, wire.CodeBadRequest)
				}
				for _, q := range []string{"timeout=x", "idempotent=maybe"} {
					err := c.raw(ctx, http.MethodPost, "/v1/call/"+procEcho+"?"+q, nil, nil)
					wantAPIError(t, err, http.StatusBadRequest, wire.CodeBadRequest)
				}
				err := c.raw(ctx, http.MethodGet, "/v1/call/"+procEcho, nil, nil)
				wantAPIError(t, err, http.StatusMethodNotAllowed, wire.CodeMethodNotAllowed)
				// The node still serves calls.
				if _, err := c.Call(ctx, procEcho, []byte("ok"), wire.CallOptions{Idempotent: true}); err != nil {
					t.Errorf("a call after bad input: %v", err)
				}
			})
		})
	}

	t.Run("reply content types", func(t *testing.T) {
		hc := &http.Client{Transport: &http.Transport{}}
		defer hc.CloseIdleConnections()
		for ct, want := range map[string]string{
			"application/json; charset=utf-8": wire.ContentTypeJSON,
			wire.ContentTypeCBOR:              wire.ContentTypeCBOR,
			"text/plain":                      wire.ContentTypeRaw,
			"":                                wire.ContentTypeRaw,
		} {
			req, _ := http.NewRequest(http.MethodPost, "http://"+g.Addr()+"/v1/call/"+procEcho+"?timeout=5s", strings.NewReader("1"))
			if ct != "" {
				req.Header.Set("Content-Type", ct)
			}
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != want || string(body) != "1" {
				t.Errorf("Content-Type %q: %d %q %q, want 200 %q", ct, resp.StatusCode, resp.Header.Get("Content-Type"), body, want)
			}
		}
	})
}

// TestCallDisconnected closes the callee while a call waits on it: the call
// ends 502 disconnected, well before its timeout.
func TestCallDisconnected(t *testing.T) {
	a, x := connectedPair(t, "caller2", "doomed")
	running := make(chan struct{}, 1)
	err := x.RPC().Advertise(ctxFor(t, 10*time.Second), procSleep, func(ctx context.Context, _ *rpc.Request) ([]byte, error) {
		select {
		case running <- struct{}{}:
		default:
		}
		<-ctx.Done()
		return nil, ctx.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	c := clientFor(t, startGateway(t, a, nil), "http")
	// Until the caller finds the procedure: a short call that reaches the
	// handler (and times out there).
	testnet.Eventually(t, 15*time.Second, func() error {
		_, err := c.Call(ctxFor(t, 5*time.Second), procSleep, nil, wire.CallOptions{Timeout: 300 * time.Millisecond})
		select {
		case <-running:
			return nil
		default:
			return fmt.Errorf("a call did not reach the handler: %v", err)
		}
	})
	done := make(chan error, 1)
	go func() {
		_, err := c.Call(ctxFor(t, 60*time.Second), procSleep, nil, wire.CallOptions{Timeout: 30 * time.Second})
		done <- err
	}()
	select {
	case <-running:
	case err := <-done:
		t.Fatalf("the call ended before its handler ran: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("the handler did not run")
	}
	start := time.Now()
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		wantAPIError(t, err, http.StatusBadGateway, wire.CodeDisconnected)
		t.Logf("disconnected %v after the callee closed: %v", time.Since(start).Round(time.Millisecond), err)
	case <-time.After(20 * time.Second):
		t.Fatal("the call still waits 20s after its callee closed")
	}
}

// TestCallThroughput logs calls/s through the HTTP/1.1 API to a Go handler
// on another node (8 concurrent callers, 64-byte JSON payload). It asserts
// only that every call succeeds.
func TestCallThroughput(t *testing.T) {
	a, b := connectedPair(t, "tp-caller", "tp-callee")
	if err := b.RPC().Advertise(ctxFor(t, 10*time.Second), procEcho, func(_ context.Context, req *rpc.Request) ([]byte, error) {
		return req.Payload, nil
	}); err != nil {
		t.Fatal(err)
	}
	c := clientFor(t, startGateway(t, a, nil), "http")
	payload := []byte(fmt.Sprintf(`{"pad":%q}`, strings.Repeat("x", 54)))
	// Waiting for the caller to find procEcho.
	testnet.Eventually(t, 15*time.Second, func() error {
		_, err := c.Call(ctxFor(t, 5*time.Second), procEcho, payload, wire.CallOptions{ContentType: wire.ContentTypeJSON, Timeout: 2 * time.Second})
		return err
	})
	const workers, per = 8, 250
	errs := make(chan error, workers)
	start := time.Now()
	for range workers {
		go func() {
			for range per {
				if _, err := c.Call(context.Background(), procEcho, payload, wire.CallOptions{ContentType: wire.ContentTypeJSON, Timeout: 10 * time.Second}); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	d := time.Since(start)
	t.Logf("%d calls through the HTTP/1.1 API in %v: %.0f calls/s", workers*per, d.Round(time.Millisecond), float64(workers*per)/d.Seconds())
}
