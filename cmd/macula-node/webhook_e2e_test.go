package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/ucan"
)

// TestWebhookBorrowsNoAuthorityEndToEnd: a program allowed only to
// advertise and call io.acme.orders.p.* tries to make a node act with its
// own rights through a webhook URL aimed at a Macula API on the node's
// host: publishing on io.acme.orders.secret as the other node h, as the
// node g itself, and calling io.acme.orders.other (which it may not call)
// as g. Each advertisement must be refused, nothing published on the
// secret topic, and the other procedure never called.
func TestWebhookBorrowsNoAuthorityEndToEnd(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	authKey, authority := secureRealmInit(t, base)
	const (
		secret = rpcRealm + ".secret"
		other  = rpcRealm + ".other"
	)
	all := rpcRealm + ".>"
	gs := prepareSecureNode(t, base, authKey, "g", "advertise "+all, "call "+all, "publish "+all)
	hs := prepareSecureNode(t, base, authKey, "h", "advertise "+all, "call "+all, "publish "+all, "subscribe "+all)
	g := gs.start(t, authority)
	h := hs.start(t, authority, g.st.Addrs[0])
	testnet.Eventually(t, 20*time.Second, func() error {
		var peers []struct {
			PeerID string `json:"peer_id"`
		}
		if err := cliJSON(t, g.st.API, &peers, "peers"); err != nil {
			return err
		}
		if len(peers) != 1 || peers[0].PeerID != h.st.PeerID {
			return fmt.Errorf("g's peers: %v", peers)
		}
		return nil
	})
	hook := startOrderHook(t, "other")
	startAdvertiser(t, h, other, hook.url("/get_order"), "30s")
	sub := startSubscriber(t, h, secret, "--json")
	prog := newAttacker(t, authKey, map[ucan.Command]string{ucan.Advertise: rpcRealm + ".p.*", ucan.Call: rpcRealm + ".p.*"})

	for i, tc := range []struct {
		name   string
		target *runNode // whose API the webhook aims at
		path   string
	}{
		{"publish as the other node h", h, "/v1/publish/" + secret},
		{"publish as the node g itself", g, "/v1/publish/" + secret},
		{"call a procedure as the node g", g, "/v1/call/" + other},
	} {
		proc := fmt.Sprintf("%s.p.q%d", rpcRealm, i)
		url := "http://" + tc.target.st.API + tc.path
		code, body := httpDo(t, "POST", "http://"+g.st.API+"/v1/advertise/"+proc,
			prog.bearer(t, gs.did, ucan.Advertise, proc, time.Minute), fmt.Sprintf(`{"url":%q,"lease":"30s"}`, url))
		t.Logf("%s: advertise %s -> %s: HTTP %d %s", tc.name, proc, url, code, strings.TrimSpace(body))
		if code != http.StatusForbidden {
			t.Errorf("%s: the advertisement got HTTP %d %s, want 403", tc.name, code, body)
		}
		if code/100 == 2 {
			// Registered: the attack goes on, through g's call.
			code, body = httpDo(t, "POST", "http://"+g.st.API+"/v1/call/"+proc+"?timeout=10s",
				prog.bearer(t, gs.did, ucan.Call, proc, time.Minute), `{"id":77}`)
			t.Logf("%s: call %s: HTTP %d %s", tc.name, proc, code, strings.TrimSpace(body))
		}
		// A marker published after the attempt by the same node arrives
		// after anything the attempt published (order per publisher).
		marker := fmt.Sprintf(`{"marker":%d}`, i)
		if r := runCmd(t, 20*time.Second, nil, "--api", tc.target.st.API, "publish", secret, "--data", marker); r.code != 0 {
			t.Fatalf("marker: exit %d: %s", r.code, r.stderr)
		}
		testnet.Eventually(t, 20*time.Second, func() error {
			for _, ev := range sub.events(t) {
				if string(ev.Payload) == marker {
					return nil
				}
			}
			return fmt.Errorf("not yet")
		})
	}
	for _, ev := range sub.events(t) {
		if !strings.Contains(string(ev.Payload), "marker") {
			t.Errorf("published on %s by %s through a webhook: %s", secret, ev.Publisher, ev.Payload)
		}
	}
	if n := hook.served.Load(); n != 0 {
		t.Errorf("%s was called %d times through a webhook", other, n)
	}
}

