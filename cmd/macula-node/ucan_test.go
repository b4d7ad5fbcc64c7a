package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/macula-io/macula/ucan"
)

// ucanTestResult is what a ucan or realm command printed and how run would
// have exited.
type ucanTestResult struct {
	stdout string
	err    string // the one line run prints on stderr
	code   int
}

// ucanRunTree runs a command tree built by newUCANCmd or newRealmCmd with args
// and stdin, and maps its error to an exit code as run does. (The commands
// are not registered in root.go yet, so they are run directly.)
func ucanRunTree(t *testing.T, tree *cobra.Command, stdin string, args ...string) ucanTestResult {
	t.Helper()
	var out, errOut bytes.Buffer
	tree.SetOut(&out)
	tree.SetErr(&errOut)
	tree.SetIn(strings.NewReader(stdin))
	tree.SilenceUsage, tree.SilenceErrors = true, true
	tree.SetArgs(args)
	err := tree.ExecuteContext(context.Background())
	r := ucanTestResult{stdout: out.String()}
	if err == nil {
		return r
	}
	r.err = oneLine(err.Error())
	var ue *usageError
	var ce *codedError
	switch {
	case errors.As(err, &ue):
		r.code = exitUsage
	case errors.As(err, &ce):
		r.code = ce.code
	default:
		r.code = exitError
	}
	return r
}

func ucanTestCmd(t *testing.T, stdin string, args ...string) ucanTestResult {
	t.Helper()
	return ucanRunTree(t, newUCANCmd(), stdin, args...)
}

func realmTestCmd(t *testing.T, args ...string) ucanTestResult {
	t.Helper()
	return ucanRunTree(t, newRealmCmd(), "", args...)
}

// ucanMustOK fails the test unless r exited 0.
func ucanMustOK(t *testing.T, what string, r ucanTestResult) ucanTestResult {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("%s: exit %d: %s\nstdout:\n%s", what, r.code, r.err, r.stdout)
	}
	return r
}

// ucanMustFail fails the test unless r exited with code and its error line
// contains want.
func ucanMustFail(t *testing.T, what string, r ucanTestResult, code int, want string) {
	t.Helper()
	if r.code != code || !strings.Contains(r.err, want) {
		t.Fatalf("%s: exit %d %q, want exit %d containing %q\nstdout:\n%s", what, r.code, r.err, code, want, r.stdout)
	}
}

// ucanTestAuthority creates an authority key with realm init and returns its
// file and DID.
func ucanTestAuthority(t *testing.T, dir, name string) (string, string) {
	t.Helper()
	path := filepath.Join(dir, name)
	r := ucanMustOK(t, "realm init", realmTestCmd(t, "init", "--key", path, "--json"))
	var out struct{ Key, DID string }
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("realm init --json: %v in %q", err, r.stdout)
	}
	if out.Key != path || !strings.HasPrefix(out.DID, "did:key:z6Mk") {
		t.Fatalf("realm init --json: %+v", out)
	}
	return path, out.DID
}

// ucanTestKey creates a node-like key file and returns it and its DID.
func ucanTestKey(t *testing.T, dir, name string) (string, string) {
	t.Helper()
	path := filepath.Join(dir, name)
	key, err := ucan.CreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, ucan.KeyDID(key)
}

