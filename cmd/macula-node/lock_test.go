package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDataDirLock: a second run on a data directory in use is refused with
// one line naming the directory and the holder's pid, and leaves the first
// node alone (its node.json, its API); once the first stops, cleanly or
// killed, the directory is free again.
func TestDataDirLock(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "n1")
	first := startRunNodeIn(t, dir, "io.lock.test", "n1")
	first.waitReady(t)
	before, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		t.Fatal(err)
	}

	second := runCmd(t, 30*time.Second, nil, "run", "--realm", "io.lock.test", "--name", "n1", "--data-dir", dir,
		"--listen", "/ip4/127.0.0.1/udp/0/quic-v1", "--api", "127.0.0.1:0", "--http3", "off")
	want := fmt.Sprintf("macula-node: data directory in use: %s is used by another macula-node (pid %d); give each node its own --data-dir\n",
		dir, first.cmd.Process.Pid)
	if second.code != exitError || second.stderr != want {
		t.Errorf("second run on the same data dir: exit %d, stderr %q; want exit %d, %q", second.code, second.stderr, exitError, want)
	}
	after, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil || string(after) != string(before) {
		t.Errorf("the first node's node.json after the refused start: %q (%v)", after, err)
	}
	var info struct {
		PeerID string `json:"peer_id"`
	}
	if err := cliJSON(t, first.st.API, &info, "id"); err != nil || info.PeerID != first.st.PeerID {
		t.Errorf("the first node's API after the refused start: %+v (%v)", info, err)
	}

	// A clean stop frees the directory, and so does a kill.
	if code := first.stop(t, syscall.SIGTERM, 20*time.Second); code != 0 {
		t.Fatalf("first node: exit %d", code)
	}
	again := startRunNodeIn(t, dir, "io.lock.test", "n1")
	again.waitReady(t)
	if again.st.PeerID != first.st.PeerID {
		t.Errorf("restarted in the same directory with another identity: %s, was %s", again.st.PeerID, first.st.PeerID)
	}
	again.stop(t, syscall.SIGKILL, 20*time.Second)
	third := startRunNodeIn(t, dir, "io.lock.test", "n1")
	third.waitReady(t) // waits past the node.json the killed node left
	if b, err := os.ReadFile(filepath.Join(dir, lockFile)); err != nil || strings.TrimSpace(string(b)) != fmt.Sprint(third.cmd.Process.Pid) {
		t.Errorf("lock file %q (%v), want the pid %d", b, err, third.cmd.Process.Pid)
	}
}

// TestDataDirLockInProcess: the lock holds against another open of the same
// file in one process too (flock belongs to the open file), and release
// frees it.
func TestDataDirLockInProcess(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	l1, err := lockDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("data dir made with %v (%v), want 0700", fi.Mode(), err)
	}
	if _, err := lockDataDir(dir); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("(pid %d)", os.Getpid())) {
		t.Fatalf("second lock: %v", err)
	}
	l1.release()
	l1.release() // twice is fine
	l2, err := lockDataDir(dir)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	l2.release()
}
