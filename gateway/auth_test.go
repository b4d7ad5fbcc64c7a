package gateway

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	wire "github.com/macula-io/macula/api"
	"github.com/macula-io/macula/api/ucantoken"
	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/node"
	"github.com/macula-io/macula/rpc"
	"github.com/macula-io/macula/ucan"
)

// Addresses requests of the tests come from.
const (
	remoteAddr   = "192.0.2.1:1234" // TEST-NET-1: off loopback
	loopbackAddr = "127.0.0.1:5555"
)

// secureRealm is a realm authority and one node of its realm, with the
// grants the tests need.
type secureRealm struct {
	t    testing.TB
	auth ed25519.PrivateKey
	n    *node.Node
	did  string // the node's did:key
	h    http.Handler
	cred string // h's local credential
}

// startSecure starts a node of a secure test realm. It is a member and
// may call, publish and advertise one segment under the realm
// (io.acme.orders.*) and subscribe to everything; it serves
// io.acme.orders.place and io.acme.orders.deep.place, echoing the payload.
// Its validator has no clock leeway, so that a chain expires on time.
func startSecure(t *testing.T) *secureRealm {
	t.Helper()
	return startSecureWith(t, nil)
}

// startSecureWith is startSecure with mod applied to the node's Config.
func startSecureWith(t testing.TB, mod func(*node.Config)) *secureRealm {
	t.Helper()
	auth, err := ucan.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	priv, err := ucan.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	key, err := crypto.UnmarshalEd25519PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	s := &secureRealm{t: t, auth: auth, did: ucan.KeyDID(priv)}
	chains := []ucan.Chain{
		s.grant(s.did, ucan.Member, "", time.Hour),
		s.grant(s.did, ucan.Call, testRealm+".*", time.Hour),
		s.grant(s.did, ucan.Publish, testRealm+".*", time.Hour),
		s.grant(s.did, ucan.Subscribe, testRealm+".>", time.Hour),
		s.grant(s.did, ucan.Advertise, testRealm+".>", time.Hour),
	}
	cfg := node.DefaultConfig(testRealm, "s")
	cfg.ListenAddrs = []string{"/ip4/127.0.0.1/udp/0/quic-v1"}
	cfg.Logger = testnet.QuietLogger()
	cfg.Key, cfg.Authority, cfg.Chains = key, ucan.KeyDID(auth), chains
	cfg.UCAN.Leeway = -1
	if mod != nil {
		mod(&cfg)
	}
	n, err := node.New(cfg)
	if err != nil {
		t.Fatalf("node.New: %v", err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	if n.DID() != s.did || !n.Secure() {
		t.Fatalf("node DID %s secure %v, want %s and secure", n.DID(), n.Secure(), s.did)
	}
	echo := func(_ context.Context, req *rpc.Request) ([]byte, error) { return req.Payload, nil }
	for _, p := range []string{testRealm + ".place", testRealm + ".deep.place"} {
		if err := n.RPC().Advertise(ctxFor(t, 10*time.Second), p, echo); err != nil {
			t.Fatalf("Advertise(%s): %v", p, err)
		}
	}
	s.n = n
	a := newAPI(n, nil, testnet.QuietLogger(), wire.APIAddrs{})
	a.credFile = "/run/test/api-credential" // only named in answers
	s.h, s.cred = a, a.cred
	return s
}

// local is the Authorization value of the node's local credential, for
// request.
func (s *secureRealm) local() string { return wire.LocalScheme + " " + s.cred }

// grant issues a root delegation of cmd on resource to did.
func (s *secureRealm) grant(did string, cmd ucan.Command, resource string, ttl time.Duration) ucan.Chain {
	s.t.Helper()
	c, err := ucan.Issue(s.auth, ucan.IssueOptions{Audience: did, Command: cmd, Resource: resource, Expires: time.Now().Add(ttl)})
	if err != nil {
		s.t.Fatal(err)
	}
	return c
}

// program is a key outside the realm's nodes, with a chain from the
// authority.
type program struct {
	key   ed25519.PrivateKey
	did   string
	chain ucan.Chain
}

func (s *secureRealm) program(cmd ucan.Command, resource string, ttl time.Duration) *program {
	s.t.Helper()
	k, err := ucan.GenerateKey()
	if err != nil {
		s.t.Fatal(err)
	}
	p := &program{key: k, did: ucan.KeyDID(k)}
	p.chain = s.grant(p.did, cmd, resource, ttl)
	return p
}

// token is the bearer token of a new invocation of cmd on resource by p,
// addressed to executor.
func (p *program) token(t *testing.T, executor string, cmd ucan.Command, resource string) string {
	t.Helper()
	inv, err := ucan.Invoke(p.key, ucan.InvokeOptions{Executor: executor, Command: cmd, Resource: resource, Proof: p.chain})
	if err != nil {
		t.Fatal(err)
	}
	return append(append(ucan.Chain{}, p.chain...), inv).String()
}

// request runs one request through h from addr, with the bearer token tok
// if not empty (or tok as the whole header when it is a local credential's,
// secureRealm.local).
func request(h http.Handler, method, target, body, addr, tok string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	r.RemoteAddr = addr
	switch {
	case strings.HasPrefix(tok, wire.LocalScheme+" "):
		r.Header.Set("Authorization", tok)
	case tok != "":
		r.Header.Set("Authorization", "Bearer "+tok)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// wantError checks an error answer's status and code, and that its
// message contains each of msgs.
func wantError(t *testing.T, w *httptest.ResponseRecorder, status int, code string, msgs ...string) {
	t.Helper()
	var eb wire.ErrorBody
	if err := json.Unmarshal(w.Body.Bytes(), &eb); err != nil {
		t.Fatalf("answer %d %q: %v", w.Code, w.Body, err)
	}
	if w.Code != status || eb.Error.Code != code {
		t.Fatalf("answer %d %+v, want %d %s", w.Code, eb.Error, status, code)
	}
	for _, m := range msgs {
		if !strings.Contains(eb.Error.Message, m) {
			t.Errorf("message %q does not say %q", eb.Error.Message, m)
		}
	}
}

func TestBearerTokens(t *testing.T) {
	s := startSecure(t)
	const place = testRealm + ".place"
	callPath := "/v1/call/" + place
	prog := s.program(ucan.Call, testRealm+".*", time.Hour)
	shortExp := time.Now().Add(time.Second)
	shortLived := s.program(ucan.Call, testRealm+".*", time.Second)

	t.Run("call", func(t *testing.T) {
		tok := prog.token(t, s.did, ucan.Call, place)
		w := request(s.h, "POST", callPath, "hello", remoteAddr, tok)
		if w.Code != 200 || w.Body.String() != "hello" {
			t.Fatalf("call with a token: %d %q", w.Code, w.Body)
		}
		// The same invocation again is a replay.
		wantError(t, request(s.h, "POST", callPath, "hello", remoteAddr, tok), 403, wire.CodeUnauthorized, "replayed")
	})
	t.Run("token from loopback", func(t *testing.T) {
		// A token is checked wherever the request comes from.
		w := request(s.h, "POST", callPath, "hi", loopbackAddr, prog.token(t, s.did, ucan.Call, place))
		if w.Code != 200 || w.Body.String() != "hi" {
			t.Fatalf("call with a token from loopback: %d %q", w.Code, w.Body)
		}
		w = request(s.h, "POST", callPath, "hi", loopbackAddr, prog.token(t, s.did, ucan.Call, testRealm+".other"))
		wantError(t, w, 403, wire.CodeUnauthorized)
	})
	t.Run("another procedure", func(t *testing.T) {
		tok := prog.token(t, s.did, ucan.Call, testRealm+".other")
		wantError(t, request(s.h, "POST", callPath, "x", remoteAddr, tok), 403, wire.CodeUnauthorized, "resource")
		// A name the chain's pattern does not match, asked for by name.
		deep := testRealm + ".deep.place"
		tok = prog.token(t, s.did, ucan.Call, deep)
		wantError(t, request(s.h, "POST", "/v1/call/"+deep, "x", remoteAddr, tok), 403, wire.CodeUnauthorized, "outside")
	})
	t.Run("another command", func(t *testing.T) {
		tok := prog.token(t, s.did, ucan.Publish, place)
		wantError(t, request(s.h, "POST", callPath, "x", remoteAddr, tok), 403, wire.CodeUnauthorized)
	})
	t.Run("another node", func(t *testing.T) {
		other, err := ucan.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		tok := prog.token(t, ucan.KeyDID(other), ucan.Call, place)
		wantError(t, request(s.h, "POST", callPath, "x", remoteAddr, tok), 403, wire.CodeUnauthorized, "meant for another principal")
	})
	t.Run("no token off loopback", func(t *testing.T) {
		for _, r := range []struct{ method, target string }{
			{"POST", callPath}, {"GET", "/v1/node"}, {"GET", "/v1/subscribe?pattern=" + testRealm + ".>"},
			{"POST", "/v1/ucan/revocations"}, {"DELETE", "/v1/advertise/" + place},
		} {
			w := request(s.h, r.method, r.target, "", remoteAddr, "")
			wantError(t, w, 401, wire.CodeUnauthenticated, "Authorization: Bearer", s.did)
			if !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s %s: WWW-Authenticate %q", r.method, r.target, w.Header().Get("WWW-Authenticate"))
			}
		}
		// An unreadable header, wherever it comes from.
		for _, h := range []string{"Bearer !!!", "Basic dXNlcjpwdw=="} {
			r := httptest.NewRequest("POST", callPath, strings.NewReader("x"))
			r.RemoteAddr = loopbackAddr
			r.Header.Set("Authorization", h)
			w := httptest.NewRecorder()
			s.h.ServeHTTP(w, r)
			wantError(t, w, 401, wire.CodeUnauthenticated, "unreadable")
		}
	})
	t.Run("local credential from loopback", func(t *testing.T) {
		// The node itself: it may call io.acme.orders.* ...
		w := request(s.h, "POST", callPath, "me", loopbackAddr, s.local())
		if w.Code != 200 || w.Body.String() != "me" {
			t.Fatalf("call from loopback: %d %q", w.Code, w.Body)
		}
		for _, addr := range []string{"[::1]:5555", "127.1.2.3:80"} {
			if w := request(s.h, "GET", "/v1/node", "", addr, s.local()); w.Code != 200 {
				t.Fatalf("GET /v1/node from %s: %d %s", addr, w.Code, w.Body)
			}
		}
		// ... but not a name two segments down, nor publish there.
		wantError(t, request(s.h, "POST", "/v1/call/"+testRealm+".deep.place", "x", loopbackAddr, s.local()), 403, wire.CodeUnauthorized)
		wantError(t, request(s.h, "POST", "/v1/publish/"+testRealm+".deep.topic", "x", loopbackAddr, s.local()), 403, wire.CodeUnauthorized)
	})
	t.Run("loopback without the credential", func(t *testing.T) {
		// Loopback alone proves nothing: any local program, or a webhook
		// request of a node, comes from there.
		for _, r := range []struct{ method, target string }{
			{"POST", callPath}, {"GET", "/v1/node"}, {"PUT", "/v1/log/level"},
			{"POST", "/v1/ucan/revocations"}, {"POST", "/v1/advertise/" + place},
		} {
			w := request(s.h, r.method, r.target, "", loopbackAddr, "")
			wantError(t, w, 401, wire.CodeUnauthenticated, "local credential", "/run/test/api-credential", "Authorization: Bearer")
			got := w.Header().Values("WWW-Authenticate")
			if len(got) != 2 || !strings.HasPrefix(got[0], "Bearer") || got[1] != `Macula-Local realm="macula", file="/run/test/api-credential"` {
				t.Errorf("%s %s: WWW-Authenticate %q", r.method, r.target, got)
			}
		}
		// A wrong credential; the right one off loopback.
		wantError(t, request(s.h, "GET", "/v1/node", "", loopbackAddr, wire.LocalScheme+" "+strings.ToUpper(s.cred)+"x"), 401, wire.CodeUnauthenticated,
			"not this node's local credential", "read /run/test/api-credential again")
		w := request(s.h, "GET", "/v1/node", "", remoteAddr, s.local())
		wantError(t, w, 401, wire.CodeUnauthenticated, "from loopback only")
		if got := w.Header().Values("WWW-Authenticate"); len(got) != 1 {
			t.Errorf("off loopback: WWW-Authenticate %q names the credential file", got)
		}
	})
	t.Run("admin", func(t *testing.T) {
		// A call-only chain cannot invoke the root command ...
		tok := prog.token(t, s.did, ucan.All, "")
		wantError(t, request(s.h, "GET", "/v1/node", "", remoteAddr, tok), 403, wire.CodeUnauthorized)
		// ... nor pass a call invocation off as one.
		tok = prog.token(t, s.did, ucan.Call, place)
		wantError(t, request(s.h, "GET", "/v1/peers", "", remoteAddr, tok), 403, wire.CodeUnauthorized)
		// The root command on a part of the realm is not the node's admin.
		part := s.program(ucan.All, testRealm+".*", time.Hour)
		tok = part.token(t, s.did, ucan.All, testRealm+".x")
		wantError(t, request(s.h, "GET", "/v1/node", "", remoteAddr, tok), 403, wire.CodeUnauthorized)
		admin := s.program(ucan.All, "", time.Hour)
		w := request(s.h, "GET", "/v1/node", "", remoteAddr, admin.token(t, s.did, ucan.All, ""))
		if w.Code != 200 {
			t.Fatalf("GET /v1/node as admin: %d %s", w.Code, w.Body)
		}
		var info wire.NodeInfo
		if err := json.Unmarshal(w.Body.Bytes(), &info); err != nil {
			t.Fatal(err)
		}
		g := info.Grant
		if info.Security != wire.SecuritySecure || info.Authority != ucan.KeyDID(s.auth) || g == nil || !g.Member ||
			g.Expires == nil || len(g.Capabilities) != 5 || !strings.Contains(strings.Join(g.Capabilities, ","), "/macula/call on "+testRealm+".*") {
			t.Errorf("node info %+v, grant %+v", info, g)
		}
		w = request(s.h, "GET", "/v1/nat", "", remoteAddr, admin.token(t, s.did, ucan.All, ""))
		var ni wire.NATInfo
		if err := json.Unmarshal(w.Body.Bytes(), &ni); w.Code != 200 || err != nil || ni.Security != wire.SecuritySecure {
			t.Errorf("GET /v1/nat: %d %s (%v)", w.Code, w.Body, err)
		}
	})
	t.Run("publish", func(t *testing.T) {
		pub := s.program(ucan.Publish, testRealm+".*", time.Hour)
		topic := testRealm + ".placed"
		w := request(s.h, "POST", "/v1/publish/"+topic, "x", remoteAddr, pub.token(t, s.did, ucan.Publish, topic))
		if w.Code != 202 {
			t.Fatalf("publish with a token: %d %s", w.Code, w.Body)
		}
		w = request(s.h, "POST", "/v1/publish/"+topic, "x", remoteAddr, pub.token(t, s.did, ucan.Publish, testRealm+".other"))
		wantError(t, w, 403, wire.CodeUnauthorized)
		w = request(s.h, "POST", "/v1/publish/"+topic, "x", remoteAddr, prog.token(t, s.did, ucan.Call, topic))
		wantError(t, w, 403, wire.CodeUnauthorized)
	})
	t.Run("subscribe wider than granted", func(t *testing.T) {
		sub := s.program(ucan.Subscribe, testRealm+".*", time.Hour)
		pattern := testRealm + ".>"
		w := request(s.h, "GET", "/v1/subscribe?pattern="+pattern, "", remoteAddr, sub.token(t, s.did, ucan.Subscribe, pattern))
		wantError(t, w, 403, wire.CodeUnauthorized, "resource")
	})
	t.Run("advertise", func(t *testing.T) {
		adv := s.program(ucan.Advertise, testRealm+".hooks.*", time.Hour)
		proc := testRealm + ".other"
		// The webhook URL does not matter: the token is refused first.
		w := request(s.h, "POST", "/v1/advertise/"+proc, `{"url":"http://127.0.0.1:1/x"}`, remoteAddr, adv.token(t, s.did, ucan.Advertise, proc))
		wantError(t, w, 403, wire.CodeUnauthorized)
		w = request(s.h, "DELETE", "/v1/advertise/"+proc, "", remoteAddr, prog.token(t, s.did, ucan.Call, proc))
		wantError(t, w, 403, wire.CodeUnauthorized)
	})
	t.Run("expired chain", func(t *testing.T) {
		// The chain was issued for one second at the start of the test
		// (expiry times are whole seconds).
		time.Sleep(time.Until(shortExp.Truncate(time.Second).Add(time.Second + 50*time.Millisecond)))
		tok := shortLived.token(t, s.did, ucan.Call, place)
		wantError(t, request(s.h, "POST", callPath, "x", remoteAddr, tok), 403, wire.CodeUnauthorized, "expired")
	})
}

func TestSubscribeWithToken(t *testing.T) {
	s := startSecure(t)
	g := startGateway(t, s.n, func(c *Config) { c.HTTP3Addr = "" })
	sub := s.program(ucan.Subscribe, testRealm+".*", time.Hour)
	c := clientFor(t, g, "http")
	c.Token = ucantoken.InvocationTokens(sub.key, s.did, sub.chain, 0)
	ctx := ctxFor(t, 5*time.Second)
	// A pattern within the grant, and a concrete topic.
	ssw, err := c.Subscribe(ctx, testRealm+".*")
	if err != nil {
		t.Fatalf("Subscribe to the granted pattern with a token: %v", err)
	}
	ssw.Close()
	ss, err := c.Subscribe(ctx, testRealm+".placed")
	if err != nil {
		t.Fatalf("Subscribe with a token: %v", err)
	}
	defer ss.Close()
	// Each request gets a new invocation: a second subscription works too.
	ss2, err := c.Subscribe(ctx, testRealm+".shipped")
	if err != nil {
		t.Fatalf("second Subscribe: %v", err)
	}
	ss2.Close()
	// The subscription is live: a message published through the node
	// reaches it.
	if err := s.n.PubSub().Publish(ctx, testRealm+".placed", []byte(`{"id":1}`)); err != nil {
		t.Fatal(err)
	}
	if ev, err := ss.Next(); err != nil || ev.Topic != testRealm+".placed" {
		t.Fatalf("Next = %+v, %v", ev, err)
	}
	if _, err := c.Subscribe(ctx, testRealm+".>"); !errors.Is(err, wire.ErrUnauthorized) {
		t.Fatalf("Subscribe wider than granted = %v, want wire.ErrUnauthorized", err)
	}
	// The token's grant does not cover calls.
	if _, err := c.Call(ctx, testRealm+".place", []byte("x"), wire.CallOptions{}); !errors.Is(err, wire.ErrUnauthorized) {
		t.Fatalf("Call with a subscribe token = %v, want wire.ErrUnauthorized", err)
	}
	c.Token = func(context.Context, wire.TokenRequest) (string, error) { return "not a chain", nil }
	if _, err := c.Node(ctx); !errors.Is(err, wire.ErrUnauthenticated) {
		t.Fatalf("Node with a bad token = %v, want wire.ErrUnauthenticated", err)
	}
	c.Token = func(context.Context, wire.TokenRequest) (string, error) { return "", errors.New("no key") }
	if _, err := c.Node(ctx); err == nil || !strings.Contains(err.Error(), "no key") {
		t.Fatalf("Node with a failing token func = %v", err)
	}
}

func TestRevocation(t *testing.T) {
	s := startSecure(t)
	const place = testRealm + ".place"
	prog := s.program(ucan.Call, testRealm+".*", time.Hour)
	if w := request(s.h, "POST", "/v1/call/"+place, "x", remoteAddr, prog.token(t, s.did, ucan.Call, place)); w.Code != 200 {
		t.Fatalf("call before the revocation: %d %s", w.Code, w.Body)
	}
	rec, err := ucan.Revoke(s.auth, prog.chain.Leaf())
	if err != nil {
		t.Fatal(err)
	}
	// The loopback API acts as the node; the record is the authority's.
	w := request(s.h, "POST", "/v1/ucan/revocations", base64.RawURLEncoding.EncodeToString(rec)+"\n", loopbackAddr, s.local())
	if w.Code != 204 || w.Body.Len() != 0 {
		t.Fatalf("POST /v1/ucan/revocations: %d %q", w.Code, w.Body)
	}
	w = request(s.h, "POST", "/v1/call/"+place, "x", remoteAddr, prog.token(t, s.did, ucan.Call, place))
	wantError(t, w, 403, wire.CodeUnauthorized, "revoked")

	// A record signed by someone else than the authority, garbage, nothing.
	forged, err := ucan.Revoke(prog.key, prog.chain.Leaf())
	if err != nil {
		t.Fatal(err)
	}
	wantError(t, request(s.h, "POST", "/v1/ucan/revocations", string(forged), loopbackAddr, s.local()), 400, wire.CodeBadRequest, "authority")
	wantError(t, request(s.h, "POST", "/v1/ucan/revocations", "garbage", loopbackAddr, s.local()), 400, wire.CodeBadRequest)
	wantError(t, request(s.h, "POST", "/v1/ucan/revocations", "", loopbackAddr, s.local()), 400, wire.CodeBadRequest)
	// Revoking is the root command's.
	w = request(s.h, "POST", "/v1/ucan/revocations", string(rec), remoteAddr, prog.token(t, s.did, ucan.All, ""))
	wantError(t, w, 403, wire.CodeUnauthorized)

	// Through the client: the raw record (again: harmless), and the list.
	g := startGateway(t, s.n, func(c *Config) { c.HTTP3Addr = "" })
	c := clientFor(t, g, "http")
	admin := s.program(ucan.All, "", time.Hour)
	c.Token = ucantoken.InvocationTokens(admin.key, s.did, admin.chain, time.Minute)
	prog2 := s.program(ucan.Call, testRealm+".*", time.Hour)
	rec2, err := ucan.Revoke(s.auth, prog2.chain.Leaf())
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t, 5*time.Second)
	if err := c.Revoke(ctx, rec2); err != nil {
		t.Fatalf("Client.Revoke: %v", err)
	}
	if err := c.Revoke(ctx, rec); err != nil {
		t.Fatalf("Client.Revoke again: %v", err)
	}
	recs, err := c.Revocations(ctx)
	if err != nil || len(recs) != 2 {
		t.Fatalf("Revocations = %d records, %v; want 2", len(recs), err)
	}
	// The admin chain covers calls too: the client invokes /macula/call.
	if out, err := c.Call(ctx, place, []byte("x"), wire.CallOptions{}); err != nil || string(out) != "x" {
		t.Fatalf("Call with the admin chain = %q, %v", out, err)
	}
}

func TestOpenRealmIgnoresTokens(t *testing.T) {
	n := startNode(t, testRealm, "open")
	h := newAPI(n, nil, testnet.QuietLogger(), wire.APIAddrs{})
	w := request(h, "GET", "/v1/node", "", remoteAddr, "not a token at all")
	var info wire.NodeInfo
	if err := json.Unmarshal(w.Body.Bytes(), &info); w.Code != 200 || err != nil {
		t.Fatalf("GET /v1/node in an open realm: %d %s", w.Code, w.Body)
	}
	if info.Security != wire.SecurityOpen || info.Authority != "" || info.Grant != nil {
		t.Errorf("open node info: %+v", info)
	}
	w = request(h, "GET", "/v1/nat", "", remoteAddr, "")
	var ni wire.NATInfo
	if err := json.Unmarshal(w.Body.Bytes(), &ni); w.Code != 200 || err != nil || ni.Security != wire.SecurityOpen {
		t.Errorf("GET /v1/nat: %d %s", w.Code, w.Body)
	}
	wantError(t, request(h, "POST", "/v1/ucan/revocations", "AAAA", remoteAddr, ""), 409, wire.CodeOpenRealm)
	w = request(h, "GET", "/v1/ucan/revocations", "", remoteAddr, "")
	if w.Code != 200 || strings.TrimSpace(w.Body.String()) != "[]" {
		t.Errorf("GET /v1/ucan/revocations: %d %s", w.Code, w.Body)
	}
	body, _ := io.ReadAll(request(h, "GET", "/v1/node", "", remoteAddr, "").Body)
	if !strings.Contains(string(body), `"security":"open"`) {
		t.Errorf("node info does not say the realm is open: %s", body)
	}

	// The start-up warning: off loopback only.
	for _, c := range []struct {
		addr, addr3 string
		warn        bool
	}{
		{"127.0.0.1:7401", "", false},
		{"127.0.0.1:7401", "[::1]:7401", false},
		{"localhost:7401", "", false},
		{"0.0.0.0:7401", "", true},
		{"127.0.0.1:7401", "192.0.2.1:7401", true},
	} {
		var buf bytes.Buffer
		g := &Gateway{log: slog.New(slog.NewTextHandler(&buf, nil)), addr: c.addr, addr3: c.addr3}
		g.logSecurity(n)
		if got := strings.Contains(buf.String(), "level=WARN") && strings.Contains(buf.String(), "OPEN REALM"); got != c.warn {
			t.Errorf("%s %s: warned %v, want %v: %q", c.addr, c.addr3, got, c.warn, buf.String())
		}
	}
}

// A subscription made with a token ends when the token's grant is revoked:
// the next message is not delivered, and the client learns why.
func TestSubscriptionEndsOnRevocation(t *testing.T) {
	s := startSecure(t)
	g := startGateway(t, s.n, func(c *Config) { c.HTTP3Addr = "" })
	sub := s.program(ucan.Subscribe, testRealm+".*", time.Hour)
	c := clientFor(t, g, "http")
	c.Token = ucantoken.InvocationTokens(sub.key, s.did, sub.chain, 0)
	ctx := ctxFor(t, 5*time.Second)
	ss, err := c.Subscribe(ctx, testRealm+".*")
	if err != nil {
		t.Fatal(err)
	}
	defer ss.Close()
	if err := s.n.PubSub().Publish(ctx, testRealm+".placed", []byte(`{"id":1}`)); err != nil {
		t.Fatal(err)
	}
	if ev, err := ss.Next(); err != nil || ev.Topic != testRealm+".placed" {
		t.Fatalf("Next = %+v, %v", ev, err)
	}
	rec, err := ucan.Revoke(s.auth, sub.chain.Leaf())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.n.Revoke(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if err := s.n.PubSub().Publish(ctx, testRealm+".placed", []byte(`{"id":2}`)); err != nil {
		t.Fatal(err)
	}
	ev, err := ss.Next()
	if !errors.Is(err, wire.ErrUnauthorized) || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("Next after the revocation = %+v, %v; want the stream ended, unauthorized (revoked)", ev, err)
	}
}

// Tokens over HTTP/3: the same handler, the same checks.
func TestTokensOverHTTP3(t *testing.T) {
	s := startSecure(t)
	g := startGateway(t, s.n, nil)
	prog := s.program(ucan.Call, testRealm+".*", time.Hour)
	c := clientFor(t, g, "http3")
	c.Token = ucantoken.InvocationTokens(prog.key, s.did, prog.chain, 0)
	ctx := ctxFor(t, 10*time.Second)
	if _, err := c.Call(ctx, testRealm+".place", []byte("x"), wire.CallOptions{}); err != nil {
		t.Fatalf("Call over HTTP/3 with a token: %v", err)
	}
	if _, err := c.Call(ctx, testRealm+".deep.place", []byte("x"), wire.CallOptions{}); !errors.Is(err, wire.ErrUnauthorized) {
		t.Fatalf("Call outside the grant over HTTP/3: %v, want wire.ErrUnauthorized", err)
	}
}