func TestRealmInit(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)

	r := ucanMustOK(t, "realm init", realmTestCmd(t, "init"))
	path := filepath.Join(home, ".macula", ucan.AuthorityKeyFile)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatalf("default key: %v", err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v, want 0600", st.Mode().Perm())
	}
	key, err := ucan.LoadKey(path)
	if err != nil {
		t.Fatal(err)
	}
	did := ucan.KeyDID(key)
	for _, want := range []string{path, did, "is secure: grant each node", "ucan issue --as " + path} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("realm init output lacks %q:\n%s", want, r.stdout)
		}
	}
	before, _ := os.ReadFile(path)

	// Never overwrite, and say what the existing key is and how to use it.
	r = realmTestCmd(t, "init")
	ucanMustFail(t, "realm init again", r, exitError, "never replaced")
	if !strings.Contains(r.err, did) || !strings.Contains(r.err, "--as "+path) {
		t.Errorf("refusal does not say how to use the existing key: %s", r.err)
	}
	ucanMustFail(t, "realm init --key existing", realmTestCmd(t, "init", "--key", path), exitError, "never replaced")
	ucanMustFail(t, "realm init --force", realmTestCmd(t, "init", "--force"), exitUsage, "unknown flag")
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Fatal("the authority key was replaced")
	}

	// --key elsewhere, directory created.
	other := filepath.Join(t.TempDir(), "sub", "a.key")
	r = ucanMustOK(t, "realm init --key", realmTestCmd(t, "init", "--key", other))
	if st, err := os.Stat(other); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("--key file: %v %v", st, err)
	}
	if strings.Contains(r.stdout, did) {
		t.Error("a new key has the DID of the old one")
	}
	ucanMustFail(t, "realm init with an argument", realmTestCmd(t, "init", "x"), exitUsage, "takes no arguments")
}

func TestUCANIssueInspect(t *testing.T) {
	dir := t.TempDir()
	auth, authDID := ucanTestAuthority(t, dir, "authority.key")
	_, aDID := ucanTestKey(t, dir, "a.key")

	out := filepath.Join(dir, "a.ucan")
	r := ucanMustOK(t, "issue root", ucanTestCmd(t, "", "issue", "--as", auth, "--realm", "io.acme", "--to", aDID,
		"--can", "invoke", "--with", "io.acme.orders.*", "--expires", "1h", "--out", out))
	if !strings.Contains(r.stdout, "root delegation") || !strings.Contains(r.stdout, out) {
		t.Errorf("issue --out said: %q", r.stdout)
	}
	st, err := os.Stat(out)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("--out file: %v %v", st, err)
	}
	data, _ := os.ReadFile(out)
	chain, err := ucan.ParseChain(data)
	if err != nil || len(chain) != 1 {
		t.Fatalf("--out holds %d tokens, %v", len(chain), err)
	}
	if got := strings.TrimSpace(string(data)); got != chain.String() {
		t.Errorf("--out is not the chain's text form")
	}

	r = ucanMustOK(t, "inspect @file", ucanTestCmd(t, "", "inspect", "@"+out))
	for _, want := range []string{"delegation", "root delegation", authDID, aDID, "/macula/call", "io.acme.orders.*", "signature     verified"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("inspect lacks %q:\n%s", want, r.stdout)
		}
	}

	// To stdout, then inspect from stdin and as an argument.
	r = ucanMustOK(t, "issue to stdout", ucanTestCmd(t, "", "issue", "--as", auth, "--realm", "io.acme", "--to", aDID,
		"--can", "member", "--name", "node1"))
	token := strings.TrimSpace(r.stdout)
	if strings.Contains(token, "\n") || token == "" {
		t.Fatalf("issue printed %q, want one line", r.stdout)
	}
	r = ucanMustOK(t, "inspect -", ucanTestCmd(t, r.stdout, "inspect", "-"))
	if !strings.Contains(r.stdout, "/macula/member") || !strings.Contains(r.stdout, "node1") {
		t.Errorf("inspect - lacks the membership:\n%s", r.stdout)
	}
	ucanMustOK(t, "inspect TOKEN", ucanTestCmd(t, "", "inspect", token))

	ucanMustFail(t, "inspect garbage", ucanTestCmd(t, "", "inspect", "not a token!"), exitError, "cannot inspect")
	ucanMustFail(t, "inspect missing file", ucanTestCmd(t, "", "inspect", "@"+filepath.Join(dir, "none")), exitError, "no such file")
	ucanMustFail(t, "inspect no argument", ucanTestCmd(t, "", "inspect"), exitUsage, "needs 1 argument")
}