// TestWebhookAllowListEndToEnd: an operator lets programs aim webhooks at
// loopback (--webhook-allow 127.0.0.0/8). A program's webhook on loopback
// then serves calls; aimed at another node's API on the host it is
// registered, but that API refuses the node's webhook request, so nothing is
// published; aimed at the node's own API it is refused outright.
func TestWebhookAllowListEndToEnd(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	authKey, authority := secureRealmInit(t, base)
	const secret = rpcRealm + ".secret"
	all := rpcRealm + ".>"
	ws := prepareSecureNode(t, base, authKey, "w", "advertise "+all, "call "+all, "publish "+all)
	hs := prepareSecureNode(t, base, authKey, "h", "publish "+all, "subscribe "+all)
	w := ws.startWith(t, authority, []string{"--webhook-allow", "127.0.0.0/8"})
	h := hs.start(t, authority, w.st.Addrs[0])
	sub := startSubscriber(t, h, secret, "--json")
	hook := startOrderHook(t, "program")
	prog := newAttacker(t, authKey, map[ucan.Command]string{ucan.Advertise: rpcRealm + ".p.*", ucan.Call: rpcRealm + ".p.*"})
	advertise := func(proc, url string) (int, string) {
		return httpDo(t, "POST", "http://"+w.st.API+"/v1/advertise/"+proc,
			prog.bearer(t, ws.did, ucan.Advertise, proc, time.Minute), fmt.Sprintf(`{"url":%q,"lease":"30s"}`, url))
	}
	call := func(proc string) (int, string) {
		return httpDo(t, "POST", "http://"+w.st.API+"/v1/call/"+proc+"?timeout=10s",
			prog.bearer(t, ws.did, ucan.Call, proc, time.Minute), `{"id":5}`)
	}

	if code, body := advertise(rpcRealm+".p.get", hook.url("/get_order")); code != http.StatusCreated {
		t.Fatalf("the program's own webhook: HTTP %d %s", code, body)
	}
	if code, body := call(rpcRealm + ".p.get"); code != http.StatusOK || !strings.Contains(body, `"served_by":"program"`) {
		t.Fatalf("calling it: HTTP %d %s", code, body)
	}

	proc := rpcRealm + ".p.leak"
	if code, body := advertise(proc, "http://"+h.st.API+"/v1/publish/"+secret); code != http.StatusCreated {
		t.Fatalf("an allow-listed URL at h's API: HTTP %d %s", code, body)
	}
	code, body := call(proc)
	t.Logf("call through h's API: HTTP %d %s", code, strings.TrimSpace(body))
	if code/100 == 2 || !strings.Contains(body, "never served by a Macula API") {
		t.Errorf("the call through h's API: HTTP %d %s, want h's refusal", code, body)
	}
	if r := runCmd(t, 20*time.Second, nil, "--api", h.st.API, "publish", secret, "--data", `{"marker":1}`); r.code != 0 {
		t.Fatalf("marker: exit %d: %s", r.code, r.stderr)
	}
	testnet.Eventually(t, 20*time.Second, func() error {
		if evs := sub.events(t); len(evs) == 0 {
			return fmt.Errorf("nothing yet")
		}
		return nil
	})
	if evs := sub.events(t); string(evs[0].Payload) != `{"marker":1}` {
		t.Errorf("published on %s through a webhook: %s by %s", secret, evs[0].Payload, evs[0].Publisher)
	}

	code, body = advertise(rpcRealm+".p.self", "http://"+w.st.API+"/v1/call/"+rpcRealm+".p.get")
	t.Logf("a URL at w's own API: HTTP %d %s", code, strings.TrimSpace(body))
	if code != http.StatusForbidden || !strings.Contains(body, "own API") {
		t.Errorf("a URL at w's own API: HTTP %d %s, want 403", code, body)
	}
}
