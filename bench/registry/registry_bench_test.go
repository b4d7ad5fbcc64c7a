// Package registrybench measures package registry (issue 15, "Benchmark")
// beside its Elixir original, phoenixframework/group 0.2.1, in one run:
//
//	cd bench && go test -run '^$' -bench Registry -benchtime 1x -timeout 60m ./registry/
//	# flags after the package: -args -dur 3s -workers 2 -replicate 100000
//	# the original: GROUP_SRC=/path/to/group (a checkout of v0.2.1) and elixir on PATH
//
// Cases, the same on both sides (group_bench.exs is the Elixir side):
//
//   - lookup-100k: -workers goroutines (Erlang processes) look up 100,000
//     registered names at random for -dur;
//   - lookup-hot: the same, one name;
//   - register-1: one process registers new names, one after the other;
//   - register-parallel: -workers processes register new names at once;
//   - join+leave: one process joins and leaves a group (two writes);
//   - members-10k: one reader lists a group of 10,000 members;
//   - replicate-100k: one process on one node of three registers 100,000
//     names; the time until both other nodes hold all of them. Ours: three
//     node.New nodes (membership, the registry's links) over loopback QUIC;
//     the original: three BEAM VMs over Erlang distribution (TCP) on
//     loopback.
//
// Group is compiled from GROUP_SRC with elixirc (Debian 12's Elixir 1.14
// needs two one-line changes that keep its meaning: a pinned size in a
// binary match, Process.alias -> :erlang.alias; the benchmark makes them in
// a copy). Without GROUP_SRC or elixir, only our side runs. It prints a
// table with both sides, the ratios and the load average (the machine is
// shared: compare ratios, not absolute figures, between runs).
package registrybench

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/node"
	"github.com/macula-io/macula/registry"
)

var (
	flagDur       = flag.Duration("dur", 3*time.Second, "measured duration of each local case")
	flagWorkers   = flag.Int("workers", runtime.GOMAXPROCS(0), "concurrent readers and writers of the parallel cases")
	flagReplicate = flag.Int("replicate", 100_000, "names written on one node in the replication case")
)

const benchRealm = "io.bench.registry"

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type result struct {
	name, unit       string
	ours, peer       float64 // peer 0: not measured
	oursCPU, peerCPU float64 // CPU µs per operation (the whole process; for replication, all three nodes, per name)
}

func BenchmarkRegistry(b *testing.B) {
	if b.N > 1 {
		b.Skip("measures inside one iteration: run with -benchtime 1x")
	}
	load0 := loadAvg()
	res := ours(b)
	peer, why := group(b)
	for i := range res {
		res[i].peer, res[i].peerCPU = peer[res[i].name][0], peer[res[i].name][1]
	}
	load1 := loadAvg()
	fmt.Printf("\nregistry beside phoenixframework/group 0.2.1: GOMAXPROCS=%d, workers %d, %v per local case, load average %s -> %s\n",
		runtime.GOMAXPROCS(0), *flagWorkers, *flagDur, load0, load1)
	if why != "" {
		fmt.Printf("the original was not run: %s\n", why)
	}
	fmt.Printf("%-18s %10s %10s %7s %12s %12s %7s  %s\n", "case", "Macula", "group", "ratio", "CPU/op ours", "CPU/op group", "ratio", "unit")
	for _, r := range res {
		ratio, pf, cratio, pc, oc := "-", "-", "-", "-", "-"
		if r.peer > 0 {
			pf = human(r.peer)
			ratio = fmt.Sprintf("%.2fx", r.ours/r.peer)
			if r.unit == "ms" { // lower is better: the ratio says how much faster
				ratio = fmt.Sprintf("%.2fx", r.peer/r.ours)
			}
		}
		if r.oursCPU > 0 {
			oc = fmt.Sprintf("%.3f µs", r.oursCPU)
		}
		if r.peerCPU > 0 && r.oursCPU > 0 {
			pc = fmt.Sprintf("%.3f µs", r.peerCPU)
			cratio = fmt.Sprintf("%.2fx", r.peerCPU/r.oursCPU)
		}
		fmt.Printf("%-18s %10s %10s %7s %12s %12s %7s  %s\n", r.name, human(r.ours), pf, ratio, oc, pc, cratio, r.unit)
	}
	fmt.Println("(ratios: how many times Macula's figure is better; CPU/op: CPU time of the whole process (VM) per operation, which load changes less than rates)")
}

func human(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.1fk", v/1e3)
	default:
		return fmt.Sprintf("%.1f", v)
	}
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

// cpuTime is the CPU time of this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// parallel runs workers goroutines calling op(worker, i) for the duration
// and returns calls per second and CPU µs per call.
func parallel(workers int, dur time.Duration, op func(w, i int)) (float64, float64) {
	runtime.GC()
	c0 := cpuTime()
	var stop atomic.Bool
	var total atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			n := 0
			for ; n%64 != 0 || !stop.Load(); n++ {
				op(w, n)
			}
			total.Add(int64(n))
		})
	}
	time.Sleep(dur)
	stop.Store(true)
	wg.Wait()
	n := float64(total.Load())
	return n / time.Since(start).Seconds(), float64((cpuTime() - c0).Microseconds()) / n
}

