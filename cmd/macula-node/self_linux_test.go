//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/macula-io/macula/internal/testnet"
)

// fileString is a Stringer of a file's content, read when asked.
type fileString string

func (f fileString) String() string {
	b, _ := os.ReadFile(string(f))
	return string(b)
}

// alive reports whether process pid runs: it exists and is not a zombie
// (the node, handed to init when go run died, may wait there to be reaped).
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	// pid (comm) state ...: the state follows the last ')'.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

// goEnv is the environment for the go command in a test: childEnv's, with
// the caches of this go (childEnv moves HOME, where they default to).
func goEnv(t *testing.T) []string {
	t.Helper()
	var extra []string
	for _, v := range []string{"GOCACHE", "GOMODCACHE", "GOPATH", "GOFLAGS", "GOTOOLCHAIN"} {
		out, err := exec.Command("go", "env", v).Output()
		if err != nil {
			t.Fatalf("go env %s: %v", v, err)
		}
		extra = append(extra, v+"="+strings.TrimSpace(string(out)))
	}
	return childEnv(t, extra...)
}

// TestGoRun starts macula-node with go run, as the README's other way in:
// dev's hints say "go run .", and a node under go run stops (cleanly, its
// node.json removed) when the go command is killed, which passes no
// signal on.
func TestGoRun(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// dev's hints.
	dev := exec.CommandContext(ctx, "go", "run", ".", "dev", "--nodes", "1")
	dev.Env = goEnv(t)
	dev.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // a process group, as a terminal's job
	dev.WaitDelay = 5 * time.Second
	out := &syncBuffer{}
	dev.Stdout, dev.Stderr = out, out
	if err := dev.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-dev.Process.Pid, syscall.SIGKILL); dev.Wait() })
	testnet.Eventually(t, 3*time.Minute, func() error {
		if !strings.Contains(out.String(), "Ctrl-C") {
			return errors.New("not yet")
		}
		return nil
	})
	if got := out.String(); !strings.Contains(got, "\n  go run . --api ") || !strings.Contains(got, "make build") {
		t.Errorf("dev under go run hints:\n%s", got)
	}
	// Ctrl-C signals the terminal's job, go run and dev: go ignores it, dev stops.
	if err := syscall.Kill(-dev.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	dev.Wait() // go run exits 1 after an interrupt, whatever dev did
	if !strings.HasSuffix(out.String(), "stopping\n") {
		t.Errorf("go run . dev did not stop cleanly after Ctrl-C:\n%s", out.String())
	}

	// Killing go run stops the node.
	dir := t.TempDir()
	node := exec.CommandContext(ctx, "go", "run", ".", "run", "--realm", "io.gorun.test", "--name", "n1", "--data-dir", dir,
		"--listen", "/ip4/127.0.0.1/udp/0/quic-v1", "--api", "127.0.0.1:0", "--http3", "off")
	node.Env = goEnv(t)
	// The node's output goes to a file, not a pipe: the node inherits go
	// run's descriptors, and a pipe that the test closes once go run is gone
	// would kill it (SIGPIPE) in the middle of its clean stop.
	outFile, err := os.Create(filepath.Join(t.TempDir(), "output"))
	if err != nil {
		t.Fatal(err)
	}
	defer outFile.Close()
	node.Stdout, node.Stderr = outFile, outFile
	nodeOut := fileString(outFile.Name())
	if err := node.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Process.Kill(); node.Wait() })
	var st stateInfo
	testnet.Eventually(t, 3*time.Minute, func() error {
		b, err := os.ReadFile(filepath.Join(dir, stateFile))
		if err != nil {
			return err
		}
		return json.Unmarshal(b, &st)
	})
	t.Cleanup(func() {
		if alive(st.PID) { // the test failed: do not leave the node behind
			syscall.Kill(st.PID, syscall.SIGKILL)
		}
	})
	if st.PID == node.Process.Pid {
		t.Fatalf("node.json names go run's pid %d: the node is not go run's child", st.PID)
	}
	if err := node.Process.Kill(); err != nil { // SIGKILL: go run can pass nothing on
		t.Fatal(err)
	}
	node.Wait()
	testnet.Eventually(t, 20*time.Second, func() error {
		if alive(st.PID) {
			return fmt.Errorf("pid %d still runs", st.PID)
		}
		return nil
	})
	if _, err := os.Stat(filepath.Join(dir, stateFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the node did not stop cleanly: node.json is still there (%v); its output:\n%s", err, nodeOut.String())
	}
}
