// Command realm starts a realm of N real macula-node run processes on
// loopback and measures what a realm of that size costs and how fast it
// answers: start time, peers per node, the idle CPU of the realm's own
// processes (per node and in total, from /proc/<pid>/stat), resident memory
// per node, DHT lookups of keys provided on other nodes (p50/p90/p99, the
// first lookup of a key on a node and the same lookup again), and RPC calls
// between random pairs of nodes (p50/p99). docs/benchmarks.md records its
// figures (issue 17).
//
//	make build                              # bin/macula-node, as users build it
//	go run ./scripts/realm -n 50            # make realm (N=50)
//
// Each node is started with the flags a user types (--realm, --name,
// --bootstrap through node 0 and one node started earlier; -wave nodes at
// once), plus what 50 nodes on
// one machine need: a loopback listen address and API port of its own, its
// own data directory, and no HTTP/3 API. -keep leaves the realm running
// (until Ctrl-C) for profiling: a binary built with -tags pprof serves
// net/http/pprof on MACULA_PPROF, which -pprof sets for one node.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/macula-io/macula/api"
)

type options struct {
	n        int
	bin      string
	realm    string
	settle   time.Duration
	idle     time.Duration
	lookups  int
	calls    int
	keep     bool
	pprof    int
	pprofAt  string
	dir      string
	extra    string
	jsonOut  string
	converge time.Duration
	startMax time.Duration
	wave     int
	// The soak (soak.go).
	soak      time.Duration
	killEvery time.Duration
	stopEvery time.Duration
}

// nodeProc is one running macula-node process.
type nodeProc struct {
	i      int
	name   string
	dir    string
	cmd    *exec.Cmd
	api    *api.Client
	state  nodeState
	exited chan struct{}
}

// nodeState is the part of node.json the tool reads.
type nodeState struct {
	PeerID string   `json:"peer_id"`
	Addrs  []string `json:"addrs"`
	API    string   `json:"api"`
	PID    int      `json:"pid"`
}

func main() {
	var o options
	flag.IntVar(&o.n, "n", 50, "number of nodes")
	flag.StringVar(&o.bin, "bin", "bin/macula-node", "the macula-node binary")
	flag.StringVar(&o.realm, "realm", "io.acme.bench", "realm name")
	flag.DurationVar(&o.settle, "settle", 20*time.Second, "wait after the realm converged before measuring idle CPU")
	flag.DurationVar(&o.idle, "idle", 10*time.Second, "idle CPU measuring window")
	flag.IntVar(&o.lookups, "lookups", 200, "DHT lookups to time (each a key provided on another node)")
	flag.IntVar(&o.calls, "calls", 300, "RPC calls to time (each between a random pair)")
	flag.BoolVar(&o.keep, "keep", false, "leave the realm running after measuring, until Ctrl-C")
	flag.IntVar(&o.pprof, "pprof", -1, "index of a node to start with MACULA_PPROF (needs a binary built with -tags pprof)")
	flag.StringVar(&o.pprofAt, "pprof-addr", "127.0.0.1:6060", "address of that node's pprof server")
	flag.StringVar(&o.dir, "dir", "", "directory for the nodes' data and logs (default: a new temporary one, removed at the end)")
	flag.StringVar(&o.extra, "flags", "", "extra flags for every node, space separated (a second configuration; the default run uses none)")
	flag.StringVar(&o.jsonOut, "json", "", "also write the figures as JSON to this file")
	flag.DurationVar(&o.converge, "converge", 3*time.Minute, "give up when the realm has not converged by then")
	flag.IntVar(&o.wave, "wave", 5, "nodes started at once")
	flag.DurationVar(&o.soak, "soak", 0, "instead of measuring the idle realm, run the soak for this long (load and faults; see soak.go)")
	flag.DurationVar(&o.killEvery, "kill-every", 30*time.Second, "soak: kill -9 a random node this often (it comes back 3 s later)")
	flag.DurationVar(&o.stopEvery, "stop-every", 150*time.Second, "soak: SIGSTOP a random node for 20 s this often")
	flag.DurationVar(&o.startMax, "start-timeout", 2*time.Minute, "give up when a node has not written its node.json by then")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "realm:", err)
		os.Exit(1)
	}
}

