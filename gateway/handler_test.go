package gateway

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"

	wire "github.com/macula-io/macula/api"
	"github.com/macula-io/macula/dht"
	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/nat"
	"github.com/macula-io/macula/node"
	"github.com/macula-io/macula/pubsub"
	"github.com/macula-io/macula/rpc"
)

// serve runs one request through h and returns the recorded answer.
func serve(t *testing.T, h http.Handler, method, target, body string) *httptest.ResponseRecorder {
	t.Helper()
	var r *http.Request
	if body == "" {
		r = httptest.NewRequest(method, target, nil)
	} else {
		r = httptest.NewRequest(method, target, strings.NewReader(body))
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q", method, target, ct)
	}
	if !json.Valid(w.Body.Bytes()) {
		t.Errorf("%s %s: body is not JSON: %q", method, target, w.Body.String())
	}
	return w
}

// decodeError decodes an error answer and checks its status and code.
func decodeError(t *testing.T, w *httptest.ResponseRecorder, status int, code string) wire.Error {
	t.Helper()
	var eb wire.ErrorBody
	if err := json.Unmarshal(w.Body.Bytes(), &eb); err != nil {
		t.Fatalf("error body %q: %v", w.Body.String(), err)
	}
	if w.Code != status || eb.Error.Code != code || eb.Error.Message == "" {
		t.Errorf("answer %d %+v, want %d %s with a message", w.Code, eb.Error, status, code)
	}
	return eb.Error
}