func TestUCANIssueSubDelegation(t *testing.T) {
	dir := t.TempDir()
	auth, _ := ucanTestAuthority(t, dir, "authority.key")
	aKey, aDID := ucanTestKey(t, dir, "a.key")
	_, bDID := ucanTestKey(t, dir, "b.key")

	proof := filepath.Join(dir, "a.ucan")
	ucanMustOK(t, "issue root", ucanTestCmd(t, "", "issue", "--as", auth, "--realm", "io.acme", "--to", aDID,
		"--can", "call", "--with", "io.acme.orders.*", "--expires", "2h", "--out", proof))

	// Narrower pattern: fine, a chain of 2.
	r := ucanMustOK(t, "sub-delegate narrower", ucanTestCmd(t, "", "issue", "--as", aKey, "--proof", proof, "--realm", "io.acme",
		"--to", bDID, "--can", "call", "--with", "io.acme.orders.get", "--expires", "1h"))
	chain, err := ucan.ParseChain([]byte(r.stdout))
	if err != nil || len(chain) != 2 {
		t.Fatalf("sub-delegation: %d tokens, %v", len(chain), err)
	}
	r = ucanMustOK(t, "inspect chain", ucanTestCmd(t, r.stdout, "inspect", "-"))
	for _, want := range []string{"chain of 2 tokens", "ok   [1] is issued by the audience of [0]", "effective: /macula/call on io.acme.orders.get, held by " + bDID} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("inspect of the chain lacks %q:\n%s", want, r.stdout)
		}
	}

	// Wider pattern, other command, or not the proof's holder: refused.
	ucanMustFail(t, "sub-delegate a wider pattern", ucanTestCmd(t, "", "issue", "--as", aKey, "--proof", proof, "--realm", "io.acme",
		"--to", bDID, "--can", "call", "--with", "io.acme.*"), exitError, "does not cover")
	ucanMustFail(t, "sub-delegate the whole realm", ucanTestCmd(t, "", "issue", "--as", aKey, "--proof", proof, "--realm", "io.acme",
		"--to", bDID, "--can", "call"), exitError, "does not cover")
	ucanMustFail(t, "sub-delegate another command", ucanTestCmd(t, "", "issue", "--as", aKey, "--proof", proof, "--realm", "io.acme",
		"--to", bDID, "--can", "publish", "--with", "io.acme.orders.get"), exitError, "command widened")
	ucanMustFail(t, "sub-delegate by another key", ucanTestCmd(t, "", "issue", "--as", auth, "--proof", proof, "--realm", "io.acme",
		"--to", bDID, "--can", "call", "--with", "io.acme.orders.get"), exitError, "not to the issuer")
	ucanMustFail(t, "proof missing", ucanTestCmd(t, "", "issue", "--as", aKey, "--proof", filepath.Join(dir, "none"), "--realm", "io.acme",
		"--to", bDID, "--can", "call"), exitError, "no such file")
}

