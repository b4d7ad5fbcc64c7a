package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	wire "github.com/macula-io/macula/api"
	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/rpc"
)

// hookRequest is what a test webhook received.
type hookRequest struct {
	path, contentType, procedure, did, peer, deadline string
	body                                              []byte
}

// testWebhook is a webhook program on loopback: each path answers in its
// own way, and every request is recorded.
type testWebhook struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []hookRequest
}

func startWebhook(t *testing.T) *testWebhook {
	t.Helper()
	w := &testWebhook{}
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(rw http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rw.Header().Set("Content-Type", r.Header.Get("Content-Type"))
		rw.Write(b)
	})
	mux.HandleFunc("/err-json", func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Type", "application/json")
		rw.WriteHeader(http.StatusUnprocessableEntity)
		io.WriteString(rw, `{"error":{"code":"invalid_order","message":"no such order","data":{"id":7}}}`)
	})
	mux.HandleFunc("/err-text", func(rw http.ResponseWriter, r *http.Request) {
		rw.WriteHeader(http.StatusInternalServerError)
		io.WriteString(rw, "boom "+strings.Repeat("x", 2000))
	})
	mux.HandleFunc("/slow", func(rw http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})
	mux.HandleFunc("/redirect", func(rw http.ResponseWriter, r *http.Request) {
		http.Redirect(rw, r, "/echo", http.StatusTemporaryRedirect)
	})
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.mu.Lock()
		w.got = append(w.got, hookRequest{path: r.URL.Path, contentType: r.Header.Get("Content-Type"),
			procedure: r.Header.Get(HeaderProcedure), did: r.Header.Get(HeaderCallerDID),
			peer: r.Header.Get(HeaderCallerPeer), deadline: r.Header.Get(HeaderDeadline), body: b})
		w.mu.Unlock()
		r.Body = io.NopCloser(strings.NewReader(string(b)))
		mux.ServeHTTP(rw, r)
	}))
	t.Cleanup(w.srv.Close)
	return w
}

func (w *testWebhook) url(path string) string { return w.srv.URL + path }

func (w *testWebhook) last() hookRequest {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.got) == 0 {
		return hookRequest{}
	}
	return w.got[len(w.got)-1]
}

// postAdvertise sends POST /v1/advertise/{procedure} with body and returns
// the status, or the API error.
func postAdvertise(t *testing.T, c *testClient, procedure, body string) (int, error) {
	t.Helper()
	status, err := c.send(ctxFor(t, 10*time.Second), http.MethodPost, "/v1/advertise/"+procedure, nil, []byte(body))
	if status == 0 {
		t.Fatal(err)
	}
	return status, err
}

