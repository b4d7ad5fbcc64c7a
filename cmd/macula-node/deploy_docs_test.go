package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The example addresses of docs/deployment.md, which tests replace with
// real ones.
const (
	docPublicIP = "203.0.113.10"
	docPeerID   = "12D3KooWBMdW6x8VBMcU2YCewN5bRg1RxBKri2Qw6NdLfHc3X1F8"
	docSTUN     = "stun.example.net:3478"
)

// docBlock matches a fenced block of a doc that a test runs: the marker
// comment <!-- test: NAME --> right before it.
var docBlock = regexp.MustCompile("(?s)<!-- test: ([a-z]+) -->\n```[a-z]*\n(.*?)```\n")

// deploymentDoc returns the marked blocks of docs/deployment.md by name.
func deploymentDoc(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "deployment.md"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, m := range docBlock.FindAllStringSubmatch(string(b), -1) {
		out[m[1]] = m[2]
	}
	return out
}

// docCommand is the macula-node command of a doc block, without the
// program's name, continuation lines joined, each old string of subst
// replaced by its new one.
func docCommand(t *testing.T, block string, subst ...string) []string {
	t.Helper()
	line := strings.ReplaceAll(block, "\\\n", " ")
	line = strings.TrimSpace(strings.NewReplacer(subst...).Replace(line))
	f := strings.Fields(line)
	if len(f) == 0 || f[0] != "macula-node" || strings.Contains(line, "\n") {
		t.Fatalf("doc block %q is not one macula-node command", block)
	}
	return f[1:]
}

// TestDeploymentDocs runs the files of docs/deployment.md: the config
// file and the systemd unit (systemd-analyze verify, then its ExecStart
// with that config). The doc's blocks must be the files in deploy/ word for
// word. The public node, the site and doctor blocks run in the NAT lab
// (TestDoctorNATLab); the container in TestContainerfile (-tags deploy: a
// second, static build of the binary is too slow for make test).
func TestDeploymentDocs(t *testing.T) {
	t.Parallel()
	doc := deploymentDoc(t)
	for _, name := range []string{"public", "id", "site", "doctor", "config", "unit", "containerfile"} {
		if _, ok := doc[name]; !ok {
			t.Fatalf("docs/deployment.md has no block marked <!-- test: %s -->", name)
		}
	}
	for block, file := range map[string]string{"config": "node.toml", "unit": "macula-node.service", "containerfile": "Containerfile"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "deploy", file))
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != doc[block] {
			t.Errorf("the %s block of docs/deployment.md differs from deploy/%s: keep them the same", block, file)
		}
	}
	dir := t.TempDir()
	config := filepath.Join(dir, "node.toml")
	if err := os.WriteFile(config, []byte(doc["config"]), 0o644); err != nil {
		t.Fatal(err)
	}

	t.Run("systemd", func(t *testing.T) {
		unit := doc["unit"]
		var execStart []string
		for _, l := range strings.Split(unit, "\n") {
			if v, ok := strings.CutPrefix(l, "ExecStart="); ok {
				execStart = strings.Fields(v)
			}
		}
		if len(execStart) < 2 || execStart[0] != "/usr/local/bin/macula-node" {
			t.Fatalf("the unit's ExecStart is %q", execStart)
		}
		if _, err := exec.LookPath("systemd-analyze"); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("systemd-analyze: %v (.ci/run installs systemd)", err)
			}
			t.Log("no systemd-analyze (apt-get install systemd): the unit is not verified")
		} else {
			// verify needs ExecStart's program: the test's binary stands in.
			path := filepath.Join(dir, "macula-node.service")
			if err := os.WriteFile(path, []byte(strings.Replace(unit, "/usr/local/bin/macula-node", binPath, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput()
			if err != nil || len(bytes.TrimSpace(out)) > 0 {
				t.Errorf("systemd-analyze verify: %v\n%s", err, out)
			}
		}

		// ExecStart with the doc's config; the data directory, listen
		// address and API moved to the test's (flags beat the file).
		args := execStart[1:]
		for i, a := range args {
			if a == "/etc/macula/node.toml" {
				args[i] = config
			}
		}
		data := filepath.Join(dir, "var-lib-macula")
		local := []string{"--data-dir", data, "--listen", "/ip4/127.0.0.1/udp/0/quic-v1", "--api", "127.0.0.1:0", "--http3", "off"}
		n := &runNode{proc: startProc(t, "unit", nil, append(args, local...)...), dir: data}
		n.waitReady(t)
		if n.st.Realm != "io.acme.orders" || n.st.Name != "site-a" {
			t.Errorf("the node of the doc's config is %s in %s, want site-a in io.acme.orders", n.st.Name, n.st.Realm)
		}
		// doctor --config on the same file finds it, and says that the
		// example's bootstrap peer (a documentation address) is not
		// connected.
		rep, _ := runDoctorCmd(t, "--config", config, "--data-dir", data, "--api", n.st.API)
		if !rep.Running || rep.Name != "site-a" {
			t.Errorf("doctor --config: running %v, name %q", rep.Running, rep.Name)
		}
		if c := rep.check(t, "data_dir"); c.Status != checkOK {
			t.Errorf("data_dir check of the node's own directory: %+v", c)
		}
		if c := rep.check(t, "bootstrap"); c.Status != checkFail || !strings.Contains(c.Summary, docPublicIP) {
			t.Errorf("bootstrap check of the example's address: %+v", c)
		}
		if code := n.stop(t, syscall.SIGTERM, 20*time.Second); code != 0 {
			t.Errorf("the unit's node exited %d on SIGTERM (its KillSignal)", code)
		}
	})

}
