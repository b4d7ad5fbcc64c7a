//go:build unix

package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/macula-io/macula/internal/testnet"
)

// A node that is stopping finishes its clean stop when SIGTERM comes
// again: under go run the parent-death signal comes once for each of the
// dying go command's threads that held the node, and the second one used
// to kill it halfway (node.json left behind).
func TestSecondSIGTERMWhileStopping(t *testing.T) {
	n := startRunNode(t, "io.stop.test", "n1")
	n.waitReady(t)
	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	testnet.Eventually(t, 30*time.Second, func() error {
		if !strings.Contains(n.stderr.String(), "msg=stopping") {
			return errors.New("not stopping yet")
		}
		return nil
	})
	if !n.exited() {
		_ = n.cmd.Process.Signal(syscall.SIGTERM)
	}
	if code := n.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("exit %d (%v) after a second SIGTERM while stopping; stderr:\n%s", code, n.err, n.stderr.String())
	}
	if _, err := os.Stat(filepath.Join(n.dir, stateFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("node.json left behind (%v)", err)
	}
}
