package main

import (
	"crypto/ed25519"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/macula-io/macula/node"
	"github.com/macula-io/macula/ucan"
)

// The attacks of issue 12 (replay here, webhooks in webhook_e2e_test.go),
// against real macula-node processes of a secure realm built with the CLI. A program holds a narrow grant from the
// authority and talks to a node's API with bearer invocations, as any
// program that is not the node does.

// secureRealmInit makes a realm authority with 'macula-node realm init' and
// returns its key file and did:key.
func secureRealmInit(t *testing.T, base string) (keyFile, did string) {
	t.Helper()
	keyFile = filepath.Join(base, "authority.key")
	r := runCmd(t, 20*time.Second, nil, "realm", "init", "--key", keyFile, "--json")
	if r.code != 0 {
		t.Fatalf("realm init: exit %d: %s", r.code, r.stderr)
	}
	var ri struct {
		DID string `json:"did"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &ri); err != nil {
		t.Fatal(err)
	}
	return keyFile, ri.DID
}

// attacker is a program with a key of its own and chains from the
// authority, one per command.
type attacker struct {
	key    ed25519.PrivateKey
	chains map[ucan.Command]ucan.Chain
}

func newAttacker(t *testing.T, authKey string, grants map[ucan.Command]string) *attacker {
	t.Helper()
	auth, err := ucan.LoadKey(authKey)
	if err != nil {
		t.Fatal(err)
	}
	a := &attacker{chains: map[ucan.Command]ucan.Chain{}}
	if a.key, err = ucan.GenerateKey(); err != nil {
		t.Fatal(err)
	}
	for cmd, res := range grants {
		c, err := ucan.Issue(auth, ucan.IssueOptions{Audience: ucan.KeyDID(a.key), Command: cmd, Resource: res, Expires: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		a.chains[cmd] = c
	}
	return a
}

// bearer is the Authorization header of a new invocation of cmd on res,
// addressed to the node did, valid for ttl.
func (a *attacker) bearer(t *testing.T, did string, cmd ucan.Command, res string, ttl time.Duration) string {
	t.Helper()
	chain := a.chains[cmd]
	inv, err := ucan.Invoke(a.key, ucan.InvokeOptions{Executor: did, Command: cmd, Resource: res, Proof: chain, Expires: time.Now().Add(ttl)})
	if err != nil {
		t.Fatal(err)
	}
	return "Bearer " + append(append(ucan.Chain{}, chain...), inv).String()
}

// httpDo sends one request to a node's API and returns the status and body.
func httpDo(t *testing.T, method, url, auth, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestReplayAcrossRestartEndToEnd: a bearer invocation used once stays
// refused after its node restarts, cleanly (SIGTERM) or not (SIGKILL),
// while it has not expired; a new one is accepted at once.
func TestReplayAcrossRestartEndToEnd(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	authKey, authority := secureRealmInit(t, base)
	const topic = rpcRealm + ".placed"
	gs := prepareSecureNode(t, base, authKey, "g", "publish "+rpcRealm+".>")
	g := gs.start(t, authority)
	prog := newAttacker(t, authKey, map[ucan.Command]string{ucan.Publish: topic})
	publish := func(n *runNode, auth string) (int, string) {
		return httpDo(t, "POST", "http://"+n.st.API+"/v1/publish/"+topic, auth, `{"n":1}`)
	}

	for _, stop := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		tok := prog.bearer(t, gs.did, ucan.Publish, topic, 200*time.Second)
		if code, body := publish(g, tok); code != http.StatusAccepted {
			t.Fatalf("first use: HTTP %d %s, want 202", code, body)
		}
		if code, body := publish(g, tok); code != http.StatusForbidden || !strings.Contains(body, "replayed") {
			t.Fatalf("second use, no restart: HTTP %d %s, want 403 replayed", code, body)
		}
		g.stop(t, stop, 15*time.Second)
		g = gs.start(t, authority)
		code, body := publish(g, tok)
		t.Logf("after %v and a restart, the used invocation: HTTP %d %s", stop, code, strings.TrimSpace(body))
		if code != http.StatusForbidden || !strings.Contains(body, "replayed") {
			t.Errorf("after %v and a restart, the used invocation: HTTP %d %s, want 403 replayed", stop, code, body)
		}
		if code, body := publish(g, prog.bearer(t, gs.did, ucan.Publish, topic, time.Minute)); code != http.StatusAccepted {
			t.Errorf("after %v and a restart, a new invocation: HTTP %d %s, want 202", stop, code, body)
		}
	}

	// A damaged record does not stop the node: it starts, and refuses the
	// invocations issued before it started (it cannot tell which were used)
	// for a while.
	tok := prog.bearer(t, gs.did, ucan.Publish, topic, 200*time.Second)
	if code, body := publish(g, tok); code != http.StatusAccepted {
		t.Fatalf("first use: HTTP %d %s, want 202", code, body)
	}
	g.stop(t, syscall.SIGKILL, 15*time.Second)
	path := filepath.Join(gs.dir, node.ReplayFile)
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 100 {
		t.Fatalf("replay file: %d bytes, %v", len(b), err)
	}
	b[len(b)-20] ^= 0xff // inside the last record
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	g = gs.start(t, authority)
	code, body := publish(g, tok)
	t.Logf("after a restart with a damaged record, the used invocation: HTTP %d %s", code, strings.TrimSpace(body))
	if code != http.StatusForbidden || !strings.Contains(body, "cannot tell whether") {
		t.Errorf("after a restart with a damaged record, the used invocation: HTTP %d %s, want 403", code, body)
	}
	if !strings.Contains(g.stderr.String(), "record of used invocations may be incomplete") {
		t.Errorf("no warning about the damaged record in the log:\n%s", g.stderr.String())
	}
}
