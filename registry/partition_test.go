package registry

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/natlab"
)

// TestRegistryPartition runs three macula-node processes, each in a
// network namespace of the NAT lab (public hosts, no NAT), with the flags a
// user types (run --realm R --name N, and --bootstrap for two of them).
// It cuts node a off from b and c with nftables, makes registrations,
// joins, leaves, process ends and conflicting registrations on both sides
// during the cut, heals the cut, and checks every node's final state
// against the history of acknowledged operations: nothing that should
// survive is lost, nothing removed comes back, every conflict is settled
// (the earlier registration keeps the name) and its loser was told. It
// prints how long the nodes took to converge after the heal.
func TestRegistryPartition(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the partition test builds a lab and runs processes")
	}
	t.Parallel()
	lab := natlab.New(t, natlab.Options{Sites: []natlab.SiteSpec{}, NoSTUN: true})
	bin := buildMaculaNode(t)
	const realmName = "io.part.test"
	hosts := []*natlab.Host{lab.Relay(), lab.Relay2(), lab.Public()}
	names := []string{"a", "b", "c"}
	dirs := make([]string, 3)
	nodes := make([]*natlab.Proc, 3)
	start := time.Now()
	var boot string
	for i, h := range hosts {
		dirs[i] = filepath.Join(t.TempDir(), names[i])
		args := []string{bin, "run", "--realm", realmName, "--name", names[i], "--data-dir", dirs[i]}
		if i > 0 {
			args = append(args, "--bootstrap", boot)
		}
		nodes[i] = h.Start(t, args...)
		st := waitNodeJSON(t, nodes[i], dirs[i])
		if i == 0 {
			for _, a := range st.Addrs {
				if strings.Contains(a, "/ip4/"+h.Addr.String()+"/") {
					boot = a
				}
			}
			if boot == "" {
				t.Fatalf("a's addresses %v: none on %s", st.Addrs, h.Addr)
			}
		}
	}
	drivers := make([]*labDriver, 3)
	for i, h := range hosts {
		drivers[i] = startDriver(t, h, names[i])
	}
	a, b, c := drivers[0], drivers[1], drivers[2]
	for _, d := range drivers {
		waitFor(t, 60*time.Second, d.name+" sees 3 nodes", func() error {
			if n := d.must(t, "nodes").Nodes; n != 3 {
				return fmt.Errorf("%d nodes", n)
			}
			return nil
		})
	}
	t.Logf("3 nodes up and linked after %v", time.Since(start).Round(time.Millisecond))

	h := &history{addr: map[string]string{}}
	// Before the cut.
	h.do(t, a, "open a1")
	h.do(t, b, "open b1")
	h.do(t, c, "open c1")
	h.do(t, a, "reg a1 svc/a A")
	h.do(t, b, "reg b1 svc/b B")
	h.do(t, c, "reg c1 svc/c C")
	h.do(t, c, "reg c1 gone/c C")
	h.do(t, a, "join a1 grp/x a")
	h.do(t, b, "join b1 grp/x b")
	h.do(t, c, "join c1 grp/y c")
	conv := h.converge(t, drivers, 30*time.Second)
	t.Logf("before the cut: converged in %v", conv.Round(time.Millisecond))

	// Cut a off from b and c (both ways, in a's namespace).
	others := hosts[1].Addr.String() + ", " + hosts[2].Addr.String()
	rules := fmt.Sprintf(`table inet regcut {
  chain in { type filter hook input priority -10; policy accept; ip saddr { %s } drop; }
  chain out { type filter hook output priority -10; policy accept; ip daddr { %s } drop; }
}
`, others, others)
	rulesFile := filepath.Join(t.TempDir(), "cut.nft")
	if err := os.WriteFile(rulesFile, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := hosts[0].Exec(context.Background(), "nft", "-f", rulesFile); err != nil {
		t.Fatalf("cut: %v: %s", err, out)
	}
	cutAt := time.Now()
	// Each side's membership declares the other failed, and its entries go.
	waitFor(t, 60*time.Second, "the cut to be seen", func() error {
		if n := a.must(t, "nodes").Nodes; n != 1 {
			return fmt.Errorf("a sees %d nodes", n)
		}
		for _, d := range []*labDriver{b, c} {
			if n := d.must(t, "nodes").Nodes; n != 2 {
				return fmt.Errorf("%s sees %d nodes", d.name, n)
			}
		}
		if slices.ContainsFunc(a.must(t, "dump").Names, func(e driverEntry) bool { return e.Key == "svc/b" }) {
			return fmt.Errorf("a still holds svc/b")
		}
		if slices.ContainsFunc(b.must(t, "dump").Names, func(e driverEntry) bool { return e.Key == "svc/a" }) {
			return fmt.Errorf("b still holds svc/a")
		}
		return nil
	})
	t.Logf("the cut was seen by the membership after %v", time.Since(cutAt).Round(time.Millisecond))
	// Writes go on while the connections are still there, unusable...
	h.do(t, a, "open a0")
	h.do(t, a, "reg a0 early/a a")
	// ... and the cut lasts until they are closed (the nodes' liveness
	// pings), so that the heal needs new connections.
	waitFor(t, 60*time.Second, "the connections across the cut to close", func() error {
		if n := a.must(t, "peers").Nodes; n != 0 {
			return fmt.Errorf("a has %d peers", n)
		}
		return nil
	})
	t.Logf("the connections across the cut were closed after %v", time.Since(cutAt).Round(time.Millisecond))

	// During the cut, on both sides. both/1 is registered first on a's
	// side, both/2 first on b's: each side must keep one.
	h.do(t, a, "open a2")
	h.do(t, b, "open b2")
	h.do(t, c, "open c2")
	h.do(t, a, "reg a2 both/1 a")
	h.do(t, b, "reg b2 both/2 b")
	time.Sleep(20 * time.Millisecond) // later stamps (1 ms resolution), and a clear order
	h.do(t, b, "reg b2 both/1 b")
	h.do(t, a, "reg a2 both/2 a")
	h.do(t, a, "reg a2 cut/a a")
	h.do(t, b, "reg b2 cut/b b")
	h.do(t, a, "join a2 grp/x a2")
	h.do(t, a, "leave a1 grp/x")
	h.do(t, b, "leave b1 grp/x")
	h.do(t, c, "join c2 grp/x c2")
	h.do(t, c, "unreg c1 gone/c")
	h.do(t, c, "reg c2 tmp/c c")
	h.do(t, c, "join c2 grp/tmp c")
	h.do(t, c, "open c3")
	h.do(t, c, "reg c3 short/c c")
	h.do(t, c, "close c3")
	h.do(t, a, "open a3")
	h.do(t, a, "join a3 grp/y a3")
	h.do(t, a, "close a3")

	// Heal, and measure until every node holds what the history says.
	if out, err := hosts[0].Exec(context.Background(), "nft", "delete", "table", "inet", "regcut"); err != nil {
		t.Fatalf("heal: %v: %s", err, out)
	}
	healed := time.Now()
	conv = h.converge(t, drivers, 90*time.Second)
	t.Logf("PARTITION: healed after a cut of %v; all 3 nodes converged to the expected state %v after the heal (%d operations acknowledged, %d conflicts)",
		healed.Sub(cutAt).Round(time.Millisecond), conv.Round(time.Millisecond), len(h.ops), len(h.conflicts()))
}

