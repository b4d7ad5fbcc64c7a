package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/node"
)

// runDoctorCmd runs macula-node doctor ARGS --json and decodes its report.
func runDoctorCmd(t *testing.T, args ...string) (doctorReport, result) {
	t.Helper()
	r := runCmd(t, 90*time.Second, nil, append(append([]string{"doctor"}, args...), "--json")...)
	var rep doctorReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("doctor %s: exit %d, %v in:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, err, r.stdout, r.stderr)
	}
	return rep, r
}

// check returns the report's check named name.
func (r doctorReport) check(t *testing.T, name string) doctorCheck {
	t.Helper()
	for _, c := range r.Checks {
		if c.Check == name {
			return c
		}
	}
	t.Fatalf("no %q check in the report: %+v", name, r.Checks)
	return doctorCheck{}
}

// deadQUICAddr is a loopback multiaddr of a bootstrap peer that does not
// exist: a UDP port that was just free, and a peer ID of nobody.
func deadQUICAddr(t *testing.T) string {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := c.LocalAddr().(*net.UDPAddr).Port
	c.Close()
	return fmt.Sprintf("/ip4/127.0.0.1/udp/%d/quic-v1/p2p/12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp", port)
}

// TestDoctorMisconfigured: a node whose data directory others may write,
// whose key others may read, and whose only bootstrap peer does not
// answer; doctor fails, names each problem and says what to run.
func TestDoctorMisconfigured(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "bad")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, node.KeyFile), []byte("not read by doctor"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil { // past the umask
		t.Fatal(err)
	}
	dead := deadQUICAddr(t)
	rep, r := runDoctorCmd(t, "--realm", "io.doctor.bad", "--name", "bad", "--data-dir", dir,
		"--api", "127.0.0.1:1", "--listen", "/ip4/127.0.0.1/udp/0/quic-v1", "--bootstrap", dead)
	if r.code != exitError {
		t.Errorf("doctor exited %d, want %d; stderr: %s", r.code, exitError, r.stderr)
	}
	if rep.Running {
		t.Error("doctor says the node is running")
	}
	dd := rep.check(t, "data_dir")
	if dd.Status != checkFail || !strings.Contains(dd.Fix, "chmod 700 "+dir) || !strings.Contains(dd.Fix, "chmod 600 "+filepath.Join(dir, node.KeyFile)) {
		t.Errorf("data_dir check = %+v; want a failure that says chmod 700 the directory and chmod 600 the key", dd)
	}
	bs := rep.check(t, "bootstrap")
	if bs.Status != checkFail || !strings.Contains(bs.Summary, dead) || bs.Fix == "" {
		t.Errorf("bootstrap check = %+v; want a failure naming %s, with a fix", bs, dead)
	}
	// The text form says the same to a person.
	text := runCmd(t, 90*time.Second, nil, "doctor", "--realm", "io.doctor.bad", "--name", "bad", "--data-dir", dir,
		"--api", "127.0.0.1:1", "--listen", "/ip4/127.0.0.1/udp/0/quic-v1", "--bootstrap", dead)
	for _, want := range []string{"FAIL  data_dir", "fix: chmod 700 " + dir, "FAIL  bootstrap", "problem(s) to fix"} {
		if !strings.Contains(text.stdout, want) {
			t.Errorf("doctor's text lacks %q:\n%s", want, text.stdout)
		}
	}

	// Fixed, the same directory passes.
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, node.KeyFile), 0o600); err != nil {
		t.Fatal(err)
	}
	rep, _ = runDoctorCmd(t, "--realm", "io.doctor.bad", "--name", "bad", "--data-dir", dir, "--api", "127.0.0.1:1",
		"--listen", "/ip4/127.0.0.1/udp/0/quic-v1", "--bootstrap", dead)
	if dd := rep.check(t, "data_dir"); dd.Status != checkOK {
		t.Errorf("after chmod, data_dir check = %+v", dd)
	}

	// A port another program holds.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	rep, _ = runDoctorCmd(t, "--realm", "io.doctor.bad", "--name", "bad", "--data-dir", dir, "--api", busy.Addr().String(),
		"--listen", "/ip4/127.0.0.1/udp/0/quic-v1")
	if p := rep.check(t, "ports"); p.Status != checkFail || !strings.Contains(p.Summary, "in use") {
		t.Errorf("ports check with the API port taken = %+v", p)
	}
}

