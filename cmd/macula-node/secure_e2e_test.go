package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/macula-io/macula/api"
	"github.com/macula-io/macula/api/ucantoken"
	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/ucan"
)

// secureNode is a data directory prepared for a node of a secure realm: its
// key exists and the authority granted it what grants lists.
type secureNode struct {
	name, dir, did string
	files          map[string]string // grant name -> chain file
}

// prepareSecureNode makes the node's key with 'macula-node key' and has the
// authority issue, with 'macula-node ucan issue', its membership (with its
// name) and one chain per grant ("call io.acme.orders.*").
func prepareSecureNode(t *testing.T, base, authKey, name string, grants ...string) *secureNode {
	t.Helper()
	n := &secureNode{name: name, dir: filepath.Join(base, name), files: map[string]string{}}
	r := runCmd(t, 20*time.Second, nil, "key", "--data-dir", n.dir, "--json")
	if r.code != 0 {
		t.Fatalf("key: exit %d: %s", r.code, r.stderr)
	}
	var k struct {
		DID string `json:"did"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &k); err != nil || !strings.HasPrefix(k.DID, "did:key:z") {
		t.Fatalf("key --json: %q (%v)", r.stdout, err)
	}
	n.did = k.DID
	issue := func(file string, args ...string) {
		args = append([]string{"ucan", "issue", "--as", authKey, "--realm", rpcRealm, "--to", n.did, "--expires", "1h",
			"--out", filepath.Join(n.dir, file)}, args...)
		if r := runCmd(t, 20*time.Second, nil, args...); r.code != 0 {
			t.Fatalf("%s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
		}
		n.files[file] = filepath.Join(n.dir, file)
	}
	issue("member", "--can", "member", "--name", name)
	for _, g := range grants {
		can, with, _ := strings.Cut(g, " ")
		issue(can, "--can", can, "--with", with)
	}
	return n
}

// start runs the node with the authority and all its chains.
func (n *secureNode) start(t *testing.T, authority string, bootstrap ...string) *runNode {
	t.Helper()
	return n.startWith(t, authority, nil, bootstrap...)
}

// startWith is start with more flags.
func (n *secureNode) startWith(t *testing.T, authority string, extra []string, bootstrap ...string) *runNode {
	t.Helper()
	args := []string{"run", "--realm", rpcRealm, "--name", n.name, "--data-dir", n.dir, "--authority", authority,
		"--listen", "/ip4/127.0.0.1/udp/0/quic-v1", "--api", "127.0.0.1:0", "--http3", "off"}
	for _, f := range n.files {
		args = append(args, "--ucan", f)
	}
	for _, b := range bootstrap {
		args = append(args, "--bootstrap", b)
	}
	args = append(args, extra...)
	rn := &runNode{proc: startProc(t, n.name, nil, args...), dir: n.dir}
	rn.waitReady(t)
	return rn
}

// TestSecureRealmEndToEnd runs real macula-node processes in a secure realm:
// a provider with the rights to advertise and publish; a client with call
// and subscribe rights; a member without capabilities, refused for call,
// publish, subscribe and advertise (exit 7, HTTP 403); a node of the same
// realm name without a membership, refused at the door. Then the authority
// revokes the client's call grant with 'ucan revoke --send' on the provider's
// node, and the client is refused again within the bound.
func TestSecureRealmEndToEnd(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	authKey, authority := secureRealmInit(t, base)

	pn := prepareSecureNode(t, base, authKey, "provider", "advertise io.acme.orders.*", "publish io.acme.orders.>")
	cn := prepareSecureNode(t, base, authKey, "client", "call io.acme.orders.*", "subscribe io.acme.orders.*")
	mn := prepareSecureNode(t, base, authKey, "member")

	prov := pn.start(t, authority)
	client := cn.start(t, authority, prov.st.Addrs[0])
	member := mn.start(t, authority, prov.st.Addrs[0])
	for _, n := range []*runNode{prov, client, member} {
		if n.st.Security != "secure" || n.st.Authority != authority {
			t.Fatalf("%s: node.json says security %q authority %q", n.name, n.st.Security, n.st.Authority)
		}
	}
	// An open node of the same realm name is refused by the members.
	intruder := startRunNode(t, rpcRealm, "intruder", prov.st.Addrs[0])
	intruder.waitReady(t)

	// Waiting for the members to meet.
	testnet.Eventually(t, 20*time.Second, func() error {
		var peers []api.Peer
		if err := cliJSON(t, prov.st.API, &peers, "peers"); err != nil {
			return err
		}
		if len(peers) != 2 {
			return fmt.Errorf("provider has %d peers: %v", len(peers), peerIDs(peers))
		}
		for _, p := range peers {
			if p.PeerID == intruder.st.PeerID {
				t.Fatal("the provider admitted the intruder")
			}
			if p.Alias == "" {
				return fmt.Errorf("%s has no alias", p.Name)
			}
		}
		return nil
	})

	hook := startOrderHook(t, "provider")
	startAdvertiser(t, prov, procGet, hook.url("/get_order"), "10s")
	sub := startSubscriber(t, client, "io.acme.orders.*", "--json")

	// The client calls and receives.
	// Waiting for the client's call.
	testnet.Eventually(t, 20*time.Second, func() error {
		r := runCmd(t, 20*time.Second, nil, "--api", client.st.API, "call", procGet, "--data", `{"id":1}`, "--timeout", "5s")
		if r.code != 0 {
			return fmt.Errorf("exit %d: %s", r.code, r.stderr)
		}
		return nil
	})
	if g, _ := hook.grant.Load().(string); !strings.Contains(g, "/macula/call on io.acme.orders.*") {
		t.Errorf("the webhook saw the caller's grant %q", g)
	}
	// Waiting for a message to reach the client.
	testnet.Eventually(t, 20*time.Second, func() error {
		if r := runCmd(t, 20*time.Second, nil, "--api", prov.st.API, "publish", "io.acme.orders.placed", "--data", `{"n":1}`); r.code != 0 {
			t.Fatalf("provider's publish: exit %d: %s", r.code, r.stderr)
		}
		if len(sub.events(t)) == 0 {
			return fmt.Errorf("nothing yet")
		}
		return nil
	})

	// The member without capabilities is refused each of the four, by exit
	// code and by HTTP status.
	for _, tc := range []struct {
		what string
		args []string
	}{
		{"call", []string{"call", procGet, "--data", `{"id":2}`, "--timeout", "5s"}},
		{"publish", []string{"publish", "io.acme.orders.placed", "--data", `{"n":2}`}},
		{"subscribe", []string{"subscribe", "io.acme.orders.*"}},
		{"advertise", []string{"advertise", rpcRealm + ".member_proc", "--url", hook.url("/get_order"), "--lease", "10s"}},
	} {
		r := runCmd(t, 20*time.Second, nil, append([]string{"--api", member.st.API}, tc.args...)...)
		if r.code != exitUnauthorized {
			t.Errorf("member's %s: exit %d, want %d (unauthorized); stderr %q", tc.what, r.code, exitUnauthorized, r.stderr)
		}
	}
	for _, req := range []struct{ method, path, body string }{
		{"POST", "/v1/call/" + procGet, `{"id":3}`},
		{"POST", "/v1/publish/io.acme.orders.placed", `{}`},
		{"GET", "/v1/subscribe?pattern=io.acme.orders.*", ""},
		{"POST", "/v1/advertise/" + rpcRealm + ".member_proc", `{"url":"` + hook.url("/get_order") + `","lease":"10s"}`},
	} {
		hr, err := http.NewRequest(req.method, "http://"+member.st.API+req.path, strings.NewReader(req.body))
		if err != nil {
			t.Fatal(err)
		}
		hr.Header.Set("Content-Type", "application/json")
		// On loopback, only the node's local credential makes a request
		// the node's: 401 without it, 403 with it (the node may not).
		for _, want := range []int{http.StatusUnauthorized, http.StatusForbidden} {
			if want == http.StatusForbidden {
				lc, err := api.ReadLocalCredential(filepath.Join(member.dir, api.CredentialFile))
				if err != nil {
					t.Fatal(err)
				}
				hr.Header.Set("Authorization", api.LocalScheme+" "+lc.Credential)
				hr.Body = io.NopCloser(strings.NewReader(req.body))
			}
			resp, err := http.DefaultClient.Do(hr)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("member's %s %s: HTTP %d, want %d", req.method, req.path, resp.StatusCode, want)
			}
		}
	}

	// A new grant counts without a restart: the authority grants the member
	// call, the grant goes into its --ucan file, SIGHUP, and peers see it.
	r := runCmd(t, 20*time.Second, nil, "ucan", "issue", "--as", authKey, "--realm", rpcRealm, "--to", mn.did,
		"--can", "call", "--with", "io.acme.orders.*", "--expires", "1h")
	if r.code != 0 {
		t.Fatalf("ucan issue: exit %d: %s", r.code, r.stderr)
	}
	f, err := os.OpenFile(mn.files["member"], os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(r.stdout); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := member.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// Waiting for the member's call after SIGHUP.
	testnet.Eventually(t, 10*time.Second, func() error {
		r := runCmd(t, 20*time.Second, nil, "--api", member.st.API, "call", procGet, "--data", `{"id":6}`, "--timeout", "5s")
		if r.code != 0 {
			return fmt.Errorf("exit %d: %s", r.code, r.stderr)
		}
		return nil
	})

	// The intruder sees nobody and cannot call.
	if r := runCmd(t, 20*time.Second, nil, "--api", intruder.st.API, "call", procGet, "--data", `{"id":4}`, "--timeout", "3s"); r.code == 0 {
		t.Errorf("the intruder's call succeeded: %s", r.stdout)
	}

	// id says the realm is secure and what the node holds; an open node's
	// says OPEN.
	if r := runCmd(t, 20*time.Second, nil, "--api", client.st.API, "id"); r.code != 0 ||
		!strings.Contains(r.stdout, "secure (authority "+authority+")") || !strings.Contains(r.stdout, "/macula/call on io.acme.orders.*") {
		t.Errorf("client's id: exit %d:\n%s", r.code, r.stdout)
	}
	if r := runCmd(t, 20*time.Second, nil, "--api", intruder.st.API, "id"); r.code != 0 || !strings.Contains(r.stdout, "OPEN") {
		t.Errorf("intruder's id: exit %d:\n%s", r.code, r.stdout)
	}

	// A program with a key of its own, granted call by the authority,
	// calls through the client's node with bearer invocations; one without
	// a grant is refused (403), as is a replayed token.
	auth, err := ucan.LoadKey(authKey)
	if err != nil {
		t.Fatal(err)
	}
	progKey, _ := ucan.GenerateKey()
	progChain, err := ucan.Issue(auth, ucan.IssueOptions{Audience: ucan.KeyDID(progKey), Command: ucan.Call,
		Resource: "io.acme.orders.*", Expires: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	prog := apiClient(t, client)
	prog.Token = ucantoken.InvocationTokens(progKey, client.st.DID, progChain, time.Minute)
	if _, err := getOrder(ctx, prog, 7, 5*time.Second); err != nil {
		t.Errorf("the program's call with a token: %v", err)
	}
	stranger := apiClient(t, client)
	otherKey, _ := ucan.GenerateKey()
	stranger.Token = ucantoken.InvocationTokens(otherKey, client.st.DID, nil, time.Minute)
	if _, err := getOrder(ctx, stranger, 8, 5*time.Second); !errors.Is(err, api.ErrUnauthorized) {
		t.Errorf("a program without a grant: %v, want 403", err)
	}

	// Revocation: the authority revokes the client's call grant through the
	// provider's node; the realm passes it on to the client's node.
	start := time.Now()
	r = runCmd(t, 20*time.Second, nil, "--api", prov.st.API, "ucan", "revoke", "--as", authKey, "@"+cn.files["call"], "--send")
	if r.code != 0 {
		t.Fatalf("ucan revoke: exit %d: %s", r.code, r.stderr)
	}
	var refusedAfter time.Duration
	// Waiting for the client to be refused after the revocation.
	testnet.Eventually(t, 10*time.Second, func() error {
		r := runCmd(t, 20*time.Second, nil, "--api", client.st.API, "call", procGet, "--data", `{"id":5}`, "--timeout", "5s")
		if r.code != exitUnauthorized {
			return fmt.Errorf("exit %d: %s", r.code, r.stderr)
		}
		refusedAfter = time.Since(start)
		return nil
	})
	t.Logf("revocation: the client's call refused %v after 'ucan revoke --send' on another node", refusedAfter)
	// Its other grants still hold, and nodes keep the record on disk.
	if _, err := os.Stat(filepath.Join(client.dir, "revocations")); err != nil {
		t.Errorf("the client's node did not store the revocation: %v", err)
	}
}