// history is the operations the drivers acknowledged, in order.
type history struct {
	ops  []histOp
	addr map[string]string // process name -> address
}

type histOp struct {
	node string
	verb string
	proc string
	key  string
	ok   bool
	at   time.Time
}

// do runs a command on a driver and records it; every command of the test
// must succeed.
func (h *history) do(t *testing.T, d *labDriver, cmd string) {
	t.Helper()
	a := d.run(t, cmd)
	f := strings.Fields(cmd)
	op := histOp{node: d.name, verb: f[0], proc: f[1], ok: a.OK, at: time.Now()}
	if len(f) > 2 {
		op.key = f[2]
	}
	if !a.OK {
		t.Fatalf("%s: %s: %s %s", d.name, cmd, a.Code, a.Err)
	}
	if f[0] == "open" {
		h.addr[f[1]] = a.Addr
	}
	h.ops = append(h.ops, op)
}

// expected computes, from the acknowledged operations, the names (key ->
// candidates, earliest first) and members (key -> processes) that must
// survive.
func (h *history) expected() (names map[string][]string, members map[string]map[string]bool) {
	names, members = map[string][]string{}, map[string]map[string]bool{}
	for _, o := range h.ops {
		if !o.ok {
			continue
		}
		switch o.verb {
		case "reg":
			if !slices.Contains(names[o.key], o.proc) {
				names[o.key] = append(names[o.key], o.proc)
			}
		case "unreg":
			names[o.key] = slices.DeleteFunc(names[o.key], func(p string) bool { return p == o.proc })
		case "join":
			if members[o.key] == nil {
				members[o.key] = map[string]bool{}
			}
			members[o.key][o.proc] = true
		case "leave":
			delete(members[o.key], o.proc)
		case "close":
			for k := range names {
				names[k] = slices.DeleteFunc(names[k], func(p string) bool { return p == o.proc })
			}
			for k := range members {
				delete(members[k], o.proc)
			}
		}
	}
	for k, v := range names {
		if len(v) == 0 {
			delete(names, k)
		}
	}
	for k, v := range members {
		if len(v) == 0 {
			delete(members, k)
		}
	}
	return names, members
}