// res names a figure of ours: res(name, unit)(rate, cpu).
func res(name, unit string) func(rate, cpu float64) result {
	return func(rate, cpu float64) result { return result{name: name, unit: unit, ours: rate, oursCPU: cpu} }
}

func ours(b *testing.B) []result {
	ns := startNodes(b, 3)
	r := ns[0].reg
	ctx := context.Background()
	spawn := func() *registry.Process {
		p, err := r.Spawn(ctx, registry.ProcessConfig{Mailbox: 16})
		if err != nil {
			b.Fatal(err)
		}
		return p
	}
	meta := []byte(`{"v":1}`)
	var out []result

	// The local cases run on a registry of its own, without peers, as the
	// original's run on one VM.
	lr, err := registry.New(testnet.Host(b), nil, registry.Config{Realm: benchRealm + ".local", Logger: quiet(), MaxLocalEntries: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	defer lr.Close()
	r = lr
	const n = 100_000
	keys := make([]string, n)
	holder := spawn()
	for i := range keys {
		keys[i] = "user/" + strconv.Itoa(i)
		if err := holder.Register(keys[i], meta); err != nil {
			b.Fatal(err)
		}
	}
	out = append(out, res("lookup-100k", "lookups/s")(parallel(*flagWorkers, *flagDur, func(w, i int) {
		if _, err := r.Lookup(keys[(w*7919+i)%n]); err != nil {
			panic(err)
		}
	})))
	out = append(out, res("lookup-hot", "lookups/s")(parallel(*flagWorkers, *flagDur, func(w, i int) {
		if _, err := r.Lookup(keys[0]); err != nil {
			panic(err)
		}
	})))
	one := spawn()
	out = append(out, res("register-1", "writes/s")(parallel(1, *flagDur, func(_, i int) {
		if err := one.Register("one/"+strconv.Itoa(i), meta); err != nil {
			panic(err)
		}
	})))
	ws := make([]*registry.Process, *flagWorkers)
	for i := range ws {
		ws[i] = spawn()
	}
	out = append(out, res("register-parallel", "writes/s")(parallel(*flagWorkers, *flagDur, func(w, i int) {
		if err := ws[w].Register("w"+strconv.Itoa(w)+"/"+strconv.Itoa(i), meta); err != nil {
			panic(err)
		}
	})))
	jl := spawn()
	rate, cpu := parallel(1, *flagDur, func(_, _ int) {
		if err := jl.Join("room/1", nil); err != nil {
			panic(err)
		}
		if err := jl.Leave("room/1"); err != nil {
			panic(err)
		}
	})
	out = append(out, res("join+leave", "writes/s")(2*rate, cpu/2))
	const m = 10_000
	for range m {
		if err := spawn().Join("big/group", []byte(`{"role":"m"}`)); err != nil {
			b.Fatal(err)
		}
	}
	out = append(out, res("members-10k", "reads/s")(parallel(1, *flagDur, func(_, _ int) {
		if ms, _ := r.Members("big/group"); len(ms) != m {
			panic(len(ms))
		}
	})))
	lr.Close()

	// Replication across three nodes.
	total := *flagReplicate
	w, err := ns[0].reg.Spawn(ctx, registry.ProcessConfig{})
	if err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	c0 := cpuTime()
	start := time.Now()
	for i := range total {
		if err := w.Register("it/"+strconv.Itoa(i), meta); err != nil {
			b.Fatal(err)
		}
	}
	written := time.Since(start)
	deadline := time.Now().Add(10 * time.Minute)
	for ns[1].reg.Stats().Names < total || ns[2].reg.Stats().Names < total {
		if time.Now().After(deadline) {
			b.Fatalf("after 10 min: %d and %d names", ns[1].reg.Stats().Names, ns[2].reg.Stats().Names)
		}
		time.Sleep(5 * time.Millisecond)
	}
	visible := time.Since(start)
	out = append(out,
		res("replicate-written", "ms")(float64(written.Microseconds())/1000, 0),
		res("replicate-visible", "ms")(float64(visible.Microseconds())/1000, float64((cpuTime()-c0).Microseconds())/float64(total)))
	return out
}

type benchNode struct {
	n   *node.Node
	reg *registry.Registry
}

// startNodes starts n nodes on loopback (the first is the others'
// bootstrap) with a registry each, and waits until every registry knows
// every node.
func startNodes(b *testing.B, n int) []*benchNode {
	var out []*benchNode
	var boot []string
	for i := range n {
		c := node.DefaultConfig(benchRealm, "n"+strconv.Itoa(i))
		c.ListenAddrs = []string{"/ip4/127.0.0.1/udp/0/quic-v1"}
		c.Bootstrap = boot
		c.Logger = quiet()
		nd, err := node.New(c)
		if err != nil {
			b.Fatal(err)
		}
		reg, err := registry.Start(nd, registry.Config{Logger: quiet(), MaxLocalEntries: 1 << 30, MaxOriginEntries: 1 << 30})
		if err != nil {
			nd.Close()
			b.Fatal(err)
		}
		bn := &benchNode{n: nd, reg: reg}
		b.Cleanup(func() { bn.reg.Close(); bn.n.Close() })
		out = append(out, bn)
		if i == 0 {
			for _, a := range nd.Addrs() {
				boot = append(boot, a.String())
			}
		}
	}
	deadline := time.Now().Add(2 * time.Minute)
	for _, bn := range out {
		for {
			ids, _ := bn.reg.Nodes()
			if len(ids) == n {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("a registry knows %d of %d nodes after 2 min", len(ids), n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return out
}

// group runs group_bench.exs on the original and returns its figures by
// case, or why it did not run.
func group(b *testing.B) (map[string][2]float64, string) {
	src := os.Getenv("GROUP_SRC")
	if src == "" {
		return nil, "GROUP_SRC is not set (a checkout of github.com/phoenixframework/group v0.2.1)"
	}
	if _, err := exec.LookPath("elixir"); err != nil {
		return nil, "elixir is not on PATH (apt-get install elixir)"
	}
	ebin, err := compileGroup(b, src)
	if err != nil {
		return nil, err.Error()
	}
	script, err := filepath.Abs("group_bench.exs")
	if err != nil {
		return nil, err.Error()
	}
	out := map[string][2]float64{}
	cookie := "macula-bench-" + strconv.Itoa(os.Getpid())
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	run := func(name string, args ...string) error {
		all := append([]string{"--erl", noSpin, "--name", name + "@127.0.0.1", "--cookie", cookie, "-pa", ebin, script}, args...)
		cmd := exec.CommandContext(ctx, "elixir", all...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		so, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("elixir %s: %v: %s", strings.Join(args, " "), err, stderr.String())
		}
		sc := bufio.NewScanner(bytes.NewReader(so))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) == 5 && f[0] == "case" {
				v, _ := strconv.ParseFloat(f[2], 64)
				c, _ := strconv.ParseFloat(f[4], 64)
				out[f[1]] = [2]float64{v, c}
			}
		}
		return nil
	}
	if err := run("local"+strconv.Itoa(os.Getpid()), "local", strconv.Itoa(int(dur().Milliseconds())), strconv.Itoa(*flagWorkers)); err != nil {
		return out, err.Error()
	}
	// Two replicas, then the coordinator that writes.
	var reps []string
	for i := 1; i <= 2; i++ {
		name := fmt.Sprintf("r%d_%d", i, os.Getpid())
		cmd := exec.CommandContext(ctx, "elixir", "--erl", noSpin, "--name", name+"@127.0.0.1", "--cookie", cookie, "-pa", ebin, script, "replica")
		if err := cmd.Start(); err != nil {
			return out, err.Error()
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		reps = append(reps, name+"@127.0.0.1")
	}
	if err := run("c"+strconv.Itoa(os.Getpid()), append([]string{"replicate", strconv.Itoa(*flagReplicate)}, reps...)...); err != nil {
		return out, err.Error()
	}
	return out, ""
}

func dur() time.Duration { return *flagDur }

// noSpin keeps idle BEAM schedulers from busy-waiting, which would count as
// CPU time (and take CPU from a loaded machine).
const noSpin = "+sbwt none +sbwtdcpu none +sbwtdio none"

// compileGroup compiles GROUP_SRC/lib into a temporary directory, with the
// changes that Elixir 1.14 needs, and returns the directory of the .beam
// files.
func compileGroup(b *testing.B, src string) (string, error) {
	dir := b.TempDir()
	lib := filepath.Join(dir, "lib")
	err := filepath.WalkDir(filepath.Join(src, "lib"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(filepath.Join(src, "lib"), p)
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		s := strings.ReplaceAll(string(data), "binary-size(^size)", "binary-size(size)")
		s = strings.ReplaceAll(s, "Process.alias(", ":erlang.alias(")
		s = strings.ReplaceAll(s, "Process.unalias(", ":erlang.unalias(")
		if err := os.MkdirAll(filepath.Dir(filepath.Join(lib, rel)), 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(lib, rel), []byte(s), 0o644)
	})
	if err != nil {
		return "", fmt.Errorf("copying %s/lib: %v", src, err)
	}
	ebin := filepath.Join(dir, "ebin")
	if err := os.MkdirAll(ebin, 0o755); err != nil {
		return "", err
	}
	if out, err := exec.Command("elixirc", "-o", ebin, lib).CombinedOutput(); err != nil {
		return "", fmt.Errorf("elixirc: %v: %s", err, out)
	}
	return ebin, nil
}
