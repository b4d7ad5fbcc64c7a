package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	wire "github.com/macula-io/macula/api"
	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/ucan"
)

// FuzzAPI sends arbitrary requests (method, path, query, headers, body) to
// the API of a real node, one node for the whole run, as a program on the
// node's loopback could. Whatever comes in, the answer is a status a
// client can act on: an error answer is JSON with a code and a message,
// and never 500 (an error the API does not name is a bug: the caller gets
// no clear error); a JSON answer is valid JSON. A request is bounded by a
// short deadline, so the event streams (subscribe, registry watch) end and
// a handler that ignored its request's context would hang the run.
//
// Requests a real server would refuse before the handler (a method or a
// header that is not an HTTP token, a path without its leading slash) are
// skipped.
func FuzzAPI(f *testing.F) {
	n := startNodeWith(f, nil, testRealm, "fuzz")
	a := newAPI(n, new(slog.LevelVar), testnet.QuietLogger(), wire.APIAddrs{})
	f.Cleanup(a.close)

	// A seed per route, its wildcards filled in, and a few with bodies.
	for _, p := range a.routes {
		method, path, _ := strings.Cut(p, " ")
		f.Add(method, fuzzFill.Replace(path), "", "", []byte(nil))
	}
	for _, s := range []struct{ method, path, query, header, body string }{
		{"POST", "/v1/call/" + testRealm + ".svc.echo", "timeout=10ms", "Content-Type: application/json", `{"a":1}`},
		{"POST", "/v1/publish/" + testRealm + ".orders.placed", "wait=true&timeout=5ms", "Content-Type: application/json", `[1,2]`},
		{"POST", "/v1/advertise/" + testRealm + ".svc.echo", "", "Content-Type: application/json", `{"url":"http://127.0.0.1:1/x"}`},
		{"GET", "/v1/subscribe", "pattern=" + testRealm + ".>&backpressure=true", "Accept: text/event-stream", ""},
		{"GET", "/v1/dht/lookup", "key=k&limit=3&timeout=5ms", "", ""},
		{"POST", "/v1/registry/user/alice", "", "Content-Type: application/json", `{"meta":{"role":"admin"},"ttl":"1s"}`},
		{"PUT", "/v1/capabilities", "", "Content-Type: application/json", `{"capabilities":["game"]}`},
		{"PUT", "/v1/log/level", "", "Content-Type: application/json", `{"level":"debug"}`},
		{"POST", "/v1/ucan/revocations", "", "Authorization: Bearer x.y.z", `{"cid":"bafy"}`},
	} {
		f.Add(s.method, s.path, s.query, s.header, []byte(s.body))
	}

	f.Fuzz(func(t *testing.T, method, path, query, header string, body []byte) {
		fuzzRequest(t, a, method, path, query, header, body, "")
	})
}