func TestUCANIssueErrors(t *testing.T) {
	dir := t.TempDir()
	auth, _ := ucanTestAuthority(t, dir, "authority.key")
	_, aDID := ucanTestKey(t, dir, "a.key")
	base := []string{"issue", "--as", auth, "--realm", "io.acme", "--to", aDID, "--can", "call"}
	with := func(extra ...string) []string { return append(append([]string(nil), base...), extra...) }

	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no --as", []string{"issue", "--realm", "io.acme", "--to", aDID, "--can", "call"}, exitUsage, "--as is required"},
		{"no --to", []string{"issue", "--as", auth, "--realm", "io.acme", "--can", "call"}, exitUsage, "--to is required"},
		{"no --can", []string{"issue", "--as", auth, "--realm", "io.acme", "--to", aDID}, exitUsage, "--can is required"},
		{"no --realm", []string{"issue", "--as", auth, "--to", aDID, "--can", "call"}, exitUsage, "--realm is required"},
		{"bad DID", []string{"issue", "--as", auth, "--realm", "io.acme", "--to", "did:key:zNope", "--can", "call"}, exitUsage, "--to \"did:key:zNope\": want a did:key"},
		{"alias is not a did:key", []string{"issue", "--as", auth, "--realm", "io.acme", "--to", "did:macula:io.acme.node1", "--can", "call"}, exitUsage, "want a did:key"},
		{"bad command", []string{"issue", "--as", auth, "--realm", "io.acme", "--to", aDID, "--can", "fly"}, exitUsage, "--can \"fly\""},
		{"pattern outside the realm", with("--with", "io.other.*"), exitUsage, "--with \"io.other.*\""},
		{"bad pattern", with("--with", "io.acme.>.x"), exitUsage, "--with"},
		{"name without member", with("--name", "node1"), exitUsage, "--can member"},
		{"bad expiry", with("--expires", "soon"), exitUsage, "--expires \"soon\""},
		{"negative expiry", with("--expires", "-1h"), exitUsage, "positive duration"},
		{"not-before after expiry", with("--expires", "1h", "--not-before", "2h"), exitError, "NotBefore is not before Expires"},
		{"missing key", []string{"issue", "--as", filepath.Join(dir, "none.key"), "--realm", "io.acme", "--to", aDID, "--can", "call"}, exitError, "no such key file"},
		{"unknown flag", with("--frobnicate"), exitUsage, "unknown flag"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ucanMustFail(t, c.name, ucanTestCmd(t, "", c.args...), c.code, c.want)
		})
	}

	corrupt := filepath.Join(dir, "corrupt.key")
	if err := os.WriteFile(corrupt, []byte("nope"), 0o600); err != nil {
		t.Fatal(err)
	}
	ucanMustFail(t, "corrupt key", ucanTestCmd(t, "", "issue", "--as", corrupt, "--realm", "io.acme", "--to", aDID, "--can", "call"), exitError, "not an Ed25519 key file")
	ucanMustFail(t, "unknown subcommand", ucanTestCmd(t, "", "issu"), exitUsage, "unknown command")
}

