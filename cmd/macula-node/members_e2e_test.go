package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/macula-io/macula/api"
	"github.com/macula-io/macula/internal/testnet"
)

const membersRealm = "io.e2e.members"

// startMemberNode starts macula-node run with the flags a user would type,
// and extra ones, on loopback.
func startMemberNode(t *testing.T, base, name string, env []string, bootstrap string, extra ...string) *runNode {
	t.Helper()
	dir := filepath.Join(base, name)
	args := []string{"run", "--realm", membersRealm, "--name", name, "--data-dir", dir,
		"--listen", "/ip4/127.0.0.1/udp/0/quic-v1", "--api", "127.0.0.1:0", "--http3", "off"}
	if bootstrap != "" {
		args = append(args, "--bootstrap", bootstrap)
	}
	args = append(args, extra...)
	n := &runNode{proc: startProc(t, name, env, args...), dir: dir}
	n.waitReady(t)
	return n
}

// memberView is what one node's API lists: name -> capabilities.
func memberView(ctx context.Context, c *api.Client) (map[string]string, error) {
	ms, err := c.RealmMembers(ctx, api.MembersQuery{})
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, m := range ms.Members {
		out[m.Name] = strings.Join(m.Capabilities, ",")
	}
	return out, nil
}

// untilAll polls the API of every node until want holds for its view and
// returns when the last one got there, measured from since. The polls run
// side by side every 10 ms, so the figure is not the sum of API round
// trips.
func untilAll(t *testing.T, nodes []*runNode, since time.Time, what string, want func(map[string]string) error) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var mu sync.Mutex
	var last time.Duration
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := api.NewClient(n.st.API)
			defer c.Close()
			for {
				v, err := memberView(ctx, c)
				if err == nil {
					err = want(v)
				}
				if err == nil {
					mu.Lock()
					last = max(last, time.Since(since))
					mu.Unlock()
					return
				}
				errs[i] = fmt.Errorf("%s: %w", n.name, err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(10 * time.Millisecond):
				}
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		for _, err := range errs {
			if err != nil {
				t.Errorf("%s: %v", what, err)
			}
		}
		t.FailNow()
	}
	return last
}

// hasExactly checks that a view lists exactly these members with these
// capabilities ("name=cap,cap").
func hasExactly(members ...string) func(map[string]string) error {
	want := map[string]string{}
	for _, m := range members {
		name, caps, _ := strings.Cut(m, "=")
		want[name] = caps
	}
	return func(v map[string]string) error {
		if len(v) != len(want) {
			return fmt.Errorf("members %v, want %v", v, want)
		}
		for k, c := range want {
			if got, ok := v[k]; !ok || got != c {
				return fmt.Errorf("members %v, want %v", v, want)
			}
		}
		return nil
	}
}

