//go:build deploy

package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/macula-io/macula/internal/testnet"
)

// TestContainerfile builds macula-node as deploy/Containerfile's first
// comment line says (CGO_ENABLED=0) and runs its ENTRYPOINT in a chroot
// that holds the binary and /data alone, with no environment, which is
// what FROM scratch gives it; doctor runs there too, as docker exec would.
// A second, static build of the whole binary takes minutes on a small
// machine, so make test leaves it out:
//
//	go test -tags deploy -run TestContainerfile ./cmd/macula-node/
func TestContainerfile(t *testing.T) {
	doc := deploymentDoc(t)

	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("the container test needs root (chroot)")
		}
		t.Skip("chroot needs root")
	}
	cf := doc["containerfile"]
	var build []string
	var entry []string
	for _, l := range strings.Split(cf, "\n") {
		if v, ok := strings.CutPrefix(l, "#   CGO_ENABLED=0 "); ok && build == nil {
			build = strings.Fields(v)
		}
		if v, ok := strings.CutPrefix(l, "ENTRYPOINT "); ok {
			if err := json.Unmarshal([]byte(v), &entry); err != nil {
				t.Fatalf("ENTRYPOINT %s: %v", v, err)
			}
		}
	}
	if len(build) < 4 || build[0] != "go" || len(entry) < 2 || entry[0] != "/macula-node" {
		t.Fatalf("the Containerfile's build line %q or ENTRYPOINT %q is not what the test knows", build, entry)
	}
	root := t.TempDir()
	// The build line, from the repository's root, writing into the
	// image's root instead of deploy/.
	for i, a := range build {
		if a == "deploy/macula-node" {
			build[i] = filepath.Join(root, "macula-node")
		}
	}
	cmd := exec.Command(build[0], build[1:]...)
	cmd.Dir = filepath.Join("..", "..")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(build, " "), err, out)
	}
	if err := os.Mkdir(filepath.Join(root, "data"), 0o700); err != nil { // VOLUME /data
		t.Fatal(err)
	}
	run := exec.Command(entry[0], append(entry[1:], "--realm", "io.acme.orders", "--name", "site-a",
		"--listen", "/ip4/127.0.0.1/udp/0/quic-v1", "--api", "127.0.0.1:0", "--http3", "off")...)
	run.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
	run.Dir = "/"
	run.Env = []string{} // FROM scratch: no environment either
	var stderr syncBuffer
	run.Stderr = &stderr
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- run.Wait() }()
	defer func() {
		select {
		case <-done:
		default:
			run.Process.Kill()
			<-done
		}
	}()
	state := filepath.Join(root, "data", stateFile)
	testnet.Eventually(t, 60*time.Second, func() error {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("the container's node exited (%v):\n%s", err, stderr.String())
		default:
		}
		_, err := os.Stat(state)
		return err
	})
	var st stateInfo
	if b, err := os.ReadFile(state); err != nil || json.Unmarshal(b, &st) != nil || st.Realm != "io.acme.orders" {
		t.Fatalf("the container's node.json: %v %+v", err, st)
	}
	// The CLI in the same image: doctor, as `docker exec` would run it.
	doc := exec.Command("/macula-node", "doctor", "--realm", "io.acme.orders", "--name", "site-a", "--data-dir", "/data",
		"--api", st.API, "--json")
	doc.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
	doc.Dir, doc.Env = "/", []string{}
	out, _ := doc.Output()
	var rep doctorReport
	if err := json.Unmarshal(out, &rep); err != nil || !rep.Running {
		t.Errorf("doctor in the container: %v, running %v:\n%s", err, rep.Running, out)
	}
	run.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		done <- err
		if err != nil {
			t.Errorf("the container's node exited with %v on SIGTERM:\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Error("the container's node did not stop within 30s of SIGTERM")
	}
}
