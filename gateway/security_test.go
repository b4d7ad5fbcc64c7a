package gateway

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	wire "github.com/macula-io/macula/api"
	"github.com/macula-io/macula/api/ucantoken"
	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/node"
	"github.com/macula-io/macula/ucan"
)

// apiClient is a client of g on HTTP/1.1, closed when the test ends.
func apiClient(t *testing.T, g *Gateway) *wire.Client {
	t.Helper()
	c := wire.NewClient(g.Addr())
	t.Cleanup(func() { c.Close() })
	return c
}

// A secure realm's Gateway keeps its local credential in a file only its
// user reads, for the address it listens on; with it a local program acts
// as the node, without it loopback is refused; a client finds it through
// the 401's challenge, and never sends it to another address; a restart
// makes a new one.
func TestLocalCredential(t *testing.T) {
	s := startSecure(t)
	dir := t.TempDir()
	g := startGateway(t, s.n, func(c *Config) { c.DataDir = dir })
	ctx := ctxFor(t, 30*time.Second)
	path := filepath.Join(dir, wire.CredentialFile)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("credential file mode %v, want 0600", fi.Mode().Perm())
	}
	lc, err := wire.ReadLocalCredential(path)
	if err != nil || lc.API != g.Addr() || lc.HTTP3 != g.HTTP3Addr() || len(lc.Credential) < 20 {
		t.Fatalf("credential file: %+v, %v", lc, err)
	}

	// Loopback alone: 401, naming the file.
	_, err = apiClient(t, g).Node(ctx)
	if !errors.Is(err, wire.ErrUnauthenticated) || !strings.Contains(err.Error(), path) {
		t.Fatalf("loopback without the credential: %v", err)
	}
	// With it: the node's own rights (it may call io.acme.orders.*).
	c := apiClient(t, g)
	c.Credential = lc.Credential
	if _, err := c.Node(ctx); err != nil {
		t.Fatalf("with the credential: %v", err)
	}
	// Found by the client: a call, whose body goes again with it.
	c = apiClient(t, g)
	c.Local = true
	reply, err := c.Call(ctx, testRealm+".place", []byte("mine"), wire.CallOptions{})
	if err != nil || string(reply) != "mine" {
		t.Fatalf("a call finding the credential: %q, %v", reply, err)
	}

	// Over HTTP/3 too, for its own address.
	h3 := wire.NewHTTP3Client(g.HTTP3Addr(), pinned(t, g))
	defer h3.Close()
	h3.Local = true
	if _, err := h3.Node(ctx); err != nil {
		t.Fatalf("over HTTP/3, finding the credential: %v", err)
	}
	if !lc.ForHTTP3(g.HTTP3Addr()) || lc.ForHTTP3("127.0.0.1:1") {
		t.Error("ForHTTP3")
	}

	// A server elsewhere that names this file gets nothing: the file is
	// for another address.
	var got []string
	impostor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Get("Authorization"))
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`%s realm="macula", file=%q`, wire.LocalScheme, path))
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"error":{"code":"unauthenticated","message":"send it"}}`)
	}))
	defer impostor.Close()
	ic := wire.NewClient(impostor.URL)
	ic.Local = true
	defer ic.Close()
	if _, err := ic.Node(ctx); !errors.Is(err, wire.ErrUnauthenticated) {
		t.Errorf("the impostor's answer: %v", err)
	}
	if len(got) != 1 || got[0] != "" {
		t.Errorf("the impostor received %q", got)
	}
	_, port, _ := net.SplitHostPort(g.Addr())
	for addr, want := range map[string]bool{
		g.Addr(): true, "http://" + g.Addr(): true, "https://" + g.Addr(): true,
		"localhost:" + port: false, "127.0.0.2:" + port: false, "10.0.0.1:" + port: false, "127.0.0.1:1": false,
	} {
		if lc.For(addr) != want {
			t.Errorf("For(%s) = %v", addr, !want)
		}
	}
	if !(wire.LocalCredential{API: "0.0.0.0:" + port}).For("localhost:"+port) || !(wire.LocalCredential{API: "[::]:" + port}).For("127.0.0.1:"+port) {
		t.Error("a node on every address is not reached through loopback")
	}

	// Close removes the file; the next start has a new credential, and the
	// old one is refused.
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("credential file after Close: %v", err)
	}
	g2 := startGateway(t, s.n, func(c *Config) { c.DataDir = dir })
	lc2, err := wire.ReadLocalCredential(path)
	if err != nil || lc2.Credential == lc.Credential || lc2.API != g2.Addr() {
		t.Fatalf("after a restart: %+v, %v", lc2, err)
	}
	old := wire.NewClient(g2.Addr())
	defer old.Close()
	old.Credential = lc.Credential
	if _, err := old.Node(ctx); !errors.Is(err, wire.ErrUnauthenticated) || !strings.Contains(err.Error(), "again") {
		t.Fatalf("the old credential: %v", err)
	}
	old.Local = true // finds the new one
	if _, err := old.Node(ctx); err != nil {
		t.Fatalf("the old credential, then the file: %v", err)
	}
}

// An open realm keeps its loopback rule: no credential, no file.
func TestOpenRealmNoCredential(t *testing.T) {
	n := startNode(t, testRealm, "open")
	dir := t.TempDir()
	g := startGateway(t, n, func(c *Config) { c.DataDir = dir })
	if _, err := os.Stat(filepath.Join(dir, wire.CredentialFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("credential file in an open realm: %v", err)
	}
	if _, err := apiClient(t, g).Node(ctxFor(t, 10*time.Second)); err != nil {
		t.Errorf("loopback in an open realm: %v", err)
	}
}

// Who may aim the node's webhooks where, in a secure realm: the node's own
// user (local credential) at its loopback; a program with a token nowhere,
// unless the operator's allow-list admits the place; nobody at the API
// itself.
func TestWebhookTargetsSecure(t *testing.T) {
	s := startSecure(t)
	hook := startWebhook(t)
	ctx := ctxFor(t, 60*time.Second)
	proc := func(i int) string { return fmt.Sprintf("%s.wh%d", testRealm, i) }
	adv := s.program(ucan.Advertise, testRealm+".>", time.Hour)
	bearer := func(g *Gateway) *wire.Client {
		c := apiClient(t, g)
		c.Token = ucantoken.InvocationTokens(adv.key, s.did, adv.chain, time.Minute)
		return c
	}
	local := func(g *Gateway) *wire.Client {
		c := apiClient(t, g)
		c.Credential = g.api.cred
		return c
	}
	wantRefused := func(err error, words ...string) {
		t.Helper()
		wantAPIError(t, err, http.StatusForbidden, wire.CodeUnauthorized)
		for _, w := range words {
			if err != nil && !strings.Contains(err.Error(), w) {
				t.Errorf("%v: no word on %q", err, w)
			}
		}
	}

	g := startGateway(t, s.n, nil)
	if err := local(g).Advertise(ctx, proc(1), hook.url("/echo"), 0); err != nil {
		t.Fatalf("the node's own user, a loopback webhook: %v", err)
	}
	if reply, err := local(g).Call(ctx, proc(1), []byte("served"), wire.CallOptions{}); err != nil || string(reply) != "served" {
		t.Fatalf("calling it: %q, %v", reply, err)
	}
	_, hookPort, _ := net.SplitHostPort(hook.srv.Listener.Addr().String())
	for _, u := range []string{
		hook.url("/echo"),
		"http://localhost:" + hookPort + "/echo",
		"http://[::ffff:127.0.0.1]:" + hookPort + "/echo",
		"http://0.0.0.0:" + hookPort + "/echo",
		"http://[::]:" + hookPort + "/echo",
	} {
		wantRefused(bearer(g).Advertise(ctx, proc(2), u, 0))
	}

	// The operator admits the webhook's port to programs.
	g2 := startGateway(t, s.n, func(c *Config) { c.WebhookAllow = []string{"127.0.0.1:" + hookPort} })
	if err := bearer(g2).Advertise(ctx, proc(3), hook.url("/echo"), 0); err != nil {
		t.Fatalf("a program, an allow-listed webhook: %v", err)
	}
	if reply, err := local(g2).Call(ctx, proc(3), []byte("allowed"), wire.CallOptions{}); err != nil || string(reply) != "allowed" {
		t.Fatalf("calling it: %q, %v", reply, err)
	}
	wantRefused(bearer(g2).Advertise(ctx, proc(4), "http://127.0.0.1:1/x", 0), "loopback")

	// The API itself: never, whoever asks and whatever the list says.
	g3 := startGateway(t, s.n, func(c *Config) { c.WebhookAllow = []string{"127.0.0.0/8", "::1"} })
	_, apiPort, _ := net.SplitHostPort(g3.Addr())
	for _, u := range []string{
		"http://" + g3.Addr() + "/v1/publish/" + testRealm + ".secret",
		"http://localhost:" + apiPort + "/v1/call/" + testRealm + ".place",
	} {
		wantRefused(local(g3).Advertise(ctx, proc(5), u, 0), "own API")
		wantRefused(bearer(g3).Advertise(ctx, proc(5), u, 0), "own API")
	}
}

// A webhook request is never served by a Macula API: aimed at another
// node's API on the host (where, in an open realm, loopback is the node),
// it is refused and acts on nothing. Redirects are not followed.
func TestWebhookRequestsRefused(t *testing.T) {
	a, b := connectedPair(t, "hook-sender", "hook-target")
	ga, gb := startGateway(t, a, nil), startGateway(t, b, nil)
	ca := clientFor(t, ga, "http")
	ctx := ctxFor(t, 60*time.Second)
	secret := testRealm + ".secret"
	proc := testRealm + ".borrow"
	if err := ca.Advertise(ctx, proc, "http://"+gb.Addr()+"/v1/publish/"+secret, 0); err != nil {
		t.Fatalf("a's own user, a loopback URL: %v", err)
	}
	_, err := ca.Call(ctx, proc, []byte(`{"leak":1}`), wire.CallOptions{ContentType: wire.ContentTypeJSON})
	if err == nil || !strings.Contains(err.Error(), "never served by a Macula API") {
		t.Fatalf("the call through b's API: %v", err)
	}
	if st := b.PubSub().Stats(); st.Published != 0 {
		t.Fatalf("b published %d messages for a webhook request", st.Published)
	}

	// A webhook that redirects: the node does not follow.
	hook := startWebhook(t)
	if err := ca.Advertise(ctx, testRealm+".redirected", hook.url("/redirect"), 0); err != nil {
		t.Fatal(err)
	}
	_, err = ca.Call(ctx, testRealm+".redirected", []byte("x"), wire.CallOptions{})
	var ae *wire.APIError
	if !errors.As(err, &ae) || ae.Remote == nil || ae.Remote.Code != "webhook_307" {
		t.Fatalf("a redirecting webhook: %v, want remote error webhook_307", err)
	}
	if last := hook.last(); last.path != "/redirect" {
		t.Fatalf("the redirect was followed to %s", last.path)
	}
}

// A node that cannot record an invocation (its replay cache is full of live
// ones) says so with 503, not as a refusal of the token.
func TestReplayCacheFull(t *testing.T) {
	s := startSecureWith(t, func(c *node.Config) { c.UCAN.ReplayCacheSize = 1 })
	place := testRealm + ".place"
	prog := s.program(ucan.Call, testRealm+".*", time.Hour)
	if w := request(s.h, "POST", "/v1/call/"+place, "x", remoteAddr, prog.token(t, s.did, ucan.Call, place)); w.Code != 200 {
		t.Fatalf("first call: %d %s", w.Code, w.Body)
	}
	w := request(s.h, "POST", "/v1/call/"+place, "x", remoteAddr, prog.token(t, s.did, ucan.Call, place))
	wantError(t, w, http.StatusServiceUnavailable, wire.CodeUnavailable, "replay cache holds 1 live invocations")
}

// Every header a node sets on its webhook requests (an advertisement's, a
// registry process's) makes a Macula API refuse the request, whatever else
// it carries.
func TestWebhookMarkersRefused(t *testing.T) {
	n := startNode(t, testRealm, "marked")
	h := newAPI(n, nil, testnet.QuietLogger(), wire.APIAddrs{})
	for _, hdr := range []string{HeaderProcedure, HeaderCallerDID, headerProcess} {
		r := httptest.NewRequest("POST", "/v1/publish/"+testRealm+".secret", strings.NewReader("x"))
		r.RemoteAddr = loopbackAddr
		r.Header.Set(hdr, "anything")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		wantError(t, w, http.StatusForbidden, wire.CodeUnauthorized, "never served by a Macula API")
	}
	if st := n.PubSub().Stats(); st.Published != 0 {
		t.Fatalf("published %d", st.Published)
	}
}

// Registry processes served by webhooks follow the same rules as
// advertisements: from off loopback (an open realm's API there), no loopback
// webhook without the allow-list.
func TestProcessWebhookTargets(t *testing.T) {
	n := startNode(t, testRealm, "procs")
	a := newAPI(n, nil, testnet.QuietLogger(), wire.APIAddrs{})
	a.reg = startRegistry(t, n)
	t.Cleanup(a.close)
	body := `{"webhook":"http://127.0.0.1:9/inbox","lease":"5s"}`
	wantError(t, request(a, "POST", "/v1/processes", body, remoteAddr, ""), http.StatusForbidden, wire.CodeUnauthorized, "loopback")
	if w := request(a, "POST", "/v1/processes", body, loopbackAddr, ""); w.Code != http.StatusCreated {
		t.Fatalf("from loopback in an open realm: %d %s", w.Code, w.Body)
	}
}