// TestMembersEndToEnd runs real macula-node processes with default flags:
// capabilities from the command line, the environment and the config file;
// a join, a change at run time, a clean stop and a kill -9, each seen by
// every other node. It prints how long each took to be seen everywhere
// (the test does not assert on it). MACULA_MEMBERS_E2E_NODES sets the size
// of the realm (default 4, at least 4) to measure a bigger one.
func TestMembersEndToEnd(t *testing.T) {
	t.Parallel()
	size := 4
	if v := os.Getenv("MACULA_MEMBERS_E2E_NODES"); v != "" {
		if _, err := fmt.Sscan(v, &size); err != nil || size < 4 {
			t.Fatalf("MACULA_MEMBERS_E2E_NODES=%q: want a number of nodes, at least 4", v)
		}
	}
	base := t.TempDir()
	n1 := startMemberNode(t, base, "n1", nil, "")
	boot := n1.st.Addrs[0]
	nodes := []*runNode{n1,
		startMemberNode(t, base, "n2", nil, boot, "--capabilities", "game"),
		startMemberNode(t, base, "n3", []string{"MACULA_CAPABILITIES=game,chat"}, boot),
	}
	want := []string{"n1=", "n2=game", "n3=chat,game"}
	for i := 4; i < size; i++ {
		name := fmt.Sprintf("n%d", i)
		nodes = append(nodes, startMemberNode(t, base, name, nil, boot, "--capabilities", "game"))
		want = append(want, name+"=game")
	}
	untilAll(t, nodes, time.Now(), "the first members", hasExactly(want...))
	cfg := filepath.Join(base, "last.toml")
	if err := os.WriteFile(cfg, []byte("capabilities = [\"payment\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n2, n3 := nodes[1], nodes[2]

	// A join: from the start of the process.
	start := time.Now()
	last := startMemberNode(t, base, fmt.Sprintf("n%d", size), nil, boot, "--config", cfg)
	ready := time.Since(start)
	nodes = append(nodes, last)
	want = append(want, last.name+"=payment")
	join := untilAll(t, nodes, start, "the last node joined", hasExactly(want...))
	t.Logf("join: seen by all %d nodes %v after the process started (node ready after %v)", len(nodes), join.Round(time.Millisecond), ready.Round(time.Millisecond))

	// A change at run time, through the CLI.
	start = time.Now()
	if r := runCmd(t, 20*time.Second, nil, "--api", n2.st.API, "capabilities", "set", "game,chat"); r.code != 0 || strings.TrimSpace(r.stdout) != "chat,game" {
		t.Fatalf("capabilities set: exit %d: %q %s", r.code, r.stdout, r.stderr)
	}
	want[1] = "n2=chat,game"
	change := untilAll(t, nodes, start, "n2's change", hasExactly(want...))
	t.Logf("capability change: seen by all %d nodes %v after the command started", len(nodes), change.Round(time.Millisecond))
	r := runCmd(t, 20*time.Second, nil, "--api", n1.st.API, "members", "--capability", "chat")
	// The names are the first column: the peer IDs in the last one are
	// base58 and may well contain "n4".
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n")[1:] {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	slices.Sort(names)
	if r.code != 0 || !slices.Equal(names, []string{"n2", "n3"}) {
		t.Fatalf("members --capability chat: exit %d, names %q:\n%s%s", r.code, names, r.stdout, r.stderr)
	}

	// A clean stop.
	start = time.Now()
	if code := n3.stop(t, syscall.SIGTERM, 20*time.Second); code != 0 {
		t.Fatalf("n3 exited %d", code)
	}
	stopped := time.Since(start)
	nodes = slices.DeleteFunc(nodes, func(n *runNode) bool { return n == n3 })
	want = slices.DeleteFunc(want, func(s string) bool { return strings.HasPrefix(s, "n3=") })
	leave := untilAll(t, nodes, start, "n3 left", hasExactly(want...))
	t.Logf("clean stop: seen by the %d others %v after SIGTERM (the process exited after %v)", len(nodes), leave.Round(time.Millisecond), stopped.Round(time.Millisecond))

	// A crash.
	start = time.Now()
	if err := last.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	nodes = slices.DeleteFunc(nodes, func(n *runNode) bool { return n == last })
	want = want[:len(want)-1]
	crash := untilAll(t, nodes, start, "the killed node failed", hasExactly(want...))
	t.Logf("kill -9: seen by the %d others %v after the kill", len(nodes), crash.Round(time.Millisecond))
	fmt.Fprintf(os.Stderr, "membership e2e (%d nodes, loopback, load %s): join %v, change %v, clean stop %v, kill -9 %v\n",
		size, loadavg(), join.Round(time.Millisecond), change.Round(time.Millisecond), leave.Round(time.Millisecond), crash.Round(time.Millisecond))
}

// loadavg is the machine's 1-minute load, for the figures printed.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

// TestMembersSecureEndToEnd: in a secure realm a node claims only what it
// was granted to serve: run refuses to start with another capability, the
// CLI's change is refused (exit 7), and the others see what was granted.
func TestMembersSecureEndToEnd(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	authKey, authority := secureRealmInit(t, base)
	gn := prepareSecureNode(t, base, authKey, "gamer", "serve "+rpcRealm+".game")
	pn := prepareSecureNode(t, base, authKey, "plain")
	g := gn.start(t, authority)
	p := pn.start(t, authority, g.st.Addrs[0])
	if r := runCmd(t, 20*time.Second, nil, "--api", g.st.API, "capabilities", "set", "game"); r.code != 0 {
		t.Fatalf("capabilities set game: exit %d: %s", r.code, r.stderr)
	}
	testnet.Eventually(t, 30*time.Second, func() error {
		var ms api.Members
		if err := cliJSON(t, p.st.API, &ms, "members"); err != nil {
			return err
		}
		for _, m := range ms.Members {
			if m.Name == "gamer" && slices.Equal(m.Capabilities, []string{"game"}) {
				return nil
			}
		}
		return fmt.Errorf("plain sees %+v", ms.Members)
	})
	r := runCmd(t, 20*time.Second, nil, "--api", g.st.API, "capabilities", "set", "game,chat")
	if r.code != exitUnauthorized || !strings.Contains(r.stderr, "serve") {
		t.Fatalf("capabilities set game,chat: exit %d: %s", r.code, r.stderr)
	}
	// A node started with a capability it may not serve does not start.
	p2 := prepareSecureNode(t, base, authKey, "plain2")
	args := []string{"run", "--realm", rpcRealm, "--name", "plain2", "--data-dir", p2.dir, "--authority", authority,
		"--listen", "/ip4/127.0.0.1/udp/0/quic-v1", "--api", "127.0.0.1:0", "--http3", "off", "--capabilities", "chat"}
	for _, f := range p2.files {
		args = append(args, "--ucan", f)
	}
	r = runCmd(t, 30*time.Second, nil, args...)
	if r.code == 0 || !strings.Contains(r.stderr, "capability \"chat\"") {
		t.Fatalf("run with an ungranted capability: exit %d: %s", r.code, r.stderr)
	}
}
