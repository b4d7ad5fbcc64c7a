package gateway

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	wire "github.com/macula-io/macula/api"
	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/node"
	"github.com/macula-io/macula/registry"
)

// startRegistry runs a registry on n and closes it when the test ends
// (after the gateway: cleanups run last-in first-out).
func startRegistry(t *testing.T, n *node.Node) *registry.Registry {
	t.Helper()
	r, err := registry.New(n.Host(), nil, registry.Config{Realm: n.Realm(), Logger: testnet.QuietLogger(), AntiEntropy: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func registryGateway(t *testing.T, mod func(*Config)) (*node.Node, *registry.Registry, *testClient) {
	t.Helper()
	n, r, g := registryGatewayOnly(t, mod)
	return n, r, clientFor(t, g, "http")
}

func registryGatewayOnly(t *testing.T, mod func(*Config)) (*node.Node, *registry.Registry, *Gateway) {
	t.Helper()
	n := startNode(t, testRealm, "a")
	r := startRegistry(t, n)
	g := startGateway(t, n, func(c *Config) {
		c.Registry = r
		if mod != nil {
			mod(c)
		}
	})
	return n, r, g
}

func TestRegistryNotEnabled(t *testing.T) {
	n := startNode(t, testRealm, "a")
	c := clientFor(t, startGateway(t, n, nil), "http")
	ctx := ctxFor(t, 10*time.Second)
	_, err := c.Lookup(ctx, "user/1", "")
	wantAPIError(t, err, http.StatusNotFound, wire.CodeNotEnabled)
	_, err = c.OpenProcess(ctx)
	wantAPIError(t, err, http.StatusNotFound, wire.CodeNotEnabled)
	_, err = c.Watch(ctx, "", "")
	wantAPIError(t, err, http.StatusNotFound, wire.CodeNotEnabled)
}

func TestRegistryAPI(t *testing.T) {
	for _, proto := range []string{"http", "http3"} {
		t.Run(proto, func(t *testing.T) { testRegistryAPI(t, proto) })
	}
}

func testRegistryAPI(t *testing.T, proto string) {
	n := startNode(t, testRealm, "a")
	r := startRegistry(t, n)
	g := startGateway(t, n, func(c *Config) { c.Registry = r })
	c := clientFor(t, g, proto)
	ctx := ctxFor(t, 30*time.Second)

	w, err := c.Watch(ctx, "user/", "")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ps, err := c.OpenProcess(ctx)
	if err != nil {
		t.Fatal(err)
	}
	info := ps.Info()
	if info.Kind != "stream" || !strings.HasPrefix(info.Addr, n.ID().String()+"/") {
		t.Fatalf("process %+v", info)
	}
	e, err := c.Register(ctx, info.ID, "user/1", json.RawMessage(`{"name": "Alice"}`), "")
	if err != nil {
		t.Fatal(err)
	}
	if e.Addr != info.Addr || string(e.Meta) != `{"name":"Alice"}` || e.Node != n.ID().String() {
		t.Fatalf("entry %+v", e)
	}
	got, err := c.Lookup(ctx, "user/1", "")
	if err != nil || got.Addr != info.Addr {
		t.Fatalf("Lookup = %+v, %v", got, err)
	}
	b, err := w.Next()
	if err != nil || len(b.Events) != 1 || b.Events[0].Kind != "registered" || string(b.Events[0].Meta) != `{"name":"Alice"}` {
		t.Fatalf("watch: %+v, %v", b, err)
	}
	// Errors: a name taken, bad keys, an unknown cluster, no process.
	other, err := c.OpenProcess(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Register(ctx, other.Info().ID, "user/1", nil, "")
	wantAPIError(t, err, http.StatusConflict, wire.CodeTaken)
	if _, err = c.Register(ctx, info.ID, "user//1", nil, ""); err == nil || !strings.Contains(err.Error(), "empty segment") {
		t.Fatalf("a key with an empty segment: %v", err)
	}
	_, err = c.Register(ctx, info.ID, "user/a b", nil, "")
	wantAPIError(t, err, http.StatusBadRequest, wire.CodeInvalidKey)
	_, err = c.Register(ctx, info.ID, "user/2", nil, "nope")
	wantAPIError(t, err, http.StatusNotFound, wire.CodeNotConnected)
	_, err = c.Register(ctx, 12345, "user/2", nil, "")
	wantAPIError(t, err, http.StatusNotFound, wire.CodeNoProcess)
	_, err = c.Lookup(ctx, "user/nobody", "")
	wantAPIError(t, err, http.StatusNotFound, wire.CodeNotFound)
	_, err = c.Register(ctx, info.ID, "user/big", json.RawMessage(`"`+strings.Repeat("x", registry.DefaultMaxMetaSize)+`"`), "")
	wantAPIError(t, err, http.StatusRequestEntityTooLarge, wire.CodeTooLarge)

	// Groups, prefix queries, dispatch and send.
	if err := c.Join(ctx, info.ID, "chat/room1", json.RawMessage(`{"role":"a"}`), ""); err != nil {
		t.Fatal(err)
	}
	if err := c.Join(ctx, other.Info().ID, "chat/room2", nil, ""); err != nil {
		t.Fatal(err)
	}
	ms, err := c.Members(ctx, "chat/", "", 0)
	if err != nil || len(ms) != 2 || ms[0].Key != "chat/room1" || string(ms[0].Meta) != `{"role":"a"}` {
		t.Fatalf("members %+v, %v", ms, err)
	}
	if ms, _ := c.Members(ctx, "chat/", "", 1); len(ms) != 1 {
		t.Fatalf("limit: %+v", ms)
	}
	names, err := c.Names(ctx, "", "")
	if err != nil || len(names) != 1 || names[0].Key != "user/1" {
		t.Fatalf("names %+v, %v", names, err)
	}
	sent, err := c.Dispatch(ctx, "chat/", []byte(`{"hello":1}`), wire.ContentTypeJSON, "")
	if err != nil || sent != 2 {
		t.Fatalf("dispatch = %d, %v", sent, err)
	}
	for _, p := range []*wire.ProcessStream{ps, other} {
		m, err := p.Next()
		if err != nil || m.Kind != "data" || string(m.Payload) != `{"hello":1}` || m.Key != "chat/" {
			t.Fatalf("message %+v, %v", m, err)
		}
	}
	if err := c.SendTo(ctx, other.Info().Addr, []byte{0xff, 0}, ""); err != nil {
		t.Fatal(err)
	}
	m, err := other.Next()
	if err != nil || m.PayloadEncoding != wire.PayloadBase64 {
		t.Fatalf("binary message %+v, %v", m, err)
	}
	if raw, _ := m.Bytes(); string(raw) != "\xff\x00" {
		t.Fatalf("payload %q", raw)
	}
	err = c.SendTo(ctx, "nonsense", nil, "")
	wantAPIError(t, err, http.StatusBadRequest, wire.CodeBadRequest)
	_, err = c.Dispatch(ctx, "chat/", []byte("{not json"), wire.ContentTypeJSON, "")
	wantAPIError(t, err, http.StatusBadRequest, wire.CodeBadRequest)

	// Leaving and unregistering.
	if err := c.Leave(ctx, info.ID, "chat/room1", ""); err != nil {
		t.Fatal(err)
	}
	err = c.Leave(ctx, info.ID, "chat/room1", "")
	wantAPIError(t, err, http.StatusNotFound, wire.CodeNotFound)
	if err := c.Unregister(ctx, info.ID, "user/1", ""); err != nil {
		t.Fatal(err)
	}
	if b, err := w.Next(); err != nil || b.Events[0].Kind != "unregistered" || b.Events[0].Reason != "unregistered" {
		t.Fatalf("watch: %+v, %v", b, err)
	}
	// The stream's end is the process's: its entries go.
	if _, err := c.Register(ctx, other.Info().ID, "user/2", nil, ""); err != nil {
		t.Fatal(err)
	}
	w.Next()
	other.Close()
	b, err = w.Next()
	if err != nil || b.Events[0].Key != "user/2" || b.Events[0].Reason != "process_ended" {
		t.Fatalf("watch after the stream closed: %+v, %v", b, err)
	}
	_, err = c.Lookup(ctx, "user/2", "")
	wantAPIError(t, err, http.StatusNotFound, wire.CodeNotFound)
	if _, err := other.Next(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Next after Close: %v", err)
	}

	// Clusters, log level, info.
	if err := c.ConnectCluster(ctx, "game"); err != nil {
		t.Fatal(err)
	}
	if err := c.Join(ctx, info.ID, "room/1", nil, "game"); err != nil {
		t.Fatal(err)
	}
	if ms, _ := c.Members(ctx, "room/1", "game", 0); len(ms) != 1 {
		t.Fatalf("game members %+v", ms)
	}
	if err := c.SetRegistryLogLevel(ctx, "verbose"); err != nil {
		t.Fatal(err)
	}
	err = c.SetRegistryLogLevel(ctx, "loud")
	wantAPIError(t, err, http.StatusBadRequest, wire.CodeInvalidLevel)
	ri, err := c.Registry(ctx)
	if err != nil || ri.LogLevel != "verbose" || len(ri.Clusters) != 2 || ri.Clusters[1].Name != "game" || len(ri.Clusters[1].Nodes) != 1 {
		t.Fatalf("info %+v, %v", ri, err)
	}
	if err := c.DisconnectCluster(ctx, "game"); err != nil {
		t.Fatal(err)
	}
	_, err = c.Members(ctx, "room/1", "game", 0)
	wantAPIError(t, err, http.StatusNotFound, wire.CodeNotConnected)
	if r.LogLevel() != registry.LogVerbose {
		t.Fatal("the level did not reach the registry")
	}
}

func TestRegistryWatchKeyNamedWatch(t *testing.T) {
	_, r, c := registryGateway(t, nil)
	ctx := ctxFor(t, 10*time.Second)
	p, err := r.Spawn(ctx, registry.ProcessConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Register("watch", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	// Without ?prefix= the watch route is the lookup of the key "watch".
	e, err := c.Lookup(ctx, "watch", "")
	if err != nil || e.Addr != p.Addr().String() {
		t.Fatalf("Lookup(watch) = %+v, %v", e, err)
	}
}

func TestWebhookProcess(t *testing.T) {
	got := make(chan wire.ProcessMessage, 4)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m wire.ProcessMessage
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			t.Error(err)
		}
		got <- m
	}))
	defer hook.Close()
	_, r, c := registryGateway(t, nil)
	ctx := ctxFor(t, 20*time.Second)
	info, err := c.NewWebhookProcess(ctx, wire.ProcessRequest{Webhook: hook.URL + "/inbox", Lease: "2s"})
	if err != nil {
		t.Fatal(err)
	}
	if info.Kind != "webhook" || info.Expires == nil {
		t.Fatalf("info %+v", info)
	}
	if err := c.Join(ctx, info.ID, "hooks/a", nil, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Dispatch(ctx, "hooks/a", []byte(`"ping"`), wire.ContentTypeJSON, ""); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if string(m.Payload) != `"ping"` || m.Key != "hooks/a" {
			t.Fatalf("webhook got %+v", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the webhook got nothing")
	}
	list, err := c.Processes(ctx)
	if err != nil || len(list) != 1 || list[0].ID != info.ID {
		t.Fatalf("processes %+v, %v", list, err)
	}
	if _, err := c.RenewProcess(ctx, info.ID); err != nil {
		t.Fatal(err)
	}
	// The lease runs out: the process ends and leaves its group.
	testnet.Eventually(t, 10*time.Second, func() error {
		if ms, _ := r.Members("hooks/a"); len(ms) != 0 {
			return errors.New("still a member")
		}
		return nil
	})
	_, err = c.RenewProcess(ctx, info.ID)
	wantAPIError(t, err, http.StatusNotFound, wire.CodeNoProcess)
	// A remote webhook is refused by default (Webhook targets); DELETE
	// ends one at once.
	_, err = c.NewWebhookProcess(ctx, wire.ProcessRequest{Webhook: "http://192.0.2.1/x"})
	wantAPIError(t, err, http.StatusForbidden, wire.CodeUnauthorized)
	info, err = c.NewWebhookProcess(ctx, wire.ProcessRequest{Webhook: hook.URL})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.EndProcess(ctx, info.ID); err != nil {
		t.Fatal(err)
	}
	if list, _ := c.Processes(ctx); len(list) != 0 {
		t.Fatalf("processes after DELETE: %+v", list)
	}
}

func TestRegistryRawRoutes(t *testing.T) {
	// Over HTTP/3: an HTTP/1.1 server lingers half a second on a
	// connection it closes after a body over the limit, longer than the
	// leak check waits.
	_, _, g := registryGatewayOnly(t, nil)
	c := clientFor(t, g, "http3")
	ctx := ctxFor(t, 10*time.Second)
	// A path with an escaped segment, a body that is not JSON, a body too
	// big for a register.
	if err := c.raw(ctx, "GET", "/v1/registry/user%2F1", nil, nil); err == nil {
		t.Fatal("an escaped slash in a key was accepted")
	}
	err := c.raw(ctx, "POST", "/v1/registry/user/1", http.Header{"Content-Type": {"application/json"}}, []byte("{"))
	wantAPIError(t, err, http.StatusBadRequest, wire.CodeBadRequest)
	err = c.raw(ctx, "POST", "/v1/registry/user/1", nil, []byte(`{"process":1,"meta":"`+strings.Repeat("x", MaxBodyBytes)+`"}`))
	wantAPIError(t, err, http.StatusRequestEntityTooLarge, wire.CodeTooLarge)
	err = c.raw(ctx, "DELETE", "/v1/groups/x", nil, nil)
	wantAPIError(t, err, http.StatusBadRequest, wire.CodeBadRequest)
}