// TestDoctorRunningNodes: two macula-node run processes on loopback, the
// second bootstrapped through the first. Doctor, given the second's
// settings, finds it running, its bootstrap peer connected, the clocks
// agreeing and nothing to fix; then the first stops, and doctor says the
// bootstrap peer is not connected.
func TestDoctorRunningNodes(t *testing.T) {
	t.Parallel()
	const realmName = "io.doctor.ok"
	a := startRunNode(t, realmName, "doc-a")
	a.waitReady(t)
	boot := a.st.Addrs[0]
	b := startRunNode(t, realmName, "doc-b", boot)
	b.waitReady(t)
	args := []string{"--realm", realmName, "--name", "doc-b", "--data-dir", b.dir, "--api", b.st.API, "--bootstrap", boot}

	var rep doctorReport
	testnet.Eventually(t, 45*time.Second, func() error {
		var r result
		rep, r = runDoctorCmd(t, args...)
		if r.code != 0 {
			return fmt.Errorf("doctor exited %d: %+v", r.code, rep.Checks)
		}
		if c := rep.check(t, "clock"); !strings.Contains(c.Summary, "against 1 peer") {
			return fmt.Errorf("clock not measured yet: %+v", c)
		}
		return nil
	})
	if !rep.Running || rep.Realm != realmName || rep.Name != "doc-b" {
		t.Errorf("report = running %v, realm %q, name %q", rep.Running, rep.Realm, rep.Name)
	}
	if c := rep.check(t, "bootstrap"); c.Status != checkOK || !strings.Contains(c.Summary, "connected, direct") {
		t.Errorf("bootstrap check = %+v", c)
	}
	if c := rep.check(t, "data_dir"); c.Status != checkOK {
		t.Errorf("data_dir check of a directory run made = %+v", c)
	}
	for _, c := range rep.Checks {
		if c.Status == checkFail {
			t.Errorf("check failed: %+v", c)
		}
	}

	// A bootstrap list shared by the nodes of a site names each of them:
	// the node skips itself, and so does doctor (running: b's own address
	// beside a's; a with only its own).
	rep, _ = runDoctorCmd(t, append(args, "--bootstrap", b.st.Addrs[0])...)
	if c := rep.check(t, "bootstrap"); c.Status != checkOK || strings.Contains(c.Summary, b.st.Addrs[0]) {
		t.Errorf("bootstrap check with b's own address listed too = %+v", c)
	}
	aArgs := []string{"--realm", realmName, "--name", "doc-a", "--data-dir", a.dir, "--api", a.st.API, "--bootstrap", boot}
	rep, _ = runDoctorCmd(t, aArgs...)
	if c := rep.check(t, "bootstrap"); c.Status != checkWarn || !strings.Contains(c.Summary, "this node itself") {
		t.Errorf("bootstrap check of a listing only itself = %+v", c)
	}

	a.stop(t, os.Interrupt, 20*time.Second)
	testnet.Eventually(t, 45*time.Second, func() error {
		rep, _ = runDoctorCmd(t, args...)
		if c := rep.check(t, "bootstrap"); c.Status != checkFail || !strings.Contains(c.Summary, "not connected") {
			return fmt.Errorf("bootstrap check = %+v", c)
		}
		return nil
	})
	// a stopped: doctor checks from this host alone, and knows a's peer ID
	// from the key in its data directory.
	rep, _ = runDoctorCmd(t, aArgs...)
	if c := rep.check(t, "bootstrap"); rep.Running || c.Status != checkWarn || !strings.Contains(c.Summary, "this node itself") {
		t.Errorf("bootstrap check of a stopped node listing only itself = running %v, %+v", rep.Running, c)
	}
}
