package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/macula-io/macula/api"
	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/ucan"
)

// noJSON are the commands without --json: the daemons, which log.
var noJSON = map[string]bool{"macula-node run": true, "macula-node dev": true, "macula-node help": true}

// leaves calls f for every command of the tree that runs something.
func leaves(c *cobra.Command, f func(*cobra.Command)) {
	if !c.HasSubCommands() {
		f(c)
	}
	for _, s := range c.Commands() {
		leaves(s, f)
	}
}

// TestEveryCommandTakesJSON: the docs say every command but run and dev
// takes --json; so does this test, for commands added later too.
func TestEveryCommandTakesJSON(t *testing.T) {
	leaves(newRootCmd(io.Discard, io.Discard), func(c *cobra.Command) {
		if f := c.Flags().Lookup("json"); f == nil && !noJSON[c.CommandPath()] {
			t.Errorf("%s has no --json", c.CommandPath())
		} else if f != nil && f.Value.Type() != "bool" {
			t.Errorf("%s: --json is a %s flag", c.CommandPath(), f.Value.Type())
		}
	})
}

// TestHelpSaysDefaultsOnce: no flag's help names its default twice, as
// "ucan revoke --index" did ("(default: the last) (default -1)").
func TestHelpSaysDefaultsOnce(t *testing.T) {
	leaves(newRootCmd(io.Discard, io.Discard), func(c *cobra.Command) {
		for line := range strings.Lines(c.Flags().FlagUsages()) {
			if strings.Count(line, "default") > 1 {
				t.Errorf("%s: %q", c.CommandPath(), strings.TrimSpace(line))
			}
		}
	})
	var out strings.Builder
	root := newRootCmd(&out, &out)
	root.SetArgs([]string{"ucan", "revoke", "--help"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "0 for the root (default the last)") || strings.Contains(out.String(), "-1") {
		t.Errorf("ucan revoke --help:\n%s", out.String())
	}
}

// TestLocalJSON: the commands that need no node print JSON that parses,
// with what they printed as text.
func TestLocalJSON(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	decode := func(r result, out any) {
		t.Helper()
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		if err := json.Unmarshal([]byte(r.stdout), out); err != nil {
			t.Fatalf("%v in %q", err, r.stdout)
		}
	}

	var v versionInfo
	decode(runCmd(t, 20*time.Second, nil, "version", "--json"), &v)
	if v.Version == "" || v.Go == "" || v.Agent == "" {
		t.Errorf("version --json: %+v", v)
	}
	if r := runCmd(t, 20*time.Second, nil, "--version"); r.code != 0 || !strings.HasPrefix(r.stdout, "macula-node "+v.Version+" (agent ") {
		t.Errorf("--version: exit %d, %q", r.code, r.stdout)
	}

	key, authority := secureRealmInit(t, dir)
	// realm init --json on a key that exists: its identity on stdout,
	// created false, and the refusal in the exit code.
	r := runCmd(t, 20*time.Second, nil, "realm", "init", "--key", key, "--json")
	var again struct {
		Key, DID, Error string
		Created         bool
	}
	if err := json.Unmarshal([]byte(r.stdout), &again); r.code != exitError || err != nil || again.DID != authority || again.Created || again.Error == "" {
		t.Errorf("realm init --json on an existing key: exit %d, %q (%v)", r.code, r.stdout, err)
	}

	nodeKey, _ := ucan.GenerateKey()
	to := ucan.KeyDID(nodeKey)
	var is ucanIssueResult
	decode(runCmd(t, 20*time.Second, nil, "ucan", "issue", "--as", key, "--realm", "io.acme.orders", "--to", to,
		"--can", "call", "--with", "io.acme.orders.AB12.*", "--expires", "1h", "--json"), &is)
	if is.Issuer != authority || is.Audience != to || is.Command != string(ucan.Call) || is.Resource != "io.acme.orders.AB12.*" || is.Length != 1 || is.Chain == "" {
		t.Errorf("ucan issue --json: %+v", is)
	}
	out := filepath.Join(dir, "call.ucan")
	decode(runCmd(t, 20*time.Second, nil, "ucan", "issue", "--as", key, "--realm", "io.acme.orders", "--to", to,
		"--can", "call", "--expires", "1h", "--out", out, "--json"), &is)
	if b, err := os.ReadFile(out); err != nil || strings.TrimSpace(string(b)) != is.Chain || is.Out != out {
		t.Errorf("ucan issue --out --json: %+v; file %q (%v)", is, b, err)
	}

	var d ucan.Description
	decode(runCmd(t, 20*time.Second, nil, "ucan", "inspect", "@"+out, "--json"), &d)
	if len(d.Tokens) != 1 || d.Tokens[0].Kind != "delegation" || !d.Tokens[0].Root || d.Tokens[0].Audience != to || !d.Tokens[0].SignatureVerified {
		t.Errorf("ucan inspect --json: %+v", d)
	}

	var rv ucanRevokeResult
	decode(runCmd(t, 20*time.Second, nil, "ucan", "revoke", "--as", key, "@"+out, "--json"), &rv)
	if rec, err := base64.RawURLEncoding.DecodeString(rv.Record); err != nil || len(rec) == 0 || rv.Index != 0 || rv.SentTo != "" {
		t.Errorf("ucan revoke --json: %+v (%v)", rv, err)
	}
}

// TestClientJSONEndToEnd runs a node and the client commands whose output
// changed: call and advertise with --json, call's text reply, subscribe's
// text payloads, nat probe.
func TestClientJSONEndToEnd(t *testing.T) {
	t.Parallel()
	n := startRunNode(t, "io.json.test", "n1")
	n.waitReady(t)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/text" {
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "hello") // no newline
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(hook.Close)

	const procJSON, procText = "io.json.test.json", "io.json.test.Text"
	adv := startProc(t, "advertise --json", nil, "--api", n.st.API, "advertise", procJSON, "--url", hook.URL+"/json", "--json")
	var first advertiseEvent
	testnet.Eventually(t, 20*time.Second, func() error {
		if adv.exited() {
			t.Fatalf("advertise exited: %s", adv.stderr.String())
		}
		line, _, ok := strings.Cut(adv.stdout.String(), "\n")
		if !ok {
			return fmt.Errorf("no line yet")
		}
		return json.Unmarshal([]byte(line), &first)
	})
	if first.Event != "advertised" || first.Procedure != procJSON || first.URL != hook.URL+"/json" {
		t.Errorf("advertise --json: first line %+v", first)
	}
	startAdvertiser(t, n, procText, hook.URL+"/text", "10s")

	var res callOutput
	var reply struct{ OK bool }
	if err := cliJSON(t, n.st.API, &res, "call", procJSON); err != nil || json.Unmarshal(res.Reply, &reply) != nil || !reply.OK || res.ReplyEncoding != "" {
		t.Errorf("call --json of a JSON reply: %+v (%v)", res, err)
	}
	if err := cliJSON(t, n.st.API, &res, "call", procText); err != nil || res.ReplyEncoding != api.PayloadBase64 || string(res.Reply) != `"aGVsbG8="` {
		t.Errorf("call --json of a text reply: %+v (%v)", res, err)
	}
	if r := runCmd(t, 20*time.Second, nil, "--api", n.st.API, "call", procText); r.code != 0 || r.stdout != "hello\n" {
		t.Errorf("call of a text reply: exit %d, %q, want \"hello\\n\"", r.code, r.stdout)
	}
	if r := runCmd(t, 20*time.Second, nil, "--api", n.st.API, "call", procText, "--raw"); r.code != 0 || r.stdout != "hello" {
		t.Errorf("call --raw of a text reply: exit %d, %q, want \"hello\"", r.code, r.stdout)
	}

	// advertise --json ends with its withdrawal.
	if code := adv.stop(t, syscall.SIGINT, 20*time.Second); code != 0 {
		t.Fatalf("advertise: exit %d", code)
	}
	lines := strings.Split(strings.TrimSpace(adv.stdout.String()), "\n")
	var last advertiseEvent
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || last.Event != "withdrawn" {
		t.Errorf("advertise --json's last line %q (%v)", lines[len(lines)-1], err)
	}

	// Text payloads, sent as text/plain by a program or with a newline at
	// the end, are text in subscribe's output.
	sub := startProc(t, "subscribe", nil, "--api", n.st.API, "subscribe", "io.json.test.>", "--count", "2")
	testnet.Eventually(t, 20*time.Second, func() error {
		if !strings.Contains(sub.stderr.String(), "subscribed to") {
			return fmt.Errorf("not subscribed yet: %q", sub.stderr.String())
		}
		return nil
	})
	for _, body := range []string{"plain text", "a line\n"} {
		resp, err := http.Post("http://"+n.st.API+"/v1/publish/io.json.test.notes", "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("publish text/plain: HTTP %d", resp.StatusCode)
		}
	}
	if code := sub.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("subscribe: exit %d: %s", code, sub.stderr.String())
	}
	if out := sub.stdout.String(); !strings.Contains(out, ` "plain text"`+"\n") || !strings.Contains(out, ` "a line\n"`+"\n") {
		t.Errorf("subscribe printed:\n%s", out)
	}

	var probed api.NATInfo
	if err := cliJSON(t, n.st.API, &probed, "nat", "probe"); err != nil || probed.MeasuredAt.IsZero() {
		t.Errorf("nat probe --json: %+v (%v)", probed, err)
	}
	if r := runCmd(t, 30*time.Second, nil, "--api", n.st.API, "nat", "probe"); r.code != 0 || !strings.Contains(r.stdout, "Measured") {
		t.Errorf("nat probe: exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
}