func advertised(t *testing.T, c *testClient) map[string]wire.Advertisement {
	t.Helper()
	ads, err := c.Advertised(ctxFor(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]wire.Advertisement{}
	for _, ad := range ads {
		out[ad.Procedure] = ad
	}
	return out
}

// TestWebhook advertises procedures served by a webhook program through
// node b's API and calls them from node a's API (and b's own): the
// webhook's request, each kind of answer, renewal, conflicts, withdrawal.
func TestWebhook(t *testing.T) {
	a, b := connectedPair(t, "hook-caller", "hook-callee")
	ga, gb := startGateway(t, a, nil), startGateway(t, b, nil)
	ca, cb := clientFor(t, ga, "http"), clientFor(t, gb, "http")
	hook := startWebhook(t)
	ctx := ctxFor(t, 60*time.Second)
	p := func(name string) string { return testRealm + ".hook_" + name }

	if err := cb.Advertise(ctx, p("echo"), hook.url("/echo"), 0); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"err_json", "err_text"} {
		if err := cb.Advertise(ctx, p(name), hook.url("/"+strings.Replace(name, "_", "-", 1)), 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cb.AdvertiseWebhook(ctx, p("slow"), wire.AdvertiseRequest{URL: hook.url("/slow"), Timeout: "300ms"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cb.AdvertiseWebhook(ctx, p("slower"), wire.AdvertiseRequest{URL: hook.url("/slow")}); err != nil {
		t.Fatal(err)
	}
	// A port nobody listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "http://" + ln.Addr().String() + "/x"
	ln.Close()
	if err := cb.Advertise(ctx, p("dead"), deadURL, 0); err != nil {
		t.Fatal(err)
	}

	t.Run("call from another node", func(t *testing.T) {
		var got []byte
		// Waiting for a to find p("echo").
		testnet.Eventually(t, 15*time.Second, func() error {
			var err error
			got, err = ca.Call(ctxFor(t, 5*time.Second), p("echo"), []byte(`{"q":1}`), wire.CallOptions{ContentType: wire.ContentTypeJSON, Timeout: 3 * time.Second})
			return err
		})
		if string(got) != `{"q":1}` {
			t.Errorf("reply %q", got)
		}
		r := hook.last()
		if r.path != "/echo" || r.contentType != wire.ContentTypeJSON || r.procedure != p("echo") ||
			r.did != a.DID() || r.peer != a.ID().String() || string(r.body) != `{"q":1}` {
			t.Errorf("webhook got %+v", r)
		}
		dl, err := time.Parse(time.RFC3339Nano, r.deadline)
		if err != nil || time.Until(dl) > 3*time.Second || time.Until(dl) < -time.Minute {
			t.Errorf("deadline header %q (%v)", r.deadline, err)
		}
	})
	t.Run("call on the same node", func(t *testing.T) {
		got, err := cb.Call(ctx, p("echo"), []byte{1, 2}, wire.CallOptions{ContentType: wire.ContentTypeCBOR})
		if err != nil || string(got) != "\x01\x02" {
			t.Fatalf("reply %q, %v", got, err)
		}
		if r := hook.last(); r.did != b.DID() || r.contentType != wire.ContentTypeCBOR {
			t.Errorf("webhook got %+v", r)
		}
	})
	t.Run("error answers", func(t *testing.T) {
		_, err := ca.Call(ctx, p("err_json"), []byte(`{}`), wire.CallOptions{ContentType: wire.ContentTypeJSON})
		var ae *wire.APIError
		if !errors.As(err, &ae) || ae.Code != wire.CodeRemoteError || ae.Remote == nil ||
			ae.Remote.Code != "invalid_order" || ae.Remote.Message != "no such order" || string(ae.Remote.Data) != `{"id":7}` {
			t.Errorf("JSON error body: %v (%+v)", err, ae)
		}
		_, err = ca.Call(ctx, p("err_text"), nil, wire.CallOptions{})
		if !errors.As(err, &ae) || ae.Remote == nil || ae.Remote.Code != "webhook_500" ||
			!strings.HasPrefix(ae.Remote.Message, "boom xx") || len(ae.Remote.Message) != maxWebhookMessage {
			t.Errorf("text error body: %v", err)
		}
		_, err = ca.Call(ctx, p("dead"), nil, wire.CallOptions{})
		if !errors.As(err, &ae) || ae.Remote == nil || ae.Remote.Code != CodeWebhookUnreachable {
			t.Errorf("unreachable webhook: %v", err)
		}
		start := time.Now()
		_, err = ca.Call(ctx, p("slow"), nil, wire.CallOptions{Timeout: 10 * time.Second})
		if !errors.As(err, &ae) || ae.Remote == nil || ae.Remote.Code != CodeWebhookTimeout || time.Since(start) > 5*time.Second {
			t.Errorf("webhook past its timeout: %v after %v", err, time.Since(start))
		}
		_, err = ca.Call(ctx, p("slower"), nil, wire.CallOptions{Timeout: 300 * time.Millisecond})
		wantAPIError(t, err, http.StatusGatewayTimeout, wire.CodeTimeout)
	})
	t.Run("renew and conflicts", func(t *testing.T) {
		status, err := postAdvertise(t, cb, p("echo"), fmt.Sprintf(`{"url":%q,"lease":"1m"}`, hook.url("/echo")))
		if status != http.StatusOK || err != nil {
			t.Errorf("the same URL again: %d %v, want 200", status, err)
		}
		if ad := advertised(t, cb)[p("echo")]; ad.Lease != "1m0s" || ad.Expires == nil || ad.URL != hook.url("/echo") {
			t.Errorf("renewed advertisement %+v", ad)
		}
		status, err = postAdvertise(t, cb, p("echo"), fmt.Sprintf(`{"url":%q}`, hook.url("/other")))
		if status != http.StatusConflict {
			t.Errorf("another URL: %d %v, want 409", status, err)
		}
		if err := b.RPC().Advertise(ctx, p("native"), func(context.Context, *rpc.Request) ([]byte, error) { return nil, nil }); err != nil {
			t.Fatal(err)
		}
		status, err = postAdvertise(t, cb, p("native"), fmt.Sprintf(`{"url":%q}`, hook.url("/echo")))
		wantAPIError(t, err, http.StatusConflict, wire.CodeConflict)
		wantAPIError(t, cb.Unadvertise(ctx, p("native")), http.StatusConflict, wire.CodeConflict)
		if ad, ok := advertised(t, cb)[p("native")]; !ok || ad.URL != "" {
			t.Errorf("a Go handler in the list: %+v, %v", ad, ok)
		}
		status, err = postAdvertise(t, cb, p("fresh"), fmt.Sprintf(`{"url":%q}`, hook.url("/echo")))
		if status != http.StatusCreated || err != nil {
			t.Errorf("a new advertisement: %d %v, want 201", status, err)
		}
	})
	t.Run("bad input", func(t *testing.T) {
		for _, body := range []string{
			`{"url":"http://10.0.0.1:8080/x"}`,
			`{"url":"http://[2001:db8::1]/x"}`,
			`{"url":"http://0.0.0.0:8080/x"}`,
		} {
			// Off loopback without an allow-list: a webhook target the
			// node may not be aimed at.
			_, err := postAdvertise(t, cb, p("x"), body)
			wantAPIError(t, err, http.StatusForbidden, wire.CodeUnauthorized)
			if err == nil || !strings.Contains(err.Error(), "webhook") {
				t.Errorf("%s: %v, want a word on webhooks", body, err)
			}
		}
		for _, body := range []string{
			``, `{}`, `{"url":"ftp://127.0.0.1/x"}`, `{"url":"/x"}`, `{"url":"http://127.0.0.1/x","extra":1}`,
			`{"url":"http://127.0.0.1/x","lease":"500ms"}`, `{"url":"http://127.0.0.1/x","lease":"2h"}`,
			`{"url":"http://127.0.0.1/x","lease":"soon"}`, `{"url":"http://127.0.0.1/x","timeout":"-1s"}`,
			`{"url":"http://127.0.0.1/x"} {}`,
		} {
			_, err := postAdvertise(t, cb, p("x"), body)
			wantAPIError(t, err, http.StatusBadRequest, wire.CodeBadRequest)
		}
		for _, proc := range []string{"io.other.realm.x", testRealm + ".*"} {
			_, err := postAdvertise(t, cb, proc, fmt.Sprintf(`{"url":%q}`, hook.url("/echo")))
			wantAPIError(t, err, http.StatusBadRequest, wire.CodeInvalidName)
		}
		if _, ok := advertised(t, cb)[p("x")]; ok {
			t.Errorf("a refused advertisement is listed")
		}
	})
	t.Run("unadvertise", func(t *testing.T) {
		if err := cb.Unadvertise(ctx, p("fresh")); err != nil {
			t.Fatal(err)
		}
		if _, ok := advertised(t, cb)[p("fresh")]; ok {
			t.Errorf("still listed after DELETE")
		}
		if slices.Contains(b.RPC().Advertised(), p("fresh")) {
			t.Errorf("still advertised on the node after DELETE")
		}
		wantAPIError(t, cb.Unadvertise(ctx, p("fresh")), http.StatusNotFound, wire.CodeNotFound)
		_, err := cb.Call(ctx, p("fresh"), nil, wire.CallOptions{Timeout: 5 * time.Second})
		wantAPIError(t, err, http.StatusNotFound, wire.CodeNotFound)
	})
	t.Run("lease", func(t *testing.T) {
		// Renewed within each lease, it stays for several leases.
		start := time.Now()
		var lastRenewal time.Time
		for time.Since(start) < 1600*time.Millisecond { // more than one lease
			lastRenewal = time.Now()
			if err := cb.Advertise(ctx, p("leased"), hook.url("/echo"), time.Second); err != nil {
				t.Fatal(err)
			}
			if _, ok := advertised(t, cb)[p("leased")]; !ok {
				t.Fatalf("gone after %v although renewed", time.Since(start))
			}
			time.Sleep(300 * time.Millisecond) // the renewal period of this test's client
		}
		// Not renewed, it goes within about one lease, and not before.
		// Waiting for the lapsed lease to withdraw p("leased").
		testnet.Eventually(t, 5*time.Second, func() error {
			if slices.Contains(b.RPC().Advertised(), p("leased")) {
				return errors.New("still advertised")
			}
			return nil
		})
		if d := time.Since(lastRenewal); d < time.Second {
			t.Errorf("withdrawn %v after the last renewal began; the lease is 1s", d)
		}
		// Renewing without a lease keeps it for good.
		if err := cb.Advertise(ctx, p("leased"), hook.url("/echo"), time.Second); err != nil {
			t.Fatal(err)
		}
		if err := cb.Advertise(ctx, p("leased"), hook.url("/echo"), 0); err != nil {
			t.Fatal(err)
		}
		waitFor := time.Now().Add(1200 * time.Millisecond) // more than the lease it had
		for time.Now().Before(waitFor) {
			if !slices.Contains(b.RPC().Advertised(), p("leased")) {
				t.Fatal("an advertisement renewed without a lease was withdrawn")
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	t.Run("close withdraws", func(t *testing.T) {
		g2 := startGateway(t, b, nil)
		c2 := clientFor(t, g2, "http")
		if err := c2.Advertise(ctx, p("by_g2"), hook.url("/slow"), 10*time.Second); err != nil {
			t.Fatal(err)
		}
		// A call in flight on the webhook ends when the gateway closes.
		done := make(chan error, 1)
		go func() {
			_, err := cb.Call(ctx, p("by_g2"), nil, wire.CallOptions{Timeout: 20 * time.Second})
			done <- err
		}()
		testnet.Eventually(t, 5*time.Second, func() error {
			if got := hook.last().procedure; got != p("by_g2") {
				return fmt.Errorf("the webhook's last call is of %q, want %s", got, p("by_g2"))
			}
			return nil
		})
		if err := g2.Close(); err != nil {
			t.Fatal(err)
		}
		if slices.Contains(b.RPC().Advertised(), p("by_g2")) {
			t.Errorf("still advertised after its gateway closed")
		}
		select {
		case err := <-done:
			var ae *wire.APIError
			if !errors.As(err, &ae) || ae.Remote == nil || ae.Remote.Code != CodeWebhookClosed {
				t.Errorf("the call in flight: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("the call in flight still waits after its gateway closed")
		}
	})
}

func TestWebhookError(t *testing.T) {
	for _, c := range []struct {
		status          int
		body            string
		code, msg, data string
	}{
		{422, `{"error":{"code":"invalid_order","message":"no such order"}}`, "invalid_order", "no such order", ""},
		{400, `{"error":{"code":"bad","message":"m","data":[1,2]}}`, "bad", "m", "[1,2]"},
		{500, `{"error":{"message":"no code"}}`, "webhook_500", `{"error":{"message":"no code"}}`, ""},
		{503, ``, "webhook_503", "Service Unavailable", ""},
		{404, "  not here\n", "webhook_404", "not here", ""},
	} {
		re := webhookError(c.status, []byte(c.body))
		if re.Code != c.code || re.Message != c.msg || string(re.Data) != c.data {
			t.Errorf("%d %q: %+v (data %q), want %s %q %q", c.status, c.body, re, re.Data, c.code, c.msg, c.data)
		}
	}
	if got := cut("héllo", 2); got != "h" {
		t.Errorf("cut on a rune boundary: %q", got)
	}
}
