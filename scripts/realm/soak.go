package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/macula-io/macula/api"
)

// The soak (-soak D, make soak): the realm under steady load for D while
// nodes fail. Callers call the procedure of a random node from another
// random node (through their APIs, 5 s deadline, 20 ms between a caller's
// calls); node 0 publishes 20
// messages a second on one topic, which node 0 and two observers (nodes 1
// and 2, never faulted) subscribe to. Every -kill-every a random other node
// is killed with SIGKILL and started again 3 s later in its directory (the
// same identity), advertises and subscribes again; every -stop-every one is
// stopped with SIGSTOP for 20 s. Printed per minute: calls between nodes
// that were steady (up, and no fault within 10 s: p50, p99, max,
// failures), calls to or from a node within 10 s of its return, calls to
// nodes that were down (each must fail with a typed error within its
// deadline), calls that took longer
// than their deadline by 2 s ("hung"), messages published and delivered
// to each observer, node 0's goroutines and the largest RSS; and, per
// restart, how long until a call from node 0 reached the returned node's
// procedure and until its new subscription got a message.

const (
	soakTopic     = "events"
	soakCallers   = 4
	soakDeadline  = 5 * time.Second
	soakPubRate   = 20
	soakRestartIn = 3 * time.Second
	soakStopFor   = 20 * time.Second
	soakObservers = 3 // nodes 0, 1, 2: never faulted
	soakPause     = 20 * time.Millisecond
	// soakSettle: calls to or from a node within this time of its
	// return are counted apart (its peers may still hold a dead
	// connection of its earlier life, or not know its procedure yet).
	soakSettle = 10 * time.Second
)

// soakNode is one node of the soak and what the faults did to it.
type soakNode struct {
	mu      sync.Mutex
	np      *nodeProc
	down    bool // killed, or started again and not advertised yet
	stopped bool // SIGSTOP
	gen     int  // counts the changes of down and stopped
	changed time.Time
}

func (s *soakNode) get() (*nodeProc, bool) {
	np, up, _ := s.state()
	return np, up
}

func (s *soakNode) state() (*nodeProc, bool, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.np, !s.down && !s.stopped, s.gen
}

// settled reports whether the node's last fault ended soakSettle ago.
func (s *soakNode) settled() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return time.Since(s.changed) >= soakSettle
}

func (s *soakNode) set(f func(s *soakNode)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
	s.gen++
	s.changed = time.Now()
}

// soakMinute is what one minute of the soak saw.
type soakMinute struct {
	upOK, upFail, downTyped, downOther, hung int
	backOK, backTyped, backOther             int
	lat                                      []float64 // ms, calls between steady nodes that succeeded
	maxLat                                   float64
	upErrs                                   map[string]int
	published, pubFail                       int
	delivered                                [soakObservers]int
	goroutines                               int
	rssMax                                   float64
	faults                                   []string
}

type soakRun struct {
	o       options
	bin     string
	dir     string
	hook    *webhook
	nodes   []*soakNode
	start   time.Time
	mu      sync.Mutex
	minutes []*soakMinute
	back    []string // per restart: rediscovery times
	failed  []string // the first failed calls between steady nodes
	slow    []string // the first that took over a second
	untyped []string // the first calls that failed without an API error code (around a fault)
}

// keepCall appends a line on a failed call to list, up to its first 30:
// when, between whom, the error and the faults of the moment. r.mu is held.
func (r *soakRun) keepCall(list *[]string, from, to int, took time.Duration, err error) {
	if len(*list) < 30 {
		*list = append(*list, fmt.Sprintf("%s n%d -> n%d after %v: %v (faulted then: %s)",
			time.Since(r.start).Round(time.Millisecond), from, to, took.Round(time.Millisecond), err, r.faultedNow()))
	}
}