// conflicts returns the keys registered by more than one surviving
// process.
func (h *history) conflicts() []string {
	names, _ := h.expected()
	var out []string
	for k, v := range names {
		if len(v) > 1 {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// check compares one node's state and the losses reported with the
// history: every surviving name with its owner (for a contested name,
// the earliest registration), every member, nothing else; and every
// contested name's losers told who won.
func (h *history) check(dump driverAnswer, losses []driverLoss) error {
	names, members := h.expected()
	want := map[string]string{}
	for k, cands := range names {
		want[k] = h.addr[cands[0]]
	}
	got := map[string]string{}
	for _, e := range dump.Names {
		got[e.Key] = e.Addr
	}
	for k, w := range want {
		if got[k] != w {
			return fmt.Errorf("name %s: %q, want %q (candidates %v)", k, got[k], w, names[k])
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			return fmt.Errorf("name %s (%s) should be gone", k, got[k])
		}
	}
	gotM := map[string]bool{}
	for _, m := range dump.Members {
		gotM[m.Key+" "+m.Addr] = true
	}
	wantM := map[string]bool{}
	for k, ps := range members {
		for p := range ps {
			wantM[k+" "+h.addr[p]] = true
		}
	}
	for m := range wantM {
		if !gotM[m] {
			return fmt.Errorf("member %s missing", m)
		}
	}
	for m := range gotM {
		if !wantM[m] {
			return fmt.Errorf("member %s should be gone", m)
		}
	}
	for k, cands := range names {
		for _, loser := range cands[1:] {
			if !slices.ContainsFunc(losses, func(l driverLoss) bool {
				return l.Proc == loser && l.Key == k && l.Winner == h.addr[cands[0]]
			}) {
				return fmt.Errorf("%s lost %s to %s but was not told (losses %+v)", loser, k, cands[0], losses)
			}
		}
	}
	return nil
}

// converge waits until every driver's node holds the expected state, and
// returns how long that took.
func (h *history) converge(t *testing.T, drivers []*labDriver, wait time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var last error
	for time.Since(start) < wait {
		var losses []driverLoss
		for _, d := range drivers {
			losses = append(losses, d.must(t, "losses").Losses...)
		}
		last = nil
		for _, d := range drivers {
			if err := h.check(d.must(t, "dump"), losses); err != nil {
				last = fmt.Errorf("%s: %w", d.name, err)
				break
			}
		}
		if last == nil {
			return time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, d := range drivers {
		t.Logf("%s holds %+v", d.name, d.must(t, "dump"))
	}
	t.Fatalf("the nodes did not converge within %v: %v", wait, last)
	return 0
}

// labDriver is a driver process (driver_test.go) in a lab namespace.
type labDriver struct {
	name  string
	p     *natlab.Proc
	in    *os.File
	lines chan string
}

func startDriver(t *testing.T, h *natlab.Host, name string) *labDriver {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := h.Command(context.Background(), exe)
	cmd.Env = append(os.Environ(), "REGISTRY_DRIVER=1", "REGISTRY_DRIVER_API=127.0.0.1:7401")
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdin, cmd.Stdout = inR, outW
	d := &labDriver{name: name, in: inW, lines: make(chan string, 16)}
	d.p = h.StartCommand(t, cmd)
	inR.Close()
	outW.Close()
	go func() {
		defer close(d.lines)
		sc := bufio.NewScanner(outR)
		sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
		for sc.Scan() {
			d.lines <- sc.Text()
		}
		outR.Close()
	}()
	t.Cleanup(func() {
		fmt.Fprintln(d.in, "quit")
		d.in.Close()
	})
	return d
}

// run sends a command and returns its answer.
func (d *labDriver) run(t *testing.T, cmd string) driverAnswer {
	t.Helper()
	if _, err := fmt.Fprintln(d.in, cmd); err != nil {
		t.Fatalf("%s: %s: %v", d.name, cmd, err)
	}
	select {
	case line, ok := <-d.lines:
		if !ok {
			t.Fatalf("%s: the driver exited: %s", d.name, d.p.Output())
		}
		var a driverAnswer
		if err := json.Unmarshal([]byte(line), &a); err != nil {
			t.Fatalf("%s: %s: answer %q: %v", d.name, cmd, line, err)
		}
		return a
	case <-time.After(60 * time.Second):
		t.Fatalf("%s: %s: no answer in 60s", d.name, cmd)
	}
	return driverAnswer{}
}

// must runs a query that must succeed.
func (d *labDriver) must(t *testing.T, cmd string) driverAnswer {
	t.Helper()
	a := d.run(t, cmd)
	if !a.OK {
		t.Fatalf("%s: %s: %s %s", d.name, cmd, a.Code, a.Err)
	}
	return a
}

// waitFor polls f until it returns nil, for at most wait.
func waitFor(t *testing.T, wait time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, wait, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// nodeJSON is the part of macula-node run's node.json the test reads.
type nodeJSON struct {
	Addrs []string `json:"addrs"`
	API   string   `json:"api"`
	PID   int      `json:"pid"`
}

// waitNodeJSON waits until the node wrote its node.json.
func waitNodeJSON(t *testing.T, p *natlab.Proc, dir string) nodeJSON {
	t.Helper()
	var st nodeJSON
	waitFor(t, 60*time.Second, "node.json in "+dir, func() error {
		select {
		case <-p.Done():
			t.Fatalf("macula-node exited: %s", p.Output())
		default:
		}
		b, err := os.ReadFile(filepath.Join(dir, "node.json"))
		if err != nil {
			return err
		}
		return json.Unmarshal(b, &st)
	})
	return st
}

// buildMaculaNode builds the binary, or takes REGISTRY_MACULA_NODE.
func buildMaculaNode(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("REGISTRY_MACULA_NODE"); p != "" {
		return p
	}
	_, file, _, _ := runtime.Caller(0)
	bin := filepath.Join(t.TempDir(), "macula-node")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if out, err := testnet.BuildNode(ctx, filepath.Dir(filepath.Dir(file)), "./cmd/macula-node", bin); err != nil {
		t.Fatalf("go build ./cmd/macula-node: %v\n%s", err, out)
	}
	return bin
}