func TestUCANVerify(t *testing.T) {
	dir := t.TempDir()
	auth, authDID := ucanTestAuthority(t, dir, "authority.key")
	other, otherDID := ucanTestAuthority(t, dir, "other.key")
	aKey, aDID := ucanTestKey(t, dir, "a.key")
	_, bDID := ucanTestKey(t, dir, "b.key")
	issue := func(args ...string) string {
		t.Helper()
		r := ucanMustOK(t, "issue", ucanTestCmd(t, "", append([]string{"issue", "--realm", "io.acme"}, args...)...))
		return strings.TrimSpace(r.stdout)
	}
	verify := func(token string, args ...string) ucanTestResult {
		t.Helper()
		return ucanTestCmd(t, "", append([]string{"verify", token, "--realm", "io.acme"}, args...)...)
	}

	root := issue("--as", auth, "--to", aDID, "--can", "call", "--with", "io.acme.orders.*", "--expires", "1h")
	rootFile := filepath.Join(dir, "a.ucan")
	if err := os.WriteFile(rootFile, []byte(root+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// Valid; the caller defaults to the chain's final audience.
	r := ucanMustOK(t, "verify", verify("@"+rootFile, "--authority", authDID))
	for _, want := range []string{"Valid", "yes: chain of 1", aDID, "/macula/call on io.acme.orders.*", "Member        no"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("verify lacks %q:\n%s", want, r.stdout)
		}
	}
	// The granted command on a name the pattern matches, and a narrower command
	// the grant does not cover; a name outside the pattern.
	r = ucanMustOK(t, "verify allowed", verify(root, "--authority", authDID, "--can", "call", "--with", "io.acme.orders.placed"))
	if !strings.Contains(r.stdout, "Allowed       yes: /macula/call on io.acme.orders.placed") {
		t.Errorf("verify --can lacks the answer:\n%s", r.stdout)
	}
	r = verify(root, "--authority", authDID, "--can", "call", "--with", "io.acme.billing.pay")
	ucanMustFail(t, "other resource", r, exitUnauthorized, "refused: /macula/call on io.acme.billing.pay: resource not granted")
	if !strings.Contains(r.stdout, "Allowed       no") {
		t.Errorf("a refused check still prints the grant and the answer:\n%s", r.stdout)
	}
	ucanMustFail(t, "deeper name", verify(root, "--authority", authDID, "--can", "invoke", "--with", "io.acme.orders.placed.eu"), exitUnauthorized, "resource not granted")
	ucanMustFail(t, "other command", verify(root, "--authority", authDID, "--can", "publish", "--with", "io.acme.orders.placed"), exitUnauthorized, "command not granted")
	ucanMustFail(t, "not a member", verify(root, "--authority", authDID, "--can", "member"), exitUnauthorized, "not a member")

	// Stdin, and --json.
	r = ucanMustOK(t, "verify - --json", ucanTestCmd(t, root, "verify", "-", "--realm", "io.acme", "--authority", authDID, "--can", "call", "--with", "io.acme.orders.get", "--json"))
	var vr ucanVerifyResult
	if err := json.Unmarshal([]byte(r.stdout), &vr); err != nil {
		t.Fatalf("--json: %v in %q", err, r.stdout)
	}
	if !vr.Valid || vr.Caller != aDID || len(vr.Capabilities) != 1 || vr.Capabilities[0].Resource != "io.acme.orders.*" ||
		vr.Expires == nil || vr.Check == nil || !vr.Check.Allowed {
		t.Errorf("--json: %+v", vr)
	}

	// Another authority, or presented by someone else than its audience.
	ucanMustFail(t, "other authority", verify(root, "--authority", otherDID), exitUnauthorized, "not rooted at the realm authority")
	ucanMustFail(t, "other holder", verify(root, "--authority", authDID, "--for", bDID), exitUnauthorized, "meant for another principal")
	ucanMustFail(t, "other realm", ucanTestCmd(t, "", "verify", root, "--realm", "io.other", "--authority", authDID), exitUnauthorized, "refused")
	forged := issue("--as", other, "--to", aDID, "--can", "call", "--with", "io.acme.orders.*")
	ucanMustFail(t, "chain of another authority", verify(forged, "--authority", authDID), exitUnauthorized, "not rooted")

	// Not yet valid: --not-before beyond the leeway.
	later := issue("--as", auth, "--to", aDID, "--can", "call", "--not-before", "1h", "--expires", "2h")
	r = verify(later, "--authority", authDID, "--json")
	ucanMustFail(t, "not yet valid", r, exitUnauthorized, "not yet valid")
	if err := json.Unmarshal([]byte(r.stdout), &vr); err != nil || vr.Valid || !strings.Contains(vr.Reason, "not yet valid") {
		t.Errorf("--json of a refusal: %v %+v", err, vr)
	}

	// A sub-delegation: valid for its holder, narrowed.
	sub := issue("--as", aKey, "--proof", rootFile, "--to", bDID, "--can", "call", "--with", "io.acme.orders.get", "--expires", "30m")
	r = ucanMustOK(t, "verify sub-delegation", verify(sub, "--authority", authDID, "--can", "call", "--with", "io.acme.orders.get"))
	if !strings.Contains(r.stdout, bDID) || !strings.Contains(r.stdout, "chain of 2") {
		t.Errorf("verify of the sub-delegation:\n%s", r.stdout)
	}
	ucanMustFail(t, "sub-delegation, sibling name", verify(sub, "--authority", authDID, "--can", "call", "--with", "io.acme.orders.placed"), exitUnauthorized, "resource not granted")
	ucanMustFail(t, "sub-delegation, presented by A", verify(sub, "--authority", authDID, "--for", aDID), exitUnauthorized, "token 1 (the last) of 2")

	// Membership with a name.
	member := issue("--as", auth, "--to", aDID, "--can", "member", "--name", "node1")
	r = ucanMustOK(t, "verify member", verify(member, "--authority", authDID, "--can", "member", "--with", "node1"))
	if !strings.Contains(r.stdout, "yes, as node1 (did:macula:io.acme.node1)") {
		t.Errorf("verify of a membership:\n%s", r.stdout)
	}
	ucanMustFail(t, "member, other name", verify(member, "--authority", authDID, "--can", "member", "--with", "node2"), exitUnauthorized, "not a member")

	// Subscription patterns.
	subs := issue("--as", auth, "--to", aDID, "--can", "read", "--with", "io.acme.orders.>")
	ucanMustOK(t, "subscribe within", verify(subs, "--authority", authDID, "--can", "subscribe", "--with", "io.acme.orders.*"))
	ucanMustFail(t, "subscribe wider", verify(subs, "--authority", authDID, "--can", "subscribe", "--with", "io.acme.*"), exitUnauthorized, "refused")

	// Garbage and command-line mistakes.
	ucanMustFail(t, "garbage", verify("not a token!", "--authority", authDID), exitUnauthorized, "malformed")
	ucanMustFail(t, "no --authority", verify(root), exitUsage, "--authority is required")
	ucanMustFail(t, "bad --authority", verify(root, "--authority", "did:key:zNope"), exitUsage, "--authority")
	ucanMustFail(t, "no --realm", ucanTestCmd(t, "", "verify", root, "--authority", authDID), exitUsage, "--realm is required")
	ucanMustFail(t, "--can without --with", verify(root, "--authority", authDID, "--can", "call"), exitUsage, "needs --with")
	ucanMustFail(t, "--with without --can", verify(root, "--authority", authDID, "--with", "io.acme.x"), exitUsage, "needs --can")
	ucanMustFail(t, "bad --for", verify(root, "--authority", authDID, "--for", "nobody"), exitUsage, "--for")
}

// TestUCANEnvironment checks that only MACULA_REALM and MACULA_AUTHORITY
// reach the ucan commands: a node's MACULA_NAME must not be bound into a
// membership, nor MACULA_TO pick an audience.
func TestUCANEnvironment(t *testing.T) {
	dir := t.TempDir()
	auth, authDID := ucanTestAuthority(t, dir, "authority.key")
	_, aDID := ucanTestKey(t, dir, "a.key")
	t.Setenv("MACULA_REALM", "io.acme")
	t.Setenv("MACULA_AUTHORITY", authDID)
	t.Setenv("MACULA_NAME", "node9")
	t.Setenv("MACULA_TO", aDID)
	t.Setenv("MACULA_KEY", filepath.Join(dir, "env.key"))

	ucanMustFail(t, "MACULA_TO", ucanTestCmd(t, "", "issue", "--as", auth, "--can", "member"), exitUsage, "--to is required")
	r := ucanMustOK(t, "issue with MACULA_REALM", ucanTestCmd(t, "", "issue", "--as", auth, "--to", aDID, "--can", "member"))
	token := strings.TrimSpace(r.stdout)
	r = ucanMustOK(t, "inspect", ucanTestCmd(t, "", "inspect", token))
	if strings.Contains(r.stdout, "node9") {
		t.Errorf("MACULA_NAME was bound into the membership:\n%s", r.stdout)
	}
	r = ucanMustOK(t, "verify with MACULA_AUTHORITY", ucanTestCmd(t, "", "verify", token, "--can", "member"))
	if !strings.Contains(r.stdout, "Member        yes") {
		t.Errorf("verify:\n%s", r.stdout)
	}
	// The command line beats the environment. (A grant without --with names
	// no realm: it would verify in any realm of the authority.)
	r = ucanMustOK(t, "issue a call", ucanTestCmd(t, "", "issue", "--as", auth, "--to", aDID, "--can", "call", "--with", "io.acme.orders.*"))
	ucanMustFail(t, "flag beats MACULA_REALM", ucanTestCmd(t, "", "verify", strings.TrimSpace(r.stdout), "--realm", "io.other"), exitUnauthorized, "outside")

	home := t.TempDir()
	t.Setenv("HOME", home)
	ucanMustOK(t, "realm init ignores MACULA_KEY", realmTestCmd(t, "init"))
	if _, err := os.Stat(filepath.Join(home, ".macula", ucan.AuthorityKeyFile)); err != nil {
		t.Errorf("realm init: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "env.key")); err == nil {
		t.Error("realm init used MACULA_KEY")
	}
}

func TestUCANRevoke(t *testing.T) {
	dir := t.TempDir()
	auth, authDID := ucanTestAuthority(t, dir, "authority.key")
	_, aDID := ucanTestKey(t, dir, "a.key")
	grant := filepath.Join(dir, "a.ucan")
	ucanMustOK(t, "issue", ucanTestCmd(t, "", "issue", "--as", auth, "--realm", "io.acme", "--to", aDID,
		"--can", "call", "--with", "io.acme.orders.*", "--out", grant))

	r := ucanMustOK(t, "revoke", ucanTestCmd(t, "", "revoke", "--as", auth, "@"+grant))
	rec, err := base64.RawURLEncoding.DecodeString(strings.TrimSpace(r.stdout))
	if err != nil {
		t.Fatalf("revoke printed %q: %v", r.stdout, err)
	}
	// The record is the authority's and revokes exactly that grant.
	v, err := ucan.New(ucan.Config{Realm: "io.acme", Authority: authDID})
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(grant)
	chain, _ := ucan.ParseChain(data)
	if _, err := v.Validate(context.Background(), aDID, []ucan.Chain{chain}); err != nil {
		t.Fatal(err)
	}
	if err := v.AddRevocation(rec); err != nil {
		t.Fatal(err)
	}
	vd, err := v.Validate(context.Background(), aDID, []ucan.Chain{chain})
	if err == nil {
		err = ucan.Check(vd, ucan.Call, "io.acme.orders.place")
	}
	if !errors.Is(err, ucan.ErrRevoked) {
		t.Fatalf("after the revocation: %v, want ErrRevoked", err)
	}

	out := filepath.Join(dir, "a.rec")
	ucanMustOK(t, "revoke --out", ucanTestCmd(t, "", "revoke", "--as", auth, "@"+grant, "--out", out))
	if st, err := os.Stat(out); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("--out: %v %v", st, err)
	}
	// verify sees it with --revoked.
	ucanMustOK(t, "verify without the record", ucanTestCmd(t, "", "verify", "@"+grant, "--authority", authDID, "--realm", "io.acme"))
	ucanMustFail(t, "verify with the record", ucanTestCmd(t, "", "verify", "@"+grant, "--authority", authDID, "--realm", "io.acme",
		"--revoked", out), exitUnauthorized, "revoked")
	bad := filepath.Join(dir, "bad.rec")
	os.WriteFile(bad, []byte("%%%\n"), 0o600)
	ucanMustFail(t, "verify with a bad record file", ucanTestCmd(t, "", "verify", "@"+grant, "--authority", authDID, "--realm", "io.acme",
		"--revoked", bad), exitError, "not base64")
	ucanMustFail(t, "revoke without --as", ucanTestCmd(t, "", "revoke", "@"+grant), exitUsage, "--as is required")
	ucanMustFail(t, "revoke garbage", ucanTestCmd(t, "", "revoke", "--as", auth, "not a token"), exitError, "not a token or chain")
	ucanMustFail(t, "revoke --index out of range", ucanTestCmd(t, "", "revoke", "--as", auth, "--index", "3", "@"+grant), exitUsage, "--index 3")
	ucanMustFail(t, "revoke with a missing key", ucanTestCmd(t, "", "revoke", "--as", filepath.Join(dir, "none.key"), "@"+grant), exitError, "none.key")
}