// report is what the tool measured (also written with -json).
type report struct {
	Nodes         int       `json:"nodes"`
	When          time.Time `json:"when"`
	LoadBefore    string    `json:"load_before"`
	LoadAfter     string    `json:"load_after"`
	StartReady    float64   `json:"start_ready_s"`    // every node.json written
	StartConverge float64   `json:"start_converge_s"` // every node lists N members
	Converged     bool      `json:"converged"`
	Peers         []int     `json:"peers"`
	Members       []int     `json:"members"`
	IdleCPU       []float64 `json:"idle_cpu_pct"` // per node, % of one core
	IdleTotal     float64   `json:"idle_cpu_total_pct"`
	MachineBusy   float64   `json:"machine_busy_pct"` // all CPUs, % of one core, same window
	RSS           []float64 `json:"rss_mb"`
	RSSFile       []float64 `json:"rss_file_mb"` // of RSS, the pages of files: the binary's, shared by every node
	PSS           []float64 `json:"pss_mb"`
	Private       []float64 `json:"private_mb"`
	Lookup        stats     `json:"lookup_first"`
	LookupAgain   stats     `json:"lookup_again"`
	LookupMissing int       `json:"lookup_missing"` // lookups that did not find the provider
	ProvideErrors int       `json:"provide_errors"`
	CallFirst     stats     `json:"call_first"`
	CallAgain     stats     `json:"call_again"`
	CallErrors    int       `json:"call_errors"`
}

