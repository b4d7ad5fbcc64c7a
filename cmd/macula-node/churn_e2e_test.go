package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/macula-io/macula/api"
	"github.com/macula-io/macula/internal/testnet"
)

// The churn end-to-end test (issue 11): a realm of run processes on
// loopback, procedures advertised on several nodes; one node is stopped
// cleanly (SIGTERM), then another is killed (SIGKILL); from a third, calls
// go on the whole time. It asserts outcomes, never timings:
//
//   - calls to procedures served only by live nodes never fail, not even
//     while the killed node is not yet known to be dead;
//   - calls to a procedure served by the stopped, the killed and a live
//     node never fail after the stop, except while the killed node is not
//     yet known to be dead (they may be sent to it);
//   - a call to a procedure nobody advertises always answers not_found,
//     never a timeout, within a generous deadline;
//   - advertise and dht provide, run after the churn, answer and say the
//     DHT announcement is done.
//
// The log prints, per second from the stop onwards, the calls, failures and
// latencies of each kind, and the not-found latencies: the figures of
// docs/churn.md.

const churnRealm = "io.churn.e2e"

// churnCallTimeout is the deadline of every call: generous, so that a
// failure is a failure and not a slow machine.
const churnCallTimeout = 10 * time.Second

// TestChurnEndToEnd: 5 nodes.
func TestChurnEndToEnd(t *testing.T) {
	t.Parallel()
	runChurn(t, 5)
}