// faultedNow names the nodes that are down or stopped now.
func (r *soakRun) faultedNow() string {
	var out []string
	for i, s := range r.nodes {
		if _, up := s.get(); !up {
			out = append(out, "n"+strconv.Itoa(i))
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, " ")
}

func (r *soakRun) minute() *soakMinute {
	i := int(time.Since(r.start) / time.Minute)
	for len(r.minutes) <= i {
		r.minutes = append(r.minutes, &soakMinute{upErrs: map[string]int{}})
	}
	return r.minutes[i]
}

func (r *soakRun) note(f func(m *soakMinute)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(r.minute())
}

func (r *soakRun) proc(i int) string { return fmt.Sprintf("%s.soak.n%d", r.o.realm, i) }

func (r *soakRun) topic() string { return r.o.realm + "." + soakTopic }

// soak runs the soak on a realm that converged; nodes are stopped by the
// caller.
func soak(ctx context.Context, o options, bin, dir string, procs []*nodeProc, hook *webhook) ([]*nodeProc, error) {
	if len(procs) < soakObservers+2 {
		return procs, fmt.Errorf("-soak: want at least %d nodes", soakObservers+2)
	}
	r := &soakRun{o: o, bin: bin, dir: dir, hook: hook}
	for _, np := range procs {
		r.nodes = append(r.nodes, &soakNode{np: np})
	}
	current := func() []*nodeProc {
		out := make([]*nodeProc, len(r.nodes))
		for i, s := range r.nodes {
			out[i], _ = s.get()
		}
		return out
	}
	for i, s := range r.nodes {
		if err := r.advertise(ctx, s.np, i); err != nil {
			return current(), err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, o.soak)
	defer cancel()
	r.start = time.Now()
	fmt.Printf("soak: %d nodes for %v: %d callers (deadline %v), %d messages/s from n0 to %d observers, kill -9 every %v (back after %v), SIGSTOP for %v every %v\n",
		len(r.nodes), o.soak, soakCallers, soakDeadline, soakPubRate, soakObservers, o.killEvery, soakRestartIn, soakStopFor, o.stopEvery)
	var wg sync.WaitGroup
	for range soakCallers {
		wg.Go(func() { r.callLoop(ctx) })
	}
	wg.Go(func() { r.publishLoop(ctx) })
	for k := range soakObservers {
		wg.Go(func() { r.observe(ctx, k) })
	}
	wg.Go(func() { r.sampleLoop(ctx) })
	wg.Go(func() { r.faultLoop(ctx, &wg) })
	wg.Wait()
	r.print()
	return current(), nil
}

func (r *soakRun) advertise(ctx context.Context, np *nodeProc, i int) error {
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := np.api.AdvertiseWebhook(actx, r.proc(i), api.AdvertiseRequest{URL: r.hook.url}); err != nil {
		return fmt.Errorf("%s: advertise: %w", np.name, err)
	}
	return nil
}

// callLoop calls a random node's procedure from another random node that
// is up, one call at a time, soakPause apart. A call whose caller or callee
// was faulted while it ran counts with the calls to nodes that were down.
func (r *soakRun) callLoop(ctx context.Context) {
	for ctx.Err() == nil {
		time.Sleep(soakPause)
		fi := rand.IntN(len(r.nodes))
		from, ok, fromGen := r.nodes[fi].state()
		if !ok {
			continue
		}
		to := 1 + rand.IntN(len(r.nodes)-1)
		_, upBefore, genBefore := r.nodes[to].state()
		cctx, cancel := context.WithTimeout(ctx, soakDeadline+10*time.Second)
		t0 := time.Now()
		_, err := from.api.Call(cctx, r.proc(to), []byte(`"soak"`), api.CallOptions{Timeout: soakDeadline, ContentType: api.ContentTypeJSON})
		took := time.Since(t0)
		cancel()
		if ctx.Err() != nil {
			return
		}
		_, _, genAfter := r.nodes[to].state()
		_, _, fromAfter := r.nodes[fi].state()
		same := upBefore && genBefore == genAfter && fromGen == fromAfter
		steady := same && r.nodes[to].settled() && r.nodes[fi].settled()
		r.note(func(m *soakMinute) {
			ms := float64(took) / float64(time.Millisecond)
			if took > soakDeadline+2*time.Second && fromGen == fromAfter {
				m.hung++ // not the caller's own node stopped under it
			}
			var ae *api.APIError
			switch {
			case steady && err == nil:
				m.upOK++
				m.lat = append(m.lat, ms)
				m.maxLat = max(m.maxLat, ms)
				if took > time.Second && len(r.slow) < 30 {
					r.slow = append(r.slow, fmt.Sprintf("%s n%d -> n%d took %v (faulted then: %s)",
						time.Since(r.start).Round(time.Millisecond), fi, to, took.Round(time.Millisecond), r.faultedNow()))
				}
			case steady:
				m.upFail++
				code := "other"
				if errors.As(err, &ae) {
					code = ae.Code
				}
				m.upErrs[code]++
				r.keepCall(&r.failed, fi, to, took, err)
			case same && err == nil:
				m.backOK++
			case same && errors.As(err, &ae):
				m.backTyped++
			case same:
				m.backOther++
				r.keepCall(&r.untyped, fi, to, took, err) // what the "other" columns cannot tell
			case err != nil && errors.As(err, &ae):
				m.downTyped++
			case err != nil:
				m.downOther++
				r.keepCall(&r.untyped, fi, to, took, err)
			default:
				m.upOK++ // reached a node around its fault
			}
		})
	}
}

func (r *soakRun) publishLoop(ctx context.Context) {
	t := time.NewTicker(time.Second / soakPubRate)
	defer t.Stop()
	for seq := 0; ; seq++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		np, _ := r.nodes[0].get()
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := np.api.Publish(pctx, r.topic(), []byte(strconv.Itoa(seq)), api.ContentTypeJSON)
		cancel()
		r.note(func(m *soakMinute) {
			if err != nil {
				m.pubFail++
			} else {
				m.published++
			}
		})
	}
}

// observe counts what observer k's subscription delivers.
func (r *soakRun) observe(ctx context.Context, k int) {
	np, _ := r.nodes[k].get()
	for ctx.Err() == nil {
		sub, err := np.api.Subscribe(ctx, r.topic())
		if err != nil {
			_ = sleep(ctx, time.Second)
			continue
		}
		for {
			if _, err := sub.Next(); err != nil {
				break
			}
			r.note(func(m *soakMinute) { m.delivered[k]++ })
		}
		_ = sub.Close()
	}
}

// sampleLoop records node 0's goroutines and the largest RSS every 10 s.
func (r *soakRun) sampleLoop(ctx context.Context) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		np, _ := r.nodes[0].get()
		mctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		g := goroutines(mctx, np.api)
		cancel()
		var rss float64
		for _, s := range r.nodes {
			if p, _ := s.get(); p != nil && p.state.PID > 0 {
				v, _ := rssMB(p.state.PID)
				rss = max(rss, v)
			}
		}
		r.note(func(m *soakMinute) {
			m.goroutines = max(m.goroutines, g)
			m.rssMax = max(m.rssMax, rss)
		})
	}
}