type stats struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50_ms"`
	P90 float64 `json:"p90_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

func run(o options) error {
	if o.n < 2 {
		return errors.New("-n: want at least 2 nodes")
	}
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%s: %w (make build makes it)", bin, err)
	}
	dir := o.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "macula-realm-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	hook, err := newWebhook()
	if err != nil {
		return err
	}
	defer hook.close()

	rep := report{Nodes: o.n, When: time.Now().UTC(), LoadBefore: loadavg()}
	fmt.Printf("realm of %d macula-node run processes on loopback; load average %s\n", o.n, rep.LoadBefore)

	// Start: node 0, then each node through node 0 and one earlier node.
	nodes := make([]*nodeProc, 0, o.n)
	defer func() {
		stopAll(nodes)
	}()
	// Nodes start in waves of -wave at once (node 0 alone first), each
	// through node 0 and one node of an earlier wave.
	t0 := time.Now()
	for len(nodes) < o.n {
		ready := len(nodes)
		size := min(max(o.wave, 1), o.n-ready)
		if ready == 0 {
			size = 1
		}
		wave := make([]*nodeProc, size)
		errs := make([]error, size)
		var wg sync.WaitGroup
		for k := range size {
			i := ready + k
			var boot []string
			if i > 0 {
				boot = append(boot, nodes[0].state.Addrs[0])
				if ready > 1 {
					boot = append(boot, nodes[1+rand.IntN(ready-1)].state.Addrs[0])
				}
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				wave[k], errs[k] = start(ctx, o, bin, dir, i, boot)
			}()
		}
		wg.Wait()
		for _, np := range wave {
			if np != nil {
				nodes = append(nodes, np)
			}
		}
		if err := errors.Join(errs...); err != nil {
			return err
		}
	}
	rep.StartReady = time.Since(t0).Seconds()
	fmt.Printf("start: %d nodes ready (node.json written) in %.1f s\n", o.n, rep.StartReady)

	// Converged: every node lists every member.
	if err := waitAll(ctx, nodes, o.converge, func(ctx context.Context, np *nodeProc) (bool, error) {
		m, err := np.api.RealmMembers(ctx, api.MembersQuery{})
		if err != nil {
			return false, err
		}
		return len(m.Members) == o.n, nil
	}); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// Measured anyway: a realm that does not converge is a figure too.
		rep.Converged = false
		fmt.Printf("start: NOT CONVERGED within %v: %v\n", o.converge, err)
	} else {
		rep.Converged = true
		rep.StartConverge = time.Since(t0).Seconds()
		fmt.Printf("start: every node lists %d members %.1f s after the first start\n", o.n, rep.StartConverge)
	}

	fmt.Printf("settling for %v\n", o.settle)
	if err := sleep(ctx, o.settle); err != nil {
		return err
	}
	if o.soak > 0 {
		nodes, err = soak(ctx, o, bin, dir, nodes, hook)
		return err
	}
	rep.Peers, rep.Members = make([]int, len(nodes)), make([]int, len(nodes))
	var qwg sync.WaitGroup
	qsem := make(chan struct{}, 8)
	for i, np := range nodes {
		qwg.Add(1)
		qsem <- struct{}{}
		go func() {
			defer qwg.Done()
			defer func() { <-qsem }()
			qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			if ps, err := np.api.Peers(qctx); err == nil {
				rep.Peers[i] = len(ps)
			} else {
				rep.Peers[i] = -1 // no answer
			}
			if m, err := np.api.RealmMembers(qctx, api.MembersQuery{}); err == nil {
				rep.Members[i] = len(m.Members)
			} else {
				rep.Members[i] = -1
			}
		}()
	}
	qwg.Wait()
	fmt.Printf("peers per node (connected peers of the realm; -1: the API did not answer in 30 s): %s; members listed per node: %s\n",
		summary(ints(rep.Peers), "%.0f"), summary(ints(rep.Members), "%.0f"))

	// Idle CPU: nothing but the realm runs its own timers.
	rep.IdleCPU, rep.MachineBusy, err = idleCPU(ctx, nodes, o.idle)
	if err != nil {
		return err
	}
	for _, c := range rep.IdleCPU {
		rep.IdleTotal += c
	}
	rep.LoadAfter = loadavg()
	fmt.Printf("idle CPU over %v: total %.1f%% of one core; per node %s (%% of one core); whole machine %.0f%% of one core; load average %s\n",
		o.idle, rep.IdleTotal, summary(rep.IdleCPU, "%.2f"), rep.MachineBusy, rep.LoadAfter)
	for _, np := range nodes {
		rss, file := rssMB(np.state.PID)
		rep.RSS, rep.RSSFile = append(rep.RSS, rss), append(rep.RSSFile, file)
		pss, private := smapsMB(np.state.PID)
		rep.PSS = append(rep.PSS, pss)
		rep.Private = append(rep.Private, private)
	}
	fmt.Printf("RSS per node: %s MB; of it the pages of files (the binary's, shared by every node): %s MB\n",
		summary(rep.RSS, "%.1f"), summary(rep.RSSFile, "%.1f"))
	// RSS counts in full the pages of the binary's code, which every node
	// of the realm shares; PSS divides them among the processes that map
	// them, and private is what this node alone holds (its heap, stacks).
	fmt.Printf("PSS per node: %s MB; private (what the node alone holds): %s MB\n", summary(rep.PSS, "%.1f"), summary(rep.Private, "%.1f"))

	if err := measureLookups(ctx, o, nodes, &rep); err != nil {
		return err
	}
	if err := measureCalls(ctx, o, nodes, hook, &rep); err != nil {
		return err
	}
	if o.jsonOut != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(o.jsonOut, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	if o.keep {
		fmt.Printf("the realm keeps running (data and logs in %s); Ctrl-C stops it\n", dir)
		<-ctx.Done()
	}
	return nil
}

// start starts node i and waits for its node.json.
func start(ctx context.Context, o options, bin, dir string, i int, boot []string) (*nodeProc, error) {
	name := fmt.Sprintf("n%d", i)
	nd := filepath.Join(dir, name)
	if err := os.MkdirAll(nd, 0o700); err != nil {
		return nil, err
	}
	_ = os.Remove(filepath.Join(nd, "node.json"))
	args := []string{"run", "--realm", o.realm, "--name", name, "--data-dir", nd,
		"--listen", "/ip4/127.0.0.1/udp/0/quic-v1", "--api", "127.0.0.1:0", "--http3", "off"}
	for _, b := range boot {
		args = append(args, "--bootstrap", b)
	}
	args = append(args, strings.Fields(o.extra)...)
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = os.Environ()
	if i == o.pprof {
		cmd.Env = append(cmd.Env, "MACULA_PPROF="+o.pprofAt)
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	np := &nodeProc{i: i, name: name, dir: nd, cmd: cmd, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); logf.Close(); close(np.exited) }()
	deadline := time.Now().Add(o.startMax)
	for {
		b, err := os.ReadFile(filepath.Join(nd, "node.json"))
		if err == nil && json.Unmarshal(b, &np.state) == nil && np.state.API != "" {
			break
		}
		select {
		case <-np.exited:
			return np, fmt.Errorf("%s exited at start; see %s.log", name, filepath.Join(dir, name))
		case <-ctx.Done():
			return np, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return np, fmt.Errorf("%s: no node.json after %v; see %s.log", name, o.startMax, filepath.Join(dir, name))
		}
	}
	np.api = api.NewClient(np.state.API)
	np.api.Local = true
	return np, nil
}

// stopAll stops every node with SIGTERM and waits (kill -9 after 15 s).
func stopAll(nodes []*nodeProc) {
	for _, np := range nodes {
		_ = np.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, np := range nodes {
		select {
		case <-np.exited:
		case <-time.After(15 * time.Second):
			_ = np.cmd.Process.Kill()
			<-np.exited
		}
		if np.api != nil {
			np.api.Close()
		}
	}
}

// waitAll polls every node (8 at a time) until ok holds for all of them.
func waitAll(ctx context.Context, nodes []*nodeProc, limit time.Duration, ok func(context.Context, *nodeProc) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	pending := slices.Clone(nodes)
	var lastErr error
	for len(pending) > 0 {
		var mu sync.Mutex
		var next []*nodeProc
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8)
		for _, np := range pending {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
				good, err := ok(rctx, np)
				rcancel()
				if !good {
					mu.Lock()
					next = append(next, np)
					if err != nil {
						lastErr = fmt.Errorf("%s: %w", np.name, err)
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		pending = next
		if len(pending) == 0 {
			return nil
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			names := make([]string, 0, len(pending))
			for _, np := range pending {
				names = append(names, np.name)
			}
			return fmt.Errorf("%d nodes not there (%s); last error: %v", len(pending), strings.Join(names, " "), lastErr)
		}
	}
	return nil
}

// idleCPU measures each node's CPU over d (utime+stime from
// /proc/<pid>/stat), in % of one core, and the whole machine's busy time
// over the same window (from /proc/stat), in % of one core.
func idleCPU(ctx context.Context, nodes []*nodeProc, d time.Duration) ([]float64, float64, error) {
	before := make([]uint64, len(nodes))
	for i, np := range nodes {
		t, err := procTicks(np.state.PID)
		if err != nil {
			return nil, 0, err
		}
		before[i] = t
	}
	mb, mt := machineTicks()
	t0 := time.Now()
	if err := sleep(ctx, d); err != nil {
		return nil, 0, err
	}
	el := time.Since(t0).Seconds()
	ma, _ := machineTicks()
	_ = mt
	out := make([]float64, len(nodes))
	for i, np := range nodes {
		t, err := procTicks(np.state.PID)
		if err != nil {
			return nil, 0, err
		}
		out[i] = float64(t-before[i]) / clkTck / el * 100
	}
	return out, float64(ma-mb) / clkTck / el * 100, nil
}

// waitCalm waits, at most a minute, until the realm's CPU over 2 s is back
// near its idle figure (idle, % of one core), and says how long it took.
func waitCalm(ctx context.Context, nodes []*nodeProc, idle float64) error {
	t0 := time.Now()
	var total float64
	for time.Since(t0) < time.Minute {
		cpu, _, err := idleCPU(ctx, nodes, 2*time.Second)
		if err != nil {
			return err
		}
		total = 0
		for _, c := range cpu {
			total += c
		}
		if total <= max(1.5*idle, idle+10) {
			fmt.Printf("calm again %v after the announcements (the realm at %.1f%% of one core)\n", time.Since(t0).Round(time.Second), total)
			return nil
		}
	}
	fmt.Printf("not calm a minute after the announcements (the realm at %.1f%% of one core); timing anyway\n", total)
	return nil
}

// clkTck is USER_HZ: the unit of /proc's CPU times (100 on Linux).
const clkTck = 100.0

// procTicks returns utime+stime of pid in clock ticks.
func procTicks(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields after its ')' are fixed.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// f[0] is field 3 (state): utime is field 14, stime field 15.
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: cannot read utime and stime", pid)
	}
	return ut + st, nil
}

// machineTicks returns the busy and total ticks of all CPUs (/proc/stat).
func machineTicks() (busy, total uint64) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 0, 0
	}
	fs := strings.Fields(sc.Text())[1:]
	for i, v := range fs {
		n, _ := strconv.ParseUint(v, 10, 64)
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total
}

// rssMB returns a process's resident set size and the part of it that
// is files' pages (RssFile: the binary's code and data), in MB, from
// /proc/<pid>/status.
func rssMB(pid int) (rss, file float64) {
	m := procMB(fmt.Sprintf("/proc/%d/status", pid))
	return m["VmRSS"], m["RssFile"]
}

// smapsMB returns a process's proportional set size and its private memory
// (clean and dirty), in MB, from /proc/<pid>/smaps_rollup.
func smapsMB(pid int) (pss, private float64) {
	m := procMB(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	return m["Pss"], m["Private_Clean"] + m["Private_Dirty"]
}

// procMB reads the "Key: N kB" lines of a /proc file as MB by key (none if
// the file cannot be read: the process is gone).
func procMB(path string) map[string]float64 {
	m := map[string]float64{}
	b, err := os.ReadFile(path)
	if err != nil {
		return m
	}
	for l := range strings.Lines(string(b)) {
		f := strings.Fields(l)
		if len(f) < 2 || !strings.HasSuffix(f[0], ":") {
			continue
		}
		if kb, err := strconv.ParseFloat(f[1], 64); err == nil {
			m[strings.TrimSuffix(f[0], ":")] = kb / 1024
		}
	}
	return m
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:3], " ")
}

// measureLookups has every node provide a key, then times lookups of a
// random node's key from another random node through the API (one at a
// time), and the same lookup again from the same node.
func measureLookups(ctx context.Context, o options, nodes []*nodeProc, rep *report) error {
	key := func(np *nodeProc) string { return "bench-key-" + np.name }
	errs := make(chan error, len(nodes))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, np := range nodes {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			if _, err := np.api.DHTProvide(pctx, key(np)); err != nil {
				errs <- fmt.Errorf("%s: provide: %w", np.name, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		rep.ProvideErrors++
		fmt.Printf("provide failed (counted, the lookups go on): %v\n", err)
	}
	// Wait until every key is announced (provide returns within 2 s,
	// pending or done) and the realm is calm again: lookups timed while 50
	// announcements still run measure the machine's load, not the DHT
	// (p99 0.3-0.5 s then; 25-70 ms each a moment later).
	if err := sleep(ctx, 2*time.Second); err != nil {
		return err
	}
	if err := waitCalm(ctx, nodes, rep.IdleTotal); err != nil {
		return err
	}
	missing := 0
	first, again, err := timePairs(ctx, len(nodes), o.lookups, func(ctx context.Context, from, to int) {
		res, err := nodes[from].api.DHTLookup(ctx, key(nodes[to]))
		found := false
		if err == nil {
			for _, p := range res.Providers {
				if p.PeerID == nodes[to].state.PeerID {
					found = true
				}
			}
		}
		if !found {
			missing++
		}
	})
	if err != nil {
		return err
	}
	rep.Lookup, rep.LookupAgain, rep.LookupMissing = statsOf(first), statsOf(again), missing
	fmt.Printf("DHT lookup of a key provided on another node (API, default limit): first %s; again from the same node %s; %d of %d did not find the provider\n",
		rep.Lookup, rep.LookupAgain, missing, len(first)+len(again))
	return nil
}

// measureCalls advertises an echo procedure on every node (a webhook of
// this tool), then times calls between random pairs: the first call of a
// pair and the same call again.
func measureCalls(ctx context.Context, o options, nodes []*nodeProc, hook *webhook, rep *report) error {
	proc := func(np *nodeProc) string { return o.realm + ".bench." + np.name + "_echo" }
	for _, np := range nodes {
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := np.api.AdvertiseWebhook(actx, proc(np), api.AdvertiseRequest{URL: hook.url})
		cancel()
		if err != nil {
			fmt.Printf("%s: advertise failed (counted as call errors): %v\n", np.name, err)
		}
	}
	if err := sleep(ctx, 2*time.Second); err != nil {
		return err
	}
	if err := waitCalm(ctx, nodes, rep.IdleTotal); err != nil {
		return err
	}
	errs := 0
	payload := []byte(`"ping"`)
	var lastErr error
	first, again, err := timePairs(ctx, len(nodes), o.calls, func(ctx context.Context, from, to int) {
		_, err := nodes[from].api.Call(ctx, proc(nodes[to]), payload, api.CallOptions{Timeout: 5 * time.Second, ContentType: api.ContentTypeJSON})
		if err != nil {
			errs++
			lastErr = err
		}
	})
	if err != nil {
		return err
	}
	rep.CallFirst, rep.CallAgain, rep.CallErrors = statsOf(first), statsOf(again), errs
	fmt.Printf("RPC call between a random pair (API, webhook echo): first call of the pair %s; again %s; %d errors",
		rep.CallFirst, rep.CallAgain, errs)
	if lastErr != nil {
		fmt.Printf(" (last: %v)", lastErr)
	}
	fmt.Println()
	return nil
}

// timePairs runs op for up to want distinct random ordered pairs of n
// nodes, twice each (the first time, then again), one at a time with 10 s
// each, and returns how long each run took in milliseconds.
func timePairs(ctx context.Context, n, want int, op func(ctx context.Context, from, to int)) (first, again []float64, err error) {
	type pair struct{ from, to int }
	done := map[pair]bool{}
	for len(first) < want && len(done) < n*(n-1) {
		from, to := rand.IntN(n), rand.IntN(n)
		if from == to || done[pair{from, to}] {
			continue
		}
		done[pair{from, to}] = true
		for round := 0; round < 2; round++ {
			octx, cancel := context.WithTimeout(ctx, 10*time.Second)
			t := time.Now()
			op(octx, from, to)
			ms := float64(time.Since(t).Microseconds()) / 1000
			cancel()
			if ctx.Err() != nil {
				return first, again, ctx.Err()
			}
			if round == 0 {
				first = append(first, ms)
			} else {
				again = append(again, ms)
			}
		}
	}
	return first, again, nil
}

// webhook is the echo procedure's handler: it answers the payload.
type webhook struct {
	srv *http.Server
	url string
}

func newWebhook() (*webhook, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
		w.Header().Set("Content-Type", r.Header.Get("Content-Type"))
		_, _ = w.Write(b)
	})}
	go func() { _ = srv.Serve(ln) }()
	return &webhook{srv: srv, url: "http://" + ln.Addr().String() + "/echo"}, nil
}

func (w *webhook) close() { _ = w.srv.Close() }

func statsOf(v []float64) stats {
	if len(v) == 0 {
		return stats{}
	}
	s := slices.Clone(v)
	sort.Float64s(s)
	q := func(p float64) float64 { return s[min(len(s)-1, int(p*float64(len(s))))] }
	return stats{N: len(s), P50: q(0.50), P90: q(0.90), P99: q(0.99), Max: s[len(s)-1]}
}

func (s stats) String() string {
	return fmt.Sprintf("p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms (%d)", s.P50, s.P90, s.P99, s.Max, s.N)
}

func ints(v []int) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// summary gives min / median / max of v.
func summary(v []float64, f string) string {
	if len(v) == 0 {
		return "-"
	}
	s := slices.Clone(v)
	sort.Float64s(s)
	return fmt.Sprintf("min "+f+", median "+f+", max "+f, s[0], s[len(s)/2], s[len(s)-1])
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
