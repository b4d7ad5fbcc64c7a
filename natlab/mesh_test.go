//go:build natmesh

package natlab

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestNATMesh: ten sites with the default flags, two public (the bootstrap
// nodes) and two behind each NAT type, and a call between every pair of
// nodes both ways (90 calls): how many connect, how many go direct, and
// how fast. Nodes get only --bootstrap (the two public nodes) and --stun.
//
//	go test -tags natmesh -run TestNATMesh -v ./natlab/
//
// It is a measurement (about a minute) beside the matrix, which checks
// every pair of NAT types: it is built only with -tags natmesh (make test
// does not run it, and no test skips under CI).
// NATLAB_MATRIX_DOC=1 writes its tables into docs/nat.md (between the mesh
// markers). Every call must get through, and every pair but symmetric
// with symmetric must end direct.
func TestNATMesh(t *testing.T) {
	if err := Check(Options{}); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (CI=true: the NAT lab must run)", err)
		}
		t.Skip(err)
	}
	start := time.Now()
	bin := buildMaculaNode(t)
	var specs []SiteSpec
	for _, typ := range matrixTypes {
		specs = append(specs, SiteSpec{Name: typ, NAT: typ}, SiteSpec{Name: typ + "2", NAT: typ})
	}
	m := &matrix{t: t, cfg: matrixConfig{name: "mesh"}, bin: bin, start: start, byName: map[string]*mnode{}}
	m.lab = New(t, Options{Sites: specs})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	m.ctx = ctx
	m.dataRoot = t.TempDir()
	defer m.dumpLogs(t)

	m.relay = &mnode{name: "pub1", typ: "open", host: m.lab.Relay()}
	m.startNode(m.relay, []string{"--stun", m.lab.STUNAddr()})
	if err := m.relay.waitUp(ctx, 60*time.Second, ""); err != nil {
		t.Fatal(err)
	}
	m.relay2 = &mnode{name: "pub2", typ: "open", host: m.lab.Relay2()}
	m.startNode(m.relay2, []string{"--stun", m.lab.STUNAddr(), "--bootstrap", m.relay.multiaddr()})
	if err := m.relay2.waitUp(ctx, 60*time.Second, ""); err != nil {
		t.Fatal(err)
	}
	nodes := []*mnode{m.relay, m.relay2}
	for _, typ := range matrixTypes {
		for k, site := range []string{typ, typ + "2"} {
			n := &mnode{name: fmt.Sprintf("%s%d", matrixShort[typ], k+1), typ: typ, site: m.lab.Site(site), host: m.lab.Site(site).Host}
			m.startNode(n, m.common())
			nodes = append(nodes, n)
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.nat, errs[i] = n.waitDecided(ctx, 90*time.Second)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	upTime := time.Since(start)

	// Every node serves an echo procedure.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := n.host.Command(context.Background(), exe)
			cmd.Env = append(os.Environ(), "NATLAB_MATRIX_ECHO="+echoAddr)
			echo := n.host.StartCommand(t, cmd)
			adv := n.host.Start(t, bin, "advertise", n.procedure(), "--url", "http://"+echoAddr+"/echo", "--api", matrixAPI)
			deadline := time.Now().Add(20 * time.Second)
			for time.Now().Before(deadline) {
				if strings.Contains(adv.Output(), "advertised") && strings.Contains(echo.Output(), "ready") {
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
			t.Errorf("%s: not advertised within 20s: %s / %s", n.name, adv.Output(), echo.Output())
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	// Each unordered pair once, both ways in turn (the second call often
	// finds the pair connected); at most meshParallel pairs at once.
	const meshParallel = 8
	var cells []*cell
	type pair struct{ ab, ba *cell }
	var pairs []pair
	for i, a := range nodes {
		for _, b := range nodes[i+1:] {
			p := pair{&cell{callee: a, caller: b}, &cell{callee: b, caller: a}}
			pairs = append(pairs, p)
			cells = append(cells, p.ab, p.ba)
		}
	}
	meshStart := time.Now()
	sem := make(chan struct{}, meshParallel)
	for _, p := range pairs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			p.ab.run(ctx)
			p.ba.run(ctx)
		}()
	}
	wg.Wait()
	meshTime := time.Since(meshStart)

	// The figures.
	typeOf := func(n *mnode) string {
		if n.typ == "open" {
			return "public"
		}
		return n.typ
	}
	var tb strings.Builder
	fmt.Fprintf(&tb, "| callee <- caller | types | call | first call | path at first call | direct at | path after wait |\n|---|---|---|---|---|---|---|\n")
	connected, direct := 0, 0
	var firstCalls, toDirect []time.Duration
	var relayed, failed []string
	for _, c := range cells {
		call := "ok"
		if !c.ok {
			call = "FAIL"
			failed = append(failed, c.label())
			t.Errorf("%s: no successful call within %v: %s", c.label(), cellCallBudget, c.err)
		} else {
			connected++
			firstCalls = append(firstCalls, c.firstCall)
		}
		pre := ""
		if c.preconnected {
			pre = " (already connected)"
		}
		if c.ok && c.pathAtEnd == "direct" {
			direct++
			toDirect = append(toDirect, c.toDirect())
		} else if c.ok {
			relayed = append(relayed, fmt.Sprintf("%s (%s / %s)", c.label(), typeOf(c.callee), typeOf(c.caller)))
			if c.wantDirect() {
				t.Errorf("%s: still relayed %v after the first call; the lab's routers let %s / %s punch", c.label(), cellDirectBudget, c.callee.typ, c.caller.typ)
			}
		}
		fmt.Fprintf(&tb, "| %s%s | %s / %s | %s | %s | %s | %s | %s |\n", c.label(), pre, typeOf(c.callee), typeOf(c.caller),
			call, ms(c.firstCall), c.pathAtFirst, c.directAt(), c.pathAtEnd)
	}
	// Per pair of types: connected and direct.
	type tally struct{ n, ok, direct int }
	byTypes := map[string]*tally{}
	for _, c := range cells {
		a, b := typeOf(c.callee), typeOf(c.caller)
		if a > b {
			a, b = b, a
		}
		k := a + " / " + b
		if byTypes[k] == nil {
			byTypes[k] = &tally{}
		}
		tl := byTypes[k]
		tl.n++
		if c.ok {
			tl.ok++
			if c.pathAtEnd == "direct" {
				tl.direct++
			}
		}
	}
	keys := make([]string, 0, len(byTypes))
	for k := range byTypes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var tt strings.Builder
	fmt.Fprintf(&tt, "| types | calls | connected | direct |\n|---|---|---|---|\n")
	for _, k := range keys {
		tl := byTypes[k]
		fmt.Fprintf(&tt, "| %s | %d | %d | %d |\n", k, tl.n, tl.ok, tl.direct)
	}
	load := "?"
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	report := fmt.Sprintf(`Run %s (10 nodes up and decided after %v, %d calls in %v, %d pairs at once; load average %s).

**%d of %d calls connected (%.0f%%), %d direct (%.0f%%).** Time to the first successful call (from the start of the pair's cell, a relayed or direct connection made by the call): median %s, 90th percentile %s, max %s. Direct after the first call: median %s, 90th percentile %s, max %s.

Still relayed: %s. Failed: %s.

%s
<details><summary>Every call</summary>

%s
</details>
`, time.Now().UTC().Format(time.RFC3339), upTime.Round(time.Millisecond), len(cells), meshTime.Round(time.Millisecond), meshParallel, load,
		connected, len(cells), 100*float64(connected)/float64(len(cells)), direct, 100*float64(direct)/float64(len(cells)),
		secs(quantile(firstCalls, 0.5)), secs(quantile(firstCalls, 0.9)), secs(quantile(firstCalls, 1)),
		secs(quantile(toDirect, 0.5)), secs(quantile(toDirect, 0.9)), secs(quantile(toDirect, 1)),
		listOrNone(relayed), listOrNone(failed), tt.String(), tb.String())
	t.Log("\n" + report)
	if os.Getenv("NATLAB_MATRIX_DOC") == "1" {
		if err := writeMatrixDoc("mesh", report); err != nil {
			t.Errorf("docs/nat.md: %v", err)
		}
	}
}

// quantile returns the q-quantile (0..1) of ds, nearest rank; 0 for none.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) }

func listOrNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, ", ")
}