// churnHook serves every procedure of the test: it answers who served it.
func churnHook(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"served_by":%q}`, strings.TrimPrefix(r.URL.Path, "/"))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// churnCall is one call of the load.
type churnCall struct {
	at      time.Duration // since the stop (negative before)
	kind    string        // "live", "shared" or "notfound"
	latency time.Duration
	err     error
}

// inWindow reports whether the call was in flight at some moment between
// the kill and the moment the caller dropped the killed node: it may have
// been sent to the killed node.
func (c churnCall) inWindow(killAt, detectAt time.Duration) bool {
	return c.at < detectAt && c.at+c.latency >= killAt
}

// churnLoad calls from one node until stopped and records every call.
type churnLoad struct {
	mu    sync.Mutex
	calls []churnCall
}

func (l *churnLoad) add(c churnCall) {
	l.mu.Lock()
	l.calls = append(l.calls, c)
	l.mu.Unlock()
}

func (l *churnLoad) snapshot() []churnCall {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.calls)
}

func runChurn(t *testing.T, size int) {
	start := time.Now()
	step := func(what string) { t.Logf("%-44s %v", what, time.Since(start).Round(time.Millisecond)) }

	// Nodes: n1 is everyone's bootstrap node and the caller; n2 stops
	// cleanly; the last is killed. Every node but the caller serves
	// "only_<name>"; "shared" is on n2, n3 and the last.
	nodes := []*runNode{startRunNode(t, churnRealm, "n1")}
	nodes[0].waitReady(t)
	boot := nodes[0].st.Addrs[0]
	for i := 2; i <= size; i++ {
		nodes = append(nodes, startRunNode(t, churnRealm, fmt.Sprintf("n%d", i), boot))
	}
	for _, n := range nodes[1:] {
		n.waitReady(t)
	}
	caller, leaver, victim := nodes[0], nodes[1], nodes[size-1]
	cc := apiClient(t, caller)
	testnet.Eventually(t, 60*time.Second, func() error {
		peers, err := cc.Peers(churnCtx(t, 5*time.Second))
		if err != nil {
			return err
		}
		if len(peers) != size-1 {
			return fmt.Errorf("%d peers, want %d", len(peers), size-1)
		}
		return nil
	})
	step(fmt.Sprintf("%d nodes in a mesh", size))

	hook := churnHook(t)
	advertiseAPI := func(n *runNode, proc string) {
		c := apiClient(t, n)
		if _, err := c.AdvertiseWebhook(churnCtx(t, 20*time.Second), proc, api.AdvertiseRequest{URL: hook.URL + "/" + n.name}); err != nil {
			t.Fatalf("advertise %s on %s: %v", proc, n.name, err)
		}
	}
	shared := churnRealm + ".shared"
	var live []string // procedures served by nodes that stay
	for _, n := range nodes[1:] {
		proc := churnRealm + ".only_" + n.name
		advertiseAPI(n, proc)
		if n != leaver && n != victim {
			live = append(live, proc)
		}
	}
	for _, n := range []*runNode{leaver, nodes[2], victim} {
		advertiseAPI(n, shared)
	}
	for _, proc := range append([]string{shared}, live...) {
		testnet.Eventually(t, 30*time.Second, func() error {
			if _, err := cc.Call(churnCtx(t, churnCallTimeout), proc, nil, api.CallOptions{Timeout: 5 * time.Second}); err != nil {
				return fmt.Errorf("n1 calls %s: %w", proc, err)
			}
			return nil
		})
	}
	step("every procedure callable from n1")
	// The "before" figures are of a settled realm: a node runs its DHT as
	// a client until its measurements say it is publicly reachable, and
	// its peers put it in their routing tables once it serves. Right after
	// the start, advertise answers (rightly) that the announcement is
	// pending: a first-second state, not the steady one measured here.
	for _, n := range nodes {
		c := apiClient(t, n)
		testnet.Eventually(t, 60*time.Second, func() error {
			st, err := c.DHTStats(churnCtx(t, 5*time.Second))
			if err != nil {
				return err
			}
			if st.Mode != "server" || st.Nodes == 0 {
				return fmt.Errorf("%s: DHT %s with %d peers in its routing table", n.name, st.Mode, st.Nodes)
			}
			return nil
		})
	}
	step("every DHT a server with a routing table")
	beforeAdv, beforeProv := churnAdvertiseProvide(t, nodes[2], hook.URL, "before")
	step("advertise and provide measured (before)")

	// The load: three callers side by side, one call at a time each: the
	// live nodes' procedures in turn, the shared procedure, and a procedure
	// nobody advertises (not found is the answer wanted).
	var load churnLoad
	var stopAt time.Time
	var stopMu sync.Mutex
	since := func() time.Duration {
		stopMu.Lock()
		defer stopMu.Unlock()
		if stopAt.IsZero() {
			return -time.Nanosecond
		}
		return time.Since(stopAt)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	load1 := func(kind string, proc func(i int) string, pause time.Duration) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				at := since()
				t0 := time.Now()
				cctx, ccancel := context.WithTimeout(ctx, churnCallTimeout+5*time.Second)
				_, err := cc.Call(cctx, proc(i), nil, api.CallOptions{Timeout: churnCallTimeout})
				ccancel()
				if ctx.Err() != nil {
					return
				}
				if kind == "notfound" {
					if apiCode(err) == api.CodeNotFound {
						err = nil
					} else if err == nil {
						err = fmt.Errorf("a call to a procedure nobody advertises succeeded")
					}
				}
				load.add(churnCall{at: at, kind: kind, latency: time.Since(t0), err: err})
				time.Sleep(pause)
			}
		}()
	}
	load1("live", func(i int) string { return live[i%len(live)] }, 40*time.Millisecond)
	load1("shared", func(int) string { return shared }, 40*time.Millisecond)
	load1("notfound", func(int) string { return churnRealm + ".nobody" }, 200*time.Millisecond)
	defer func() { cancel(); wg.Wait() }()
	time.Sleep(2 * time.Second)

	// Stop n2 cleanly, then kill the last one.
	stopMu.Lock()
	stopAt = time.Now()
	stopMu.Unlock()
	if code := leaver.stop(t, syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("%s exited %d on SIGTERM", leaver.name, code)
	}
	step("n2 stopped (SIGTERM)")
	time.Sleep(3 * time.Second)
	killAt := since()
	if err := victim.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	victim.wait(t, 10*time.Second)
	step(victim.name + " killed (SIGKILL)")
	// Liveness has had its time once n1 no longer counts the killed node
	// as a peer (its pings failed).
	testnet.Eventually(t, 60*time.Second, func() error {
		peers, err := cc.Peers(churnCtx(t, 5*time.Second))
		if err != nil {
			return err
		}
		for _, p := range peers {
			if p.PeerID == victim.st.PeerID || p.PeerID == leaver.st.PeerID {
				return fmt.Errorf("%s still a peer", p.Name)
			}
		}
		return nil
	})
	detectAt := since()
	step(fmt.Sprintf("n1 dropped %s (%v after the kill)", victim.name, (detectAt - killAt).Round(time.Millisecond)))
	time.Sleep(5 * time.Second)
	afterAdv, afterProv := churnAdvertiseProvide(t, nodes[2], hook.URL, "after")
	step("advertise and provide measured (after)")
	time.Sleep(2 * time.Second)
	cancel()
	wg.Wait()

	calls := load.snapshot()
	churnReport(t, calls, killAt, detectAt)
	t.Logf("advertise (CLI, process included): before %v, after %v; dht provide (CLI): before %v, after %v",
		beforeAdv.Round(time.Millisecond), afterAdv.Round(time.Millisecond), beforeProv.Round(time.Millisecond), afterProv.Round(time.Millisecond))
	for _, c := range calls {
		switch {
		case c.err == nil:
		case c.kind == "live":
			t.Errorf("call to a live node's procedure at %v failed: %v", c.at.Round(time.Millisecond), c.err)
		case c.kind == "notfound":
			t.Errorf("not-found probe at %v: %v", c.at.Round(time.Millisecond), c.err)
		case c.kind == "shared" && !c.inWindow(killAt, detectAt):
			t.Errorf("call to the shared procedure at %v (not in flight in the liveness window %v-%v) failed: %v",
				c.at.Round(time.Millisecond), killAt.Round(time.Millisecond), detectAt.Round(time.Millisecond), c.err)
		}
	}
}

// churnAdvertiseProvide runs macula-node advertise and dht provide against
// n, checks that both say the DHT announcement is done, and returns how
// long each took to answer (the CLI process included).
func churnAdvertiseProvide(t *testing.T, n *runNode, hookURL, tag string) (adv, prov time.Duration) {
	t.Helper()
	proc := churnRealm + ".fresh_" + tag
	t0 := time.Now()
	p := startProc(t, "advertise "+proc, nil, "--api", n.st.API, "advertise", proc, "--url", hookURL+"/"+n.name)
	want := fmt.Sprintf("advertised %s -> %s/%s (announced in the DHT)\n", proc, hookURL, n.name)
	for p.stdout.String() == "" && !p.exited() && time.Since(t0) < 30*time.Second {
		time.Sleep(5 * time.Millisecond)
	}
	adv = time.Since(t0)
	if got := p.stdout.String(); got != want {
		t.Errorf("advertise %s: stdout %q, want %q; stderr %s", tag, got, want, p.stderr.String())
	}
	if code := p.stop(t, syscall.SIGTERM, 10*time.Second); code != 0 {
		t.Errorf("advertise %s exited %d", tag, code)
	}
	t0 = time.Now()
	r := runCmd(t, 30*time.Second, nil, "--api", n.st.API, "dht", "provide", "key-"+tag)
	prov = time.Since(t0)
	if want := "providing key-" + tag + " (announced in the DHT)\n"; r.code != 0 || r.stdout != want {
		t.Errorf("dht provide %s: exit %d, stdout %q (want %q), stderr %q", tag, r.code, r.stdout, want, r.stderr)
	}
	return adv, prov
}

// churnReport logs, per second from the stop onwards, the calls, failures
// and latencies of each kind.
func churnReport(t *testing.T, calls []churnCall, killAt, detectAt time.Duration) {
	t.Helper()
	type bucket struct {
		lat  map[string][]time.Duration
		fail map[string]int
	}
	buckets := map[int]*bucket{}
	for _, c := range calls {
		s := -1
		if c.at >= 0 {
			s = int(c.at / time.Second)
		}
		b := buckets[s]
		if b == nil {
			b = &bucket{lat: map[string][]time.Duration{}, fail: map[string]int{}}
			buckets[s] = b
		}
		b.lat[c.kind] = append(b.lat[c.kind], c.latency)
		if c.err != nil {
			b.fail[c.kind]++
		}
	}
	var secs []int
	for s := range buckets {
		secs = append(secs, s)
	}
	sort.Ints(secs)
	var out strings.Builder
	fmt.Fprintf(&out, "per second from the stop (second -1: before it); the kill at %.1fs, n1 dropped the killed node at %.1fs\n",
		killAt.Seconds(), detectAt.Seconds())
	fmt.Fprintf(&out, "%4s  %-26s  %-26s  %-26s\n", "s", "live: calls fail p50 max", "shared: calls fail p50 max", "notfound: calls fail p50 max")
	for _, s := range secs {
		b := buckets[s]
		fmt.Fprintf(&out, "%4d", s)
		for _, k := range []string{"live", "shared", "notfound"} {
			l := b.lat[k]
			if len(l) == 0 {
				fmt.Fprintf(&out, "  %-26s", "-")
				continue
			}
			slices.Sort(l)
			fmt.Fprintf(&out, "  %-26s", fmt.Sprintf("%4d %3d %7s %7s", len(l), b.fail[k], ms(l[len(l)/2]), ms(l[len(l)-1])))
		}
		out.WriteByte('\n')
	}
	t.Log("\n" + out.String())
	if b, err := json.Marshal(summarize(calls, killAt, detectAt)); err == nil {
		t.Logf("summary %s", b)
	}
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + "ms"
}

// summarize counts the calls and failures of each kind before the stop,
// from the stop to the kill, in flight in the liveness window, and after
// it.
func summarize(calls []churnCall, killAt, detectAt time.Duration) map[string]map[string][2]int {
	out := map[string]map[string][2]int{}
	for _, c := range calls {
		phase := "after_detect"
		switch {
		case c.inWindow(killAt, detectAt):
			phase = "liveness_window"
		case c.at < 0:
			phase = "before_stop"
		case c.at < killAt:
			phase = "stop_to_kill"
		}
		if out[phase] == nil {
			out[phase] = map[string][2]int{}
		}
		v := out[phase][c.kind]
		v[0]++
		if c.err != nil {
			v[1]++
		}
		out[phase][c.kind] = v
	}
	return out
}

// churnCtx is a context that ends after d or with the test.
func churnCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
