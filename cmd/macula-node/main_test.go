package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/macula-io/macula/internal/testnet"
)

// binPath is the macula-node binary that TestMain builds for the tests that
// run it as a process.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "macula-node-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "macula-node")
	if out, err := testnet.BuildNode(context.Background(), ".", ".", binPath); err != nil {
		fmt.Fprintf(os.Stderr, "building macula-node: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// childEnv is the environment of a macula-node process: ours without any
// MACULA_* or GOLOG_* variable, HOME in a temporary directory (so that a
// default data directory never lands in the real one), plus extra.
func childEnv(t *testing.T, extra ...string) []string {
	t.Helper()
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "MACULA_") || strings.HasPrefix(kv, "GOLOG_") || strings.HasPrefix(kv, "HOME=") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "HOME="+t.TempDir())
	return append(env, extra...)
}

// syncBuffer is a bytes.Buffer safe for a process to write while the test
// reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// proc is a macula-node process started by a test. It is killed in
// t.Cleanup if the test did not stop it.
type proc struct {
	name           string
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	done           chan struct{} // closed when the process has exited
	err            error         // of Wait; set before done is closed
}

// procLimit bounds the life of any process a test starts.
const procLimit = 2 * time.Minute

func startProc(t *testing.T, name string, env []string, args ...string) *proc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), procLimit)
	p := &proc{name: name, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.CommandContext(ctx, binPath, args...)
	p.cmd.Env = childEnv(t, env...)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("%s: start: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		cancel()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s stderr:\n%s", p.name, p.stderr.String())
		}
	})
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends sig and waits for the process to exit; it returns the exit
// code, or fails the test if the process did not exit in time.
func (p *proc) stop(t *testing.T, sig os.Signal, timeout time.Duration) int {
	t.Helper()
	if !p.exited() {
		if err := p.cmd.Process.Signal(sig); err != nil {
			t.Errorf("%s: signal: %v", p.name, err)
		}
	}
	return p.wait(t, timeout)
}

// wait waits for the process to exit and returns its exit code, or fails
// the test if it did not exit within timeout.
func (p *proc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("%s did not exit within %v", p.name, timeout)
	}
	return exitCode(p.err)
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return -1
}

// result is what a short-lived command printed and how it exited.
type result struct {
	stdout, stderr string
	code           int
}

// runCmd runs macula-node with args to the end (at most timeout).
func runCmd(t *testing.T, timeout time.Duration, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	cmd.Env = childEnv(t, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("macula-node %s: still running after %v; stderr:\n%s", strings.Join(args, " "), timeout, stderr.String())
	}
	return result{stdout: stdout.String(), stderr: stderr.String(), code: exitCode(err)}
}

// cliJSON runs a client command with --json against api and decodes its
// output into out.
func cliJSON(t *testing.T, api string, out any, args ...string) error {
	t.Helper()
	args = append([]string{"--api", api}, args...)
	args = append(args, "--json")
	r := runCmd(t, 30*time.Second, nil, args...)
	if r.code != 0 {
		return fmt.Errorf("macula-node %s: exit %d: %s", strings.Join(args, " "), r.code, strings.TrimSpace(r.stderr))
	}
	if err := json.Unmarshal([]byte(r.stdout), out); err != nil {
		return fmt.Errorf("macula-node %s: %v in %q", strings.Join(args, " "), err, r.stdout)
	}
	return nil
}
