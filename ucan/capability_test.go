package ucan

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/macula-io/macula/realm"
)

func TestParseCommand(t *testing.T) {
	for in, want := range map[string]Command{
		"invoke": Call, "call": Call, "read": Subscribe, "subscribe": Subscribe,
		"write": Publish, "publish": Publish, "advertise": Advertise, "member": Member, "serve": Serve, "actor": Actor,
		"all": All, "*": All, "/macula/call": Call, "/macula": All, " Call ": Call,
		"register": Register, "join": Join, "dispatch": Dispatch, "/macula/register": Register,
	} {
		if got, err := ParseCommand(in); err != nil || got != want {
			t.Errorf("ParseCommand(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "delete", "/", "/other", "/maculax", "/macula/"} {
		if _, err := ParseCommand(in); !errors.Is(err, ErrIssue) {
			t.Errorf("ParseCommand(%q) accepted", in)
		}
	}
}

func TestCommandCovers(t *testing.T) {
	for _, c := range []struct {
		parent, child Command
		want          bool
	}{
		{All, Call, true}, {All, All, true}, {Call, Call, true}, {"/", Call, true},
		{Call, All, false}, {Call, Publish, false}, {"/macula/call", "/macula/callx", false},
	} {
		if got := c.parent.Covers(c.child); got != c.want {
			t.Errorf("%s covers %s = %v", c.parent, c.child, got)
		}
	}
}

func TestPatternAlgebra(t *testing.T) {
	for _, c := range []struct {
		a, b, want string // want "" for no intersection
	}{
		{"io.acme.>", "io.acme.orders.*", "io.acme.orders.*"},
		{"io.acme.orders.*", "io.acme.*.place", "io.acme.orders.place"},
		{"io.acme.*", "io.acme.*", "io.acme.*"},
		{"io.acme.*", "io.acme.>", "io.acme.*"},
		{"io.acme.>", "*.*.b.>", "io.acme.b.>"},
		{"io.acme.orders", "io.acme.orders", "io.acme.orders"},
		{">", "io.acme.x", "io.acme.x"},
		{">", ">", ">"},
		{"io.acme.*", "io.acme.a.b", ""},
		{"io.acme.orders.*", "io.acme.billing.*", ""},
		{"io.acme.*", "io.acme.*.>", ""},
		{"a.b", "a.>", "a.b"},
		{"a", "a.>", ""},
		// Segments below the realm are case-sensitive: never folded.
		{"io.acme.devices.AB12.>", "io.acme.devices.*.telemetry", "io.acme.devices.AB12.telemetry"},
		{"io.acme.devices.AB12.>", "io.acme.devices.ab12.>", ""},
	} {
		got, ok := intersect(c.a, c.b)
		if c.want == "" {
			if ok {
				t.Errorf("%s ∩ %s = %s, want none", c.a, c.b, got)
			}
			continue
		}
		if !ok || got != c.want {
			t.Errorf("%s ∩ %s = %q %v, want %q", c.a, c.b, got, ok, c.want)
		}
		if back, _ := intersect(c.b, c.a); back != got {
			t.Errorf("not symmetric: %s ∩ %s = %s", c.b, c.a, back)
		}
		// Every name both match is matched by the intersection and back.
		for _, name := range []string{"io.acme.orders.place", "io.acme.b.c", "io.acme.x", "a.b", "io.acme.orders", "io.acme.a.b",
			"io.acme.devices.AB12.telemetry", "io.acme.devices.ab12.telemetry"} {
			both := realm.Match(c.a, name) && realm.Match(c.b, name)
			if realm.Match(got, name) != both {
				t.Errorf("%s ∩ %s = %s disagrees on %s", c.a, c.b, got, name)
			}
		}
	}
	for _, c := range []struct {
		parent, child string
		want          bool
	}{
		{"io.acme.>", "io.acme.orders.*", true},
		{"io.acme.orders.*", "io.acme.orders.place", true},
		{"io.acme.orders.*", "io.acme.orders.>", false},
		{"io.acme.orders.place", "io.acme.orders.*", false},
		{">", "io.acme.>", true},
		{"io.acme.devices.AB12.>", "io.acme.devices.AB12.*", true},
		{"io.acme.devices.AB12.>", "io.acme.devices.ab12.*", false},
	} {
		if got := covers(c.parent, c.child); got != c.want {
			t.Errorf("covers(%s, %s) = %v", c.parent, c.child, got)
		}
	}
	for _, bad := range []string{"", "a..b", "a.>.b", "-A.b", "a*.b", "a.b.", "x\\*", "a.Ä"} {
		if _, err := parsePattern(bad); err == nil {
			t.Errorf("parsePattern(%q) accepted", bad)
		}
	}
}

func TestGrantAllows(t *testing.T) {
	g := Grant{Capabilities: []Capability{{Call, "io.acme.orders.*"}}}
	if !g.Allows(Call, place) || g.Allows(Publish, place) || g.Allows(Call, "io.acme.billing.x") {
		t.Fatal("Allows")
	}
	up := Grant{Capabilities: []Capability{{Call, "io.acme.devices.AB12.*"}}}
	if !up.Allows(Call, "io.acme.devices.AB12.reboot") || up.Allows(Call, "io.acme.devices.ab12.reboot") {
		t.Fatal("Allows with upper case: want exact case")
	}
	if !(Grant{Open: true}).Allows(Publish, "x.y") {
		t.Fatal("open")
	}
}

func TestKeys(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", AuthorityKeyFile)
	key, err := CreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", fi.Mode(), err)
	}
	back, err := LoadKey(path)
	if err != nil || !back.Equal(key) {
		t.Fatalf("LoadKey: %v", err)
	}
	if d := KeyDID(key); !strings.HasPrefix(d, "did:key:z6Mk") {
		t.Fatalf("KeyDID %s", d)
	}
	if _, err := CreateKey(path); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("overwrote an authority key: %v", err)
	}
	if _, err := LoadKey(filepath.Join(dir, "none")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing: %v", err)
	}
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("not a key"), 0o600)
	if _, err := LoadKey(bad); !errors.Is(err, ErrCorruptKey) {
		t.Fatalf("corrupt: %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}
}

func TestChainEncoding(t *testing.T) {
	r := newTestRealm(t)
	toA := r.issue(t, r.auth, IssueOptions{Audience: didA, Command: Call, Resource: orders})
	chain := r.issue(t, keyA, IssueOptions{Audience: didNode, Command: Call, Resource: orders, Proof: toA})
	bin, err := chain.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	std := []byte(" " + base64Std(bin) + "\n")
	for name, in := range map[string][]byte{"binary": bin, "text": []byte(chain.String()), "std base64": std} {
		got, err := ParseChain(in)
		if err != nil || len(got) != 2 || string(got[0]) != string(chain[0]) || string(got.Leaf()) != string(chain[1]) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// A single token is a chain of one, in binary or base64 (iso-ucan's text).
	for _, in := range [][]byte{toA[0], []byte(base64Std(toA[0]))} {
		got, err := ParseChain(in)
		if err != nil || len(got) != 1 || string(got[0]) != string(toA[0]) {
			t.Errorf("single token: %v", err)
		}
	}
	for _, bad := range [][]byte{nil, []byte("!!"), {0x82, 0x01}, []byte("a2VrZWs")} {
		if _, err := ParseChain(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseChain(%q) = %v", bad, err)
		}
	}
	pres, err := MarshalChains([]Chain{chain, toA})
	if err != nil {
		t.Fatal(err)
	}
	back, err := UnmarshalChains(pres)
	if err != nil || len(back) != 2 || len(back[0]) != 2 || len(back[1]) != 1 {
		t.Fatalf("UnmarshalChains: %v %d", err, len(back))
	}
	if _, err := UnmarshalChains(bin); !errors.Is(err, ErrMalformed) {
		t.Fatalf("a chain is not a presentation: %v", err)
	}
}

func TestInspect(t *testing.T) {
	r := newTestRealm(t)
	toA := r.issue(t, r.auth, IssueOptions{Audience: didA, Command: All, Resource: "io.acme.>"})
	chain := r.issue(t, keyA, IssueOptions{Audience: didNode, Command: Call, Resource: orders, Proof: toA, Expires: r.start.Add(30 * time.Minute)})
	out, err := Inspect([]byte(chain.String()))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"chain of 2 tokens", "root delegation", "/macula/call", "io.acme.orders.*", didNode,
		"ok   [1] is issued by the audience of [0]", "effective: /macula/call on io.acme.orders.*", "content id",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("Inspect lacks %q:\n%s", want, out)
		}
	}
	inv, _ := Invoke(keyNode, InvokeOptions{Executor: didSelf, Command: Call, Resource: place, Proof: chain})
	rec, _ := Revoke(r.auth, chain[1])
	for _, tok := range [][]byte{inv, rec} {
		if out, err := Inspect(tok); err != nil || !strings.Contains(out, "executor") {
			t.Errorf("Inspect: %v\n%s", err, out)
		}
	}
	// Describe gives the same as data (ucan inspect --json).
	d, err := Describe([]byte(chain.String()))
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Tokens) != 2 || !d.Tokens[0].Root || d.Tokens[0].Audience != didA || d.Tokens[1].Command != string(Call) ||
		d.Tokens[1].Resource != orders || d.Tokens[1].Expires == nil || !d.Tokens[1].SignatureVerified {
		t.Errorf("Describe: %+v", d.Tokens)
	}
	if e := d.Effective; e == nil || e.Command != string(Call) || e.Resource != orders || e.Holder != didNode || len(d.Checks) != 4 {
		t.Errorf("Describe: effective %+v, checks %+v", d.Effective, d.Checks)
	}
	if d.String() != out {
		t.Errorf("Describe(...).String() is not Inspect's text")
	}
	broken := Chain{toA[0], rawToken{iss: didB, aud: didNode, sub: r.authDID, cmd: string(Call)}.seal(t, keyX)}
	out, err = Inspect([]byte(broken.String()))
	if err != nil || !strings.Contains(out, "bad signature") {
		t.Fatalf("broken chain: %v\n%s", err, out)
	}
	t.Log(out)
}