// goroutines reads go_goroutines from a node's /metrics (-1 if it cannot).
func goroutines(ctx context.Context, c *api.Client) int {
	b, err := c.Metrics(ctx)
	if err != nil {
		return -1
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return int(n)
		}
	}
	return -1
}

// faultLoop kills a node every o.killEvery and stops one every o.stopEvery.
func (r *soakRun) faultLoop(ctx context.Context, wg *sync.WaitGroup) {
	kill := time.NewTicker(r.o.killEvery)
	defer kill.Stop()
	stop := time.NewTicker(r.o.stopEvery)
	defer stop.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-kill.C:
			if s, i := r.pickVictim(); s != nil {
				wg.Go(func() { r.killAndRestart(ctx, s, i) })
			}
		case <-stop.C:
			if s, i := r.pickVictim(); s != nil {
				wg.Go(func() { r.stopFor(ctx, s, i) })
			}
		}
	}
}

// pickVictim returns a random node that is up and not an observer.
func (r *soakRun) pickVictim() (*soakNode, int) {
	idx := rand.Perm(len(r.nodes) - soakObservers)
	for _, j := range idx {
		i := j + soakObservers
		if _, up := r.nodes[i].get(); up {
			return r.nodes[i], i
		}
	}
	return nil, 0
}

func (r *soakRun) stopFor(ctx context.Context, s *soakNode, i int) {
	var np *nodeProc
	s.set(func(s *soakNode) { np, s.stopped = s.np, true })
	_ = np.cmd.Process.Signal(syscall.SIGSTOP)
	r.note(func(m *soakMinute) { m.faults = append(m.faults, "SIGSTOP n"+strconv.Itoa(i)) })
	select {
	case <-ctx.Done():
	case <-time.After(soakStopFor):
	}
	_ = np.cmd.Process.Signal(syscall.SIGCONT)
	s.set(func(s *soakNode) { s.stopped = false })
}