// FuzzAPISecure is FuzzAPI against a node of a secure realm, with the
// request from loopback or from off it (remote), seeded with the node's
// local credential and a program's bearer token that may call
// io.acme.orders.place. Besides FuzzAPI's rules: a request from off
// loopback succeeds only as that call (POST /v1/call/io.acme.orders.place)
// or on the public routes (the dashboard's page and files, the OpenAPI
// document): no mutation of a token, a credential or a route gets anything
// else.
func FuzzAPISecure(f *testing.F) {
	s := startSecureWith(f, nil)
	a := s.h.(*api)
	f.Cleanup(a.close)
	placed := testRealm + ".place"
	prog := s.program(ucan.Call, placed, time.Hour)
	inv, err := ucan.Invoke(prog.key, ucan.InvokeOptions{Executor: s.did, Command: ucan.Call, Resource: placed, Proof: prog.chain})
	if err != nil {
		f.Fatal(err)
	}
	bearer := "Authorization: Bearer " + append(append(ucan.Chain{}, prog.chain...), inv).String()
	local := "Authorization: " + s.local()
	for _, p := range a.routes {
		method, path, _ := strings.Cut(p, " ")
		f.Add(method, fuzzFill.Replace(path), "", local, []byte(nil), false)
		f.Add(method, fuzzFill.Replace(path), "", bearer, []byte(nil), true)
	}
	f.Add("POST", "/v1/call/"+placed, "", bearer+"\nContent-Type: application/json", []byte(`{"a":1}`), true)
	f.Add("POST", "/v1/call/"+placed, "", local, []byte(`"x"`), true)

	f.Fuzz(func(t *testing.T, method, path, query, header string, body []byte, remote bool) {
		addr := loopbackAddr
		if remote {
			addr = remoteAddr
		}
		w := fuzzRequest(t, a, method, path, query, header, body, addr)
		public := (method == "GET" || method == "HEAD") && (path == "/" || path == "/v1/openapi.json" || strings.HasPrefix(path, "/ui/"))
		granted := method == "POST" && path == "/v1/call/"+placed
		if remote && w != nil && w.Code < 300 && !public && !granted {
			t.Fatalf("%s %q ?%q from off loopback with %.300q: %d %.300q: want it refused", method, path, query, header, w.Code, w.Body.Bytes())
		}
	})
}

// fuzzFill fills the wildcards of the API's route patterns in the seeds.
var fuzzFill = strings.NewReplacer("{did}", "did:macula:"+testRealm+".fuzz", "{procedure}", testRealm+".svc.echo",
	"{topic}", testRealm+".orders.placed", "{key...}", "user/alice", "{name}", "eu", "{id}", "p1",
	"{kind}", "counter", "{actor}", "player_1", "{capability}", "demo")

// fuzzRequest runs one fuzzed request through a (from addr, unless empty)
// and checks the answer; it returns nil for a request a real server would
// refuse before the handler.
func fuzzRequest(t *testing.T, a *api, method, path, query, header string, body []byte, addr string) *httptest.ResponseRecorder {
	if !isToken(method) || !strings.HasPrefix(path, "/") {
		return nil
	}
	u := &url.URL{Path: path, RawQuery: query}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	r := httptest.NewRequestWithContext(ctx, http.MethodGet, "/", bytes.NewReader(body))
	r.Method, r.URL, r.RequestURI = method, u, u.RequestURI()
	if addr != "" {
		r.RemoteAddr = addr
	}
	for line := range strings.Lines(header) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !isToken(k) || !isFieldValue(v) {
			return nil
		}
		r.Header.Add(k, strings.TrimSpace(v))
	}
	w := httptest.NewRecorder()
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.ServeHTTP(w, r)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s %q ?%q: the handler did not return 10s after its request's 20ms deadline", method, path, query)
	}
	ct := w.Header().Get("Content-Type")
	switch {
	case w.Code < 100 || w.Code > 599:
		t.Fatalf("%s %q ?%q: status %d", method, path, query, w.Code)
	case w.Code >= 400:
		var eb wire.ErrorBody
		if ct != "application/json" || json.Unmarshal(w.Body.Bytes(), &eb) != nil || eb.Error.Code == "" || eb.Error.Message == "" {
			t.Fatalf("%s %q ?%q: error answer %d %q %q: want JSON with a code and a message", method, path, query, w.Code, ct, w.Body.Bytes())
		}
		if w.Code == http.StatusInternalServerError {
			t.Fatalf("%s %q ?%q body %q: 500 %s: %s", method, path, query, body, eb.Error.Code, eb.Error.Message)
		}
	case ct == "application/json" && w.Code != http.StatusNoContent && !json.Valid(w.Body.Bytes()):
		t.Fatalf("%s %q ?%q: %d answer is not JSON: %q", method, path, query, w.Code, w.Body.Bytes())
	}
	return w
}

// isToken says whether s is an HTTP token (RFC 9110 5.6.2), as a method
// and a header name must be.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// isFieldValue says whether s may be a header's value: no control
// characters but tab (net/http's server refuses the others).
func isFieldValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