func TestHandler(t *testing.T) {
	n := startNode(t, testRealm, "h")
	levels := new(slog.LevelVar)
	h := newAPI(n, levels, testnet.QuietLogger(), wire.APIAddrs{})

	t.Run("node without API addresses", func(t *testing.T) {
		w := serve(t, h, "GET", "/v1/node", "")
		var info wire.NodeInfo
		if err := json.Unmarshal(w.Body.Bytes(), &info); err != nil || w.Code != 200 {
			t.Fatalf("%d %s: %v", w.Code, w.Body, err)
		}
		if info.API != (wire.APIAddrs{}) || info.PeerID != n.ID().String() {
			t.Errorf("node = %+v", info)
		}
		if !strings.Contains(w.Body.String(), `"api":{"http":""}`) {
			t.Errorf("api addrs not as documented: %s", w.Body)
		}
	})
	t.Run("peers is an array", func(t *testing.T) {
		w := serve(t, h, "GET", "/v1/peers", "")
		if w.Code != 200 || strings.TrimSpace(w.Body.String()) != "[]" {
			t.Errorf("peers = %d %q, want 200 []", w.Code, w.Body)
		}
	})
	t.Run("not found", func(t *testing.T) {
		for _, p := range []string{"/v1", "/v1/resolve/", "/v2/node", "/v1/resolve/a/b", "/index.html"} {
			decodeError(t, serve(t, h, "GET", p, ""), 404, wire.CodeNotFound)
		}
	})
	t.Run("paths ServeMux would redirect", func(t *testing.T) {
		// A doubled slash or a dot segment would be cleaned into another
		// route (another procedure, for a call), a subtree's root without
		// its slash redirected: a JSON 404 that names the clean path, not
		// a redirect with an empty body.
		for _, tc := range []struct{ method, target, want string }{
			{"POST", "/v1/call//" + testRealm + ".svc.x", "/v1/call/" + testRealm + ".svc.x"},
			{"GET", "/v1/registry/a/../b", "/v1/registry/b"},
			{"GET", "/v1/groups", "/v1/groups/"},
		} {
			w := serve(t, h, tc.method, tc.target, "")
			if e := decodeError(t, w, 404, wire.CodeNotFound); !strings.Contains(e.Message, "did you mean "+tc.want+"?") {
				t.Errorf("%s %s: %q, want it to name %s", tc.method, tc.target, e.Message, tc.want)
			}
			if loc := w.Header().Get("Location"); loc != "" {
				t.Errorf("%s %s: Location %q", tc.method, tc.target, loc)
			}
		}
	})
	t.Run("method not allowed", func(t *testing.T) {
		w := serve(t, h, "POST", "/v1/node", "")
		decodeError(t, w, 405, wire.CodeMethodNotAllowed)
		if allow := w.Header().Get("Allow"); !strings.Contains(allow, "GET") {
			t.Errorf("Allow = %q", allow)
		}
		w = serve(t, h, "DELETE", "/v1/log/level", "")
		decodeError(t, w, 405, wire.CodeMethodNotAllowed)
		if allow := w.Header().Get("Allow"); !strings.Contains(allow, "PUT") || !strings.Contains(allow, "GET") {
			t.Errorf("Allow = %q", allow)
		}
		decodeError(t, serve(t, h, "GET", "/v1/dht/provide?key=k", ""), 405, wire.CodeMethodNotAllowed)
	})
	t.Run("bad parameters", func(t *testing.T) {
		for _, target := range []string{
			"/v1/dht/lookup",
			"/v1/dht/lookup?key=k&limit=-1",
			"/v1/dht/lookup?key=k&limit=x",
			"/v1/dht/lookup?key=k&limit=1001",
			"/v1/dht/lookup?key=k&timeout=soon",
			"/v1/dht/lookup?key=k&timeout=-1s",
			"/v1/resolve/" + n.DID() + "?timeout=0s",
		} {
			decodeError(t, serve(t, h, "GET", target, ""), 400, wire.CodeBadRequest)
		}
		decodeError(t, serve(t, h, "POST", "/v1/dht/provide", ""), 400, wire.CodeBadRequest)
		decodeError(t, serve(t, h, "GET", "/v1/dht/lookup?key=", ""), 400, wire.CodeInvalidKey)
	})
	t.Run("timeout is capped", func(t *testing.T) {
		r := httptest.NewRequest("GET", "/v1/dht/lookup?key=k&timeout=1h", nil)
		d, err := timeoutParam(r, DefaultLookupTimeout)
		if err != nil || d != wire.MaxTimeout {
			t.Errorf("timeout=1h gives %v, %v; want %v", d, err, wire.MaxTimeout)
		}
	})
	t.Run("provide alone", func(t *testing.T) {
		// Nobody to announce it to: accepted, and said to be pending.
		w := serve(t, h, "POST", "/v1/dht/provide?key=solo", "")
		if w.Code != 202 || strings.TrimSpace(w.Body.String()) != `{"key":"solo","announced":false}` {
			t.Errorf("provide = %d %s", w.Code, w.Body)
		}
		w = serve(t, h, "GET", "/v1/dht/lookup?key=solo", "")
		var res wire.LookupResult
		if err := json.Unmarshal(w.Body.Bytes(), &res); err != nil || len(res.Providers) != 1 ||
			res.Providers[0].PeerID != n.ID().String() || res.Providers[0].DID != n.DID() {
			t.Errorf("lookup of own key = %d %s", w.Code, w.Body)
		}
	})
	t.Run("log level bodies", func(t *testing.T) {
		for _, body := range []string{``, `{`, `"debug"`, `{"level":"debug","x":1}`, `{"level":"debug"} {}`} {
			decodeError(t, serve(t, h, "PUT", "/v1/log/level", body), 400, wire.CodeBadRequest)
		}
		decodeError(t, serve(t, h, "PUT", "/v1/log/level", `{"level":"trace"}`), 400, wire.CodeInvalidLevel)
		big := `{"level":"` + strings.Repeat("x", MaxBodyBytes) + `"}`
		decodeError(t, serve(t, h, "PUT", "/v1/log/level", big), 413, wire.CodeTooLarge)
		w := serve(t, h, "PUT", "/v1/log/level", `{"level":"WARN"}`)
		if w.Code != 200 || levels.Level() != slog.LevelWarn || strings.TrimSpace(w.Body.String()) != `{"level":"warn"}` {
			t.Errorf("set WARN = %d %s, level %v", w.Code, w.Body, levels.Level())
		}
		levels.Set(slog.LevelInfo + 2)
		w = serve(t, h, "GET", "/v1/log/level", "")
		if strings.TrimSpace(w.Body.String()) != `{"level":"info+2"}` {
			t.Errorf("level between names = %s", w.Body)
		}
	})
	t.Run("no log level", func(t *testing.T) {
		h := NewHandler(n, nil)
		decodeError(t, serve(t, h, "GET", "/v1/log/level", ""), 501, wire.CodeNotImplemented)
		decodeError(t, serve(t, h, "PUT", "/v1/log/level", `{"level":"debug"}`), 501, wire.CodeNotImplemented)
	})
}

// TestDocListsRoutes keeps the route table in doc.go true.
func TestDocListsRoutes(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	a := newAPI(nil, nil, testnet.QuietLogger(), wire.APIAddrs{})
	for _, p := range a.routes {
		method, path, _ := strings.Cut(p, " ")
		re := regexp.MustCompile(`(?m)^//\s+` + method + `\s+` + regexp.QuoteMeta(path) + `\s`)
		if !re.Match(doc) {
			t.Errorf("doc.go does not list %s", p)
		}
	}
}

// TestClassifyClosed checks that a closed service, whichever it is, is 503
// unavailable: their ErrClosed all match net.ErrClosed.
func TestClassifyClosed(t *testing.T) {
	for _, err := range []error{node.ErrClosed, rpc.ErrClosed, pubsub.ErrClosed, dht.ErrClosed, nat.ErrClosed} {
		status, code := classify(fmt.Errorf("doing it: %w", err))
		if status != http.StatusServiceUnavailable || code != wire.CodeUnavailable {
			t.Errorf("%v: %d %s, want 503 %s", err, status, code, wire.CodeUnavailable)
		}
	}
}