func (r *soakRun) killAndRestart(ctx context.Context, s *soakNode, i int) {
	var old *nodeProc
	s.set(func(s *soakNode) { old, s.down = s.np, true })
	_ = old.cmd.Process.Kill()
	<-old.exited
	old.api.Close()
	r.note(func(m *soakMinute) { m.faults = append(m.faults, "kill -9 n"+strconv.Itoa(i)) })
	select {
	case <-ctx.Done():
		return
	case <-time.After(soakRestartIn):
	}
	n0, _ := r.nodes[0].get()
	n1, _ := r.nodes[1].get()
	np, err := start(context.WithoutCancel(ctx), r.o, r.bin, r.dir, i, []string{n0.state.Addrs[0], n1.state.Addrs[0]})
	if err != nil {
		r.addBack(fmt.Sprintf("n%d: NOT BACK: %v", i, err))
		return
	}
	t0 := time.Now()
	s.set(func(s *soakNode) { s.np = np }) // still down: not advertised yet
	if err := r.advertise(ctx, np, i); err != nil {
		r.addBack(fmt.Sprintf("n%d: %v", i, err))
		return
	}
	s.set(func(s *soakNode) { s.down = false })
	// Its procedure is called from n0 and its new subscription gets a
	// message: how long after it came back.
	var callAt, subAt time.Duration = -1, -1
	var bwg sync.WaitGroup
	bwg.Go(func() {
		for ctx.Err() == nil && time.Since(t0) < time.Minute {
			cctx, cancel := context.WithTimeout(ctx, soakDeadline+5*time.Second)
			_, err := n0.api.Call(cctx, r.proc(i), []byte(`"back"`), api.CallOptions{Timeout: soakDeadline, ContentType: api.ContentTypeJSON})
			cancel()
			if err == nil {
				callAt = time.Since(t0)
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	bwg.Go(func() {
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		sub, err := np.api.Subscribe(sctx, r.topic())
		if err != nil {
			return
		}
		defer sub.Close()
		if _, err := sub.Next(); err == nil {
			subAt = time.Since(t0)
		}
	})
	bwg.Wait()
	r.addBack(fmt.Sprintf("n%d: called from n0 after %s, its subscription's first message after %s", i, durOrNever(callAt), durOrNever(subAt)))
}

func durOrNever(d time.Duration) string {
	if d < 0 {
		return "NEVER (1 min)"
	}
	return d.Round(time.Millisecond).String()
}

func (r *soakRun) addBack(s string) {
	r.mu.Lock()
	r.back = append(r.back, s)
	r.mu.Unlock()
}

func (r *soakRun) print() {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Printf("%3s  %-44s  %-24s  %-22s  %4s  %-18s  %-16s  %5s  %6s  %s\n", "min", "calls, steady nodes: ok fail p50 p99 max ms", "just back: ok typed other", "faulted: typed other", "hung",
		"published (failed)", "delivered n0/n1/n2", "gorout", "RSS MB", "faults")
	for i, m := range r.minutes {
		st := statsOf(m.lat)
		fails := ""
		if m.upFail > 0 {
			keys := slices.Sorted(func(yield func(string) bool) {
				for k := range m.upErrs {
					if !yield(k) {
						return
					}
				}
			})
			var parts []string
			for _, k := range keys {
				parts = append(parts, fmt.Sprintf("%s %d", k, m.upErrs[k]))
			}
			fails = " (" + strings.Join(parts, ", ") + ")"
		}
		fmt.Printf("%3d  %5d %4d %6.1f %7.1f %8.1f%s  %8d %5d %5d  %10d %5d  %4d  %8d (%d)  %5d/%d/%d  %6d  %6.1f  %s\n", i,
			m.upOK, m.upFail, st.P50, st.P99, m.maxLat, fails, m.backOK, m.backTyped, m.backOther, m.downTyped, m.downOther, m.hung,
			m.published, m.pubFail, m.delivered[0], m.delivered[1], m.delivered[2], m.goroutines, m.rssMax, strings.Join(m.faults, ", "))
	}
	if len(r.failed) > 0 {
		fmt.Println("failed calls between steady nodes (the first 30):")
		for _, f := range r.failed {
			fmt.Println("  " + f)
		}
	}
	if len(r.untyped) > 0 {
		fmt.Println("calls around a fault that failed without an error code (the first 30):")
		for _, f := range r.untyped {
			fmt.Println("  " + f)
		}
	}
	if len(r.slow) > 0 {
		fmt.Println("calls between steady nodes that took over 1 s (the first 30):")
		for _, f := range r.slow {
			fmt.Println("  " + f)
		}
	}
	fmt.Println("restarts:")
	for _, b := range r.back {
		fmt.Println("  " + b)
	}
}
