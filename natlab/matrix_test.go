package natlab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The NAT matrix: real macula-node processes in every site of the lab, one
// RPC call per pair of NAT types (both ways), the path (direct or relayed)
// the caller sees, the time to the first successful call and to a direct
// path; NAT detection against the routers' truth; each node's reachability
// decision; and a relay killed mid-run, with the time until calls to a node
// behind symmetric NAT work again through the second relay.
//
//	go test -run TestNATMatrix -v ./natlab/
//
// Each configuration is a subtest in a lab of its own: "default", where
// nodes get only --bootstrap and --stun (every choice about reachability,
// DHT mode, relays and relay service is the node's own), always; and, built
// with -tags natlabtuned (matrix_tuned_test.go), "tuned", with the flags
// that forced those choices before the nodes made them, for comparison.
// NATLAB_MATRIX=default or =tuned runs one of them.
//
// With NATLAB_MATRIX_DOC=1 the test also writes the tables into
// docs/nat.md (between its matrix and matrix-tuned markers).
// NATLAB_MACULA_NODE=/path uses a prebuilt macula-node instead of building
// one.
//
// What it asserts are outcomes, never times: every node decides what the
// lab's routers allow; every pair connects and its messages arrive; every
// pair that the lab's routers let punch (wantDirect: all but symmetric with
// symmetric) ends on a direct path; after the relay's death, calls to the
// symmetric-NAT nodes work again. The times (to the first call, to a
// direct path, against the goal of direct within directGoal of the
// first call, and to recovery) are measured and printed in the tables.

// matrixConfig is one configuration of the matrix: the flags of each role
// beyond the realm, name, data directory, listen address and API.
type matrixConfig struct {
	name string // the subtest
	doc  string // the section of docs/nat.md, between <!-- doc:begin --> and <!-- doc:end -->
	// Flags of the bootstrap relay, the second relay, the nodes behind NAT
	// and the public node.
	relay, relay2, site, public func(m *matrix) []string
}

var matrixConfigs = []matrixConfig{
	{
		name: "default", doc: "matrix",
		relay: func(m *matrix) []string { return []string{"--stun", m.lab.STUNAddr()} },
		relay2: func(m *matrix) []string {
			return []string{"--stun", m.lab.STUNAddr(), "--bootstrap", m.relay.multiaddr()}
		},
		site:   (*matrix).common,
		public: (*matrix).common,
	},
}

// matrix is one run of the matrix in its own lab.
type matrix struct {
	// t is the configuration's test: the processes belong to it, not to
	// the phase that starts them (a subtest's cleanup would stop them).
	t         *testing.T
	cfg       matrixConfig
	bin       string
	built     string
	lab       *Lab
	ctx       context.Context
	dataRoot  string
	start     time.Time
	pubsubCLI bool

	relay, relay2, public *mnode
	natNodes              []*mnode // every node behind NAT
	byName                map[string]*mnode
	all                   []*mnode

	upTime, matrixTime time.Duration
	natTable           string // NAT detection
	decisionTable      string
	cells              []*cell
	cellTable, grid    string
	stillRelayed       []string
	overGoal           []string // direct later than directGoal after the first call
	failoverTable      string
}

var (
	matrixTypes = []string{FullCone, Restricted, PortRestricted, Symmetric}
	matrixShort = map[string]string{FullCone: "fc", Restricted: "r", PortRestricted: "pr", Symmetric: "sym"}
)

func TestNATMatrix(t *testing.T) {
	if err := Check(Options{}); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (CI=true: the NAT lab must run)", err)
		}
		t.Skip(err)
	}
	buildStart := time.Now()
	bin := buildMaculaNode(t)
	built := fmt.Sprintf("built in %v", time.Since(buildStart).Round(time.Second))
	if os.Getenv("NATLAB_MACULA_NODE") != "" {
		built = "prebuilt, from NATLAB_MACULA_NODE"
	}
	help, _ := exec.Command(bin, "--help").CombinedOutput()
	pubsubCLI := strings.Contains(string(help), "publish TOPIC") && strings.Contains(string(help), "subscribe PATTERN")
	only := os.Getenv("NATLAB_MATRIX")
	for _, c := range matrixConfigs {
		if only != "" && only != c.name {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			m := &matrix{t: t, cfg: c, bin: bin, built: built, start: time.Now(), pubsubCLI: pubsubCLI, byName: map[string]*mnode{}}
			m.run(t)
		})
	}
}

// run runs the phases; a phase that leaves nothing to measure ends it.
func (m *matrix) run(t *testing.T) {
	var specs []SiteSpec
	for _, typ := range matrixTypes {
		specs = append(specs, SiteSpec{Name: typ, NAT: typ}, SiteSpec{Name: typ + "2", NAT: typ})
	}
	specs = append(specs, SiteSpec{Name: Hairpin, NAT: PortRestricted, Hosts: 2, Hairpin: true})
	m.lab = New(t, Options{Sites: specs})
	// A bound on the whole configuration, far above what it needs (about
	// two minutes on a quiet machine): the phases wait on conditions, and
	// a loaded machine may make every step slow.
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	m.ctx = ctx
	m.dataRoot = t.TempDir()
	defer m.dumpLogs(t)

	if !t.Run("start", m.startNodes) {
		return
	}
	t.Run("detect", m.detect)
	t.Run("decisions", m.decisions)
	if !t.Run("advertise", m.advertise) {
		return
	}
	t.Run("cells", m.runCells)
	t.Run("failover", m.failover)
	m.report(t)
}

// common are the flags of every node that joins: the two relays as
// bootstrap peers and coturn for STUN.
func (m *matrix) common() []string {
	return []string{"--bootstrap", m.relay.multiaddr(), "--bootstrap", m.relay2.multiaddr(), "--stun", m.lab.STUNAddr()}
}

// startNode starts `macula-node run` for n with the given flags.
func (m *matrix) startNode(n *mnode, flags []string) {
	n.bin = m.bin
	args := []string{m.bin, "run", "--realm", matrixRealm, "--name", n.name,
		"--data-dir", filepath.Join(m.dataRoot, n.name), "--listen", listenAddr,
		"--api", matrixAPI, "--http3", "off"}
	if l := os.Getenv("NATLAB_MATRIX_LOGLEVEL"); l != "" {
		// For diagnosis (debug shows pubsub's and rpc's decisions); the
		// matrix's figures come from the default level.
		args = append(args, "--log-level", l)
	}
	n.proc = n.host.Start(m.t, append(args, flags...)...)
	m.all = append(m.all, n)
}

// dumpLogs logs the tail of every node's log when the test failed or
// NATLAB_MATRIX_LOGS is set; NATLAB_MATRIX_LOGS=/some/dir (an absolute
// path) also writes each whole log there, as <configuration>-<node>.log.
func (m *matrix) dumpLogs(t *testing.T) {
	dir := os.Getenv("NATLAB_MATRIX_LOGS")
	if filepath.IsAbs(dir) {
		for _, n := range m.all {
			if n.proc != nil {
				name := filepath.Join(dir, strings.ReplaceAll(m.cfg.name+"-"+n.name, "/", "_")+".log")
				if err := os.WriteFile(name, []byte(n.proc.Output()), 0o644); err != nil {
					t.Log(err)
				}
			}
		}
	}
	if !t.Failed() && dir == "" {
		return
	}
	for _, n := range m.all {
		if n.proc != nil {
			out := n.proc.Output()
			if len(out) > 12000 {
				out = "...\n" + out[len(out)-12000:]
			}
			t.Logf("---- %s (%s) log:\n%s", n.name, n.typ, out)
		}
	}
}

// startNodes starts the relays (the bootstrap relay first: its peer ID is
// everyone's way in), one node per site (two sites per NAT type), two
// behind the hairpinning router and one on the public host, and waits until
// each has decided its reachability (and holds a reservation if it wants
// one).
func (m *matrix) startNodes(t *testing.T) {
	m.relay = &mnode{name: "relay", typ: "relay", host: m.lab.Relay()}
	m.startNode(m.relay, m.cfg.relay(m))
	if err := m.relay.waitUp(m.ctx, 60*time.Second, ""); err != nil {
		t.Fatal(err)
	}
	m.relay2 = &mnode{name: "relay2", typ: "relay", host: m.lab.Relay2()}
	m.startNode(m.relay2, m.cfg.relay2(m))
	if err := m.relay2.waitUp(m.ctx, 60*time.Second, ""); err != nil {
		t.Fatal(err)
	}
	for _, typ := range matrixTypes {
		for k, site := range []string{typ, typ + "2"} {
			n := &mnode{name: fmt.Sprintf("%s%d", matrixShort[typ], k+1), typ: typ, site: m.lab.Site(site), host: m.lab.Site(site).Host}
			m.startNode(n, m.cfg.site(m))
			m.natNodes = append(m.natNodes, n)
			m.byName[n.name] = n
		}
	}
	for k, h := range m.lab.Site(Hairpin).Hosts {
		n := &mnode{name: fmt.Sprintf("hp%d", k+1), typ: PortRestricted, site: m.lab.Site(Hairpin), host: h}
		m.startNode(n, m.cfg.site(m))
		m.natNodes = append(m.natNodes, n)
		m.byName[n.name] = n
	}
	m.public = &mnode{name: "pub", typ: "open", host: m.lab.Public()}
	m.startNode(m.public, m.cfg.public(m))

	var wg sync.WaitGroup
	errs := make([]error, len(m.all))
	for i, n := range m.all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.nat, errs[i] = n.waitDecided(m.ctx, 90*time.Second)
		}()
	}
	wg.Wait()
	for i, n := range m.all {
		switch {
		case errs[i] == nil:
		case n.id == "":
			t.Fatal(errs[i]) // no API: nothing to measure
		default:
			// No decision or reservation: go on, the matrix shows what that
			// costs.
			t.Errorf("%v", errs[i])
		}
	}
	m.upTime = time.Since(m.start)
}

// detect: `nat info` in every site must give the type (and the hairpin
// behaviour) that the site's router really has.
func (m *matrix) detect(t *testing.T) {
	type natRow struct {
		n    *mnode
		info natJSON
		err  string
	}
	rows := make([]*natRow, 0, len(m.natNodes)+1)
	for _, n := range append(slices.Clone(m.natNodes), m.public) {
		rows = append(rows, &natRow{n: n})
	}
	var wg sync.WaitGroup
	for _, r := range rows {
		wg.Add(1)
		go func() {
			defer wg.Done()
			deadline := time.Now().Add(60 * time.Second)
			for time.Now().Before(deadline) {
				info, err := r.n.natInfo(m.ctx)
				if err != nil {
					r.err = err.Error()
				} else {
					r.info, r.err = info, info.Error
					if info.MeasuredAt != "" && info.Type != "unknown" && info.Type != "" {
						return
					}
				}
				time.Sleep(300 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	var tb strings.Builder
	fmt.Fprintf(&tb, "| node | router (truth) | nat info type | mapping / filtering | hairpin (truth) | public | error |\n|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		want := r.n.typ
		hp, wantHP := "-", "-"
		if r.info.Hairpin != nil {
			hp = fmt.Sprint(*r.info.Hairpin)
		}
		if r.n.site != nil {
			wantHP = fmt.Sprint(r.n.site.Hairpin)
		}
		i := r.info
		fmt.Fprintf(&tb, "| %s | %s | %s | %s / %s | %s (%s) | %s:%d | %s |\n", r.n.name, want, i.Type, i.Mapping, i.Filtering, hp, wantHP, i.PublicIP, i.PublicPort, r.err)
		// Two hosts behind one router (the hairpin site) both use port
		// 7400: Linux NAT keeps a source port only where that mapping is
		// free, so the second host gets another port towards the
		// destinations the first already uses on 7400, and the same port
		// towards the others. Its mapping then really depends on the
		// destination, and symmetric is a right answer for it.
		// The router's loopback then sends what arrives at the shared
		// public port to whichever host used it last (its map is keyed by
		// the mapped port), so a hairpin test may well reach the other host:
		// hairpin false is a right answer too (seen once in CI).
		shared := r.n.site != nil && r.n.site.Hairpin && i.Type == "symmetric"
		if i.Type != want && !shared {
			t.Errorf("nat info in %s (%s router): type %q (%s / %s), error %q", r.n.name, want, i.Type, i.Mapping, i.Filtering, r.err)
		}
		if r.n.site != nil && hp != wantHP && !shared {
			t.Errorf("nat info in %s: hairpin %s, router: %s", r.n.name, hp, wantHP)
		}
	}
	m.natTable = tb.String()
}

// publicType reports whether a node of type typ is reachable from outside:
// no NAT, or a full cone (its mapped port takes anyone's packets).
func publicType(typ string) bool { return typ == "relay" || typ == "open" || typ == FullCone }

// decisions: every node's reachability decision and what follows from it.
// With the default flags the nodes must find out for themselves what the
// lab's routers do; with the tuned flags, they follow the flags.
func (m *matrix) decisions(t *testing.T) {
	var tb strings.Builder
	fmt.Fprintf(&tb, "| node | type | reachability | DHT | relay reservations | relay service | reason |\n|---|---|---|---|---|---|---|\n")
	for _, n := range m.all {
		info, err := n.natInfo(m.ctx)
		if err != nil || info.Reachability == nil {
			t.Errorf("%s: no decision: %v", n.name, err)
			continue
		}
		d := info.Reachability
		dhtMode := "client"
		if d.DHTServer {
			dhtMode = "server"
		}
		fmt.Fprintf(&tb, "| %s | %s | %s | %s | %v | %v | %s |\n", n.name, n.typ, d.Reachability, dhtMode, d.RelayReservations, d.RelayService, d.Reason)
		public := publicType(n.typ)
		if m.cfg.name == "tuned" {
			public = n.typ == "relay" || n.typ == "open" // forced
		}
		if (d.Reachability == "public") != public || d.DHTServer != public || d.RelayReservations == public || d.RelayService != public {
			t.Errorf("%s (%s): decided %+v, want public=%v with DHT server and relay service only then, reservations otherwise", n.name, n.typ, *d, public)
		}
	}
	m.decisionTable = tb.String()
}

// advertise starts, in each NATed node's namespace, an HTTP echo server
// (the test binary in helper mode), `macula-node advertise` of it, and
// `macula-node subscribe` of the node's cell topic.
func (m *matrix) advertise(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var failed atomic.Bool
	for _, n := range m.natNodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := n.host.Command(context.Background(), exe)
			cmd.Env = append(os.Environ(), "NATLAB_MATRIX_ECHO="+echoAddr)
			echo := n.host.StartCommand(m.t, cmd)
			adv := n.host.Start(m.t, m.bin, "advertise", n.procedure(), "--url", "http://"+echoAddr+"/echo", "--api", matrixAPI)
			if m.pubsubCLI {
				n.sub = n.host.Start(m.t, m.bin, "subscribe", n.topic(), "--json", "--api", matrixAPI)
			}
			deadline := time.Now().Add(60 * time.Second)
			for time.Now().Before(deadline) {
				if strings.Contains(adv.Output(), "advertised") && strings.Contains(echo.Output(), "ready") &&
					(n.sub == nil || strings.Contains(n.sub.Output(), "subscribed to")) {
					return
				}
				select {
				case <-adv.Done():
					failed.Store(true)
					t.Errorf("%s: advertise exited: %s", n.name, adv.Output())
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
			failed.Store(true)
			t.Errorf("%s: not advertised within 20s: %s / %s", n.name, adv.Output(), echo.Output())
		}()
	}
	wg.Wait()
	if failed.Load() {
		t.FailNow()
	}
}

// runCells runs every cell at once: every ordered pair of NAT types on
// distinct nodes (callee type row, caller type column; same-type pairs on
// the two sites of that type), the public node calling each type, and the
// two hairpin hosts.
func (m *matrix) runCells(t *testing.T) {
	node := func(typ string, k int) *mnode { return m.byName[fmt.Sprintf("%s%d", matrixShort[typ], k)] }
	for i, a := range matrixTypes {
		for j, b := range matrixTypes {
			switch {
			case i == j:
				m.cells = append(m.cells, &cell{callee: node(a, 1), caller: node(b, 2)})
			case i < j:
				m.cells = append(m.cells, &cell{callee: node(a, 1), caller: node(b, 1)})
			default:
				m.cells = append(m.cells, &cell{callee: node(a, 2), caller: node(b, 2), reverse: true})
			}
		}
	}
	for _, a := range matrixTypes {
		m.cells = append(m.cells, &cell{callee: node(a, 1), caller: m.public})
	}
	m.cells = append(m.cells, &cell{callee: m.byName["hp1"], caller: m.byName["hp2"], hairpin: true})

	start := time.Now()
	var wg sync.WaitGroup
	for _, c := range m.cells {
		wg.Add(1)
		go func() { defer wg.Done(); c.run(m.ctx) }()
	}
	wg.Wait()
	m.matrixTime = time.Since(start)
	m.cellTables(t)
}

// cellTables writes the cells' tables and checks their outcomes: every
// call and message gets through, and wantDirect's pairs end direct. The
// time to a direct path is printed beside directGoal, never asserted.
func (m *matrix) cellTables(t *testing.T) {
	var tb strings.Builder
	fmt.Fprintf(&tb, "| cell (callee <- caller) | types (callee / caller) | call | first call | path at first call | direct at | direct after the first call | path after wait | via | rtt ms | pub/sub | go-libp2p alone |\n")
	fmt.Fprintf(&tb, "|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, c := range m.cells {
		call := "ok"
		if !c.ok {
			call = "FAIL"
		}
		ref := "-"
		if c.caller.typ != "open" {
			ref = "relayed"
			if goLibp2pDirect(c.callee.typ, c.caller.typ) {
				ref = "direct"
			}
		}
		pre := ""
		if c.preconnected {
			pre = " (already connected)"
		}
		types := c.callee.typ + " / " + c.caller.typ
		if c.hairpin {
			types, ref = "hairpin (one port_restricted router)", "-"
		}
		ps := "not measured"
		switch {
		case c.pubsub:
			ps = fmt.Sprintf("ok %s (%d sent)", ms(c.pubsubAt), c.publishes)
		case c.callee.sub != nil && c.ok:
			ps = "FAIL"
			t.Errorf("cell %s: pub/sub: nothing arrived within %v: %s", c.label(), cellPubSubBudget, c.pubsubErr)
		}
		after := "-"
		if c.direct > 0 {
			after = "0 (direct at once)"
			if d := c.toDirect(); d > 0 {
				after = ms(d)
			}
			if d := c.toDirect(); d > directGoal {
				after += " (over the goal)"
				m.overGoal = append(m.overGoal, fmt.Sprintf("%s %s", c.label(), ms(d)))
			}
		}
		fmt.Fprintf(&tb, "| %s%s | %s | %s | %s | %s | %s | %s | %s | %s | %.1f | %s | %s |\n", c.label(), pre, types,
			call, ms(c.firstCall), c.pathAtFirst, c.directAt(), after, c.pathAtEnd, shortAddr(c.addr, m.relay, m.relay2), c.rtt, ps, ref)
		if !c.ok {
			t.Errorf("cell %s: no successful call within %v (%d attempts): %s", c.label(), cellCallBudget, c.attempts, c.err)
			continue
		}
		if c.pathAtEnd != "direct" {
			m.stillRelayed = append(m.stillRelayed, fmt.Sprintf("%s (%s / %s)", c.label(), c.callee.typ, c.caller.typ))
			if c.wantDirect() {
				t.Errorf("cell %s: still relayed %v after the first call; the lab's routers let %s / %s punch", c.label(), cellDirectBudget, c.callee.typ, c.caller.typ)
			}
		}
	}
	m.cellTable = tb.String()

	// The grid: path after the wait, and the time to direct.
	var grid strings.Builder
	fmt.Fprintf(&grid, "| callee \\ caller | %s | public |\n|---|---|---|---|---|---|\n", strings.Join(matrixTypes, " | "))
	for _, a := range matrixTypes {
		fmt.Fprintf(&grid, "| %s |", a)
		for _, b := range append(slices.Clone(matrixTypes), "open") {
			for _, c := range m.cells {
				if c.callee.typ == a && c.caller.typ == b && !c.hairpin {
					s := "FAIL"
					switch {
					case c.ok && c.pathAtEnd == "direct":
						s = "direct " + c.directAt()
					case c.ok:
						s = "relayed " + ms(c.firstCall)
					}
					fmt.Fprintf(&grid, " %s |", s)
				}
			}
		}
		grid.WriteString("\n")
	}
	m.grid = grid.String()
}

// circuitRelays names the relays of the circuit addresses among addrs
// ("none" for none).
func (m *matrix) circuitRelays(addrs []string) string {
	var via []string
	for _, a := range addrs {
		if strings.Contains(a, "p2p-circuit") {
			via = append(via, m.relayVia(a))
		}
	}
	slices.Sort(via)
	if res := strings.Join(slices.Compact(via), ", "); res != "" {
		return res
	}
	return "none"
}

// relayVia names the relay of a relayed address ("direct" for none).
func (m *matrix) relayVia(addr string) string {
	switch {
	case addr == "":
		return "direct"
	case strings.Contains(addr, m.relay.id):
		return "relay"
	case strings.Contains(addr, m.relay2.id):
		return "relay2"
	}
	return addr
}

// failover kills the bootstrap relay (SIGKILL). Calls to the nodes behind
// symmetric NAT (over relayed paths) must work again through relay2, pairs
// already direct must not notice, and the symmetric-NAT nodes must drop the
// dead relay's address and hold relay2's.
func (m *matrix) failover(t *testing.T) {
	type foRow struct {
		c         *cell
		viaBefore string
		viaAfter  string
		recovered time.Duration
		attempts  int
		err       string
		// pubsub: a message published right after the recovered call
		// reached the callee's subscriber (with one publish).
		pubsub string
	}
	var fos []*foRow
	for _, c := range m.cells {
		if c.callee.typ == Symmetric && c.ok {
			f := &foRow{c: c}
			if p, ok, err := c.caller.peer(m.ctx, c.callee.id); err == nil && ok && p.Path == "relayed" {
				f.viaBefore = p.Addrs[0]
			}
			fos = append(fos, f)
		}
	}
	// The relays that the symmetric-NAT nodes hold reservations with
	// before the kill (their circuit addresses).
	symBefore := map[string]string{}
	for _, n := range m.natNodes {
		if n.typ == Symmetric {
			symBefore[n.name] = "?"
			if err := n.waitUp(m.ctx, 15*time.Second, ""); err == nil {
				symBefore[n.name] = m.circuitRelays(n.addrs)
			}
		}
	}
	killAt := time.Now()
	m.relay.proc.Kill()
	var wg sync.WaitGroup
	for _, f := range fos {
		wg.Add(1)
		go func() {
			defer wg.Done()
			payload := fmt.Sprintf(`{"failover":%q}`, f.c.label())
			for time.Since(killAt) < failoverBudget && m.ctx.Err() == nil {
				f.attempts++
				out, err := f.c.caller.cli(m.ctx, 20*time.Second, "call", f.c.callee.procedure(), "--data", payload, "--timeout", "5s", "--raw")
				// Any call that succeeds after the kill counts, whatever path
				// it took (a direct one, or relay2).
				if err == nil && strings.Contains(string(out), f.c.label()) {
					f.recovered, f.err = time.Since(killAt), ""
					// One publish, right away: a pair on a direct path must
					// not lose it (its link moved off the relay).
					mark := "after-kill-" + f.c.key()
					f.pubsub = "lost"
					if _, err := f.c.caller.cli(m.ctx, 15*time.Second, "publish", f.c.callee.topic(), "--data", fmt.Sprintf(`{"m":%q}`, mark)); err == nil {
						for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
							if strings.Contains(f.c.callee.sub.Output(), mark) {
								f.pubsub = "ok"
								break
							}
						}
					}
					if p, ok, err := f.c.caller.peer(m.ctx, f.c.callee.id); err == nil && ok {
						f.viaAfter = "direct"
						if p.Path == "relayed" {
							f.viaAfter = m.relayVia(p.Addrs[0])
						}
					}
					return
				}
				if err != nil {
					f.err = err.Error()
				}
				time.Sleep(100 * time.Millisecond)
			}
		}()
	}
	// Meanwhile: the symmetric-NAT nodes' relayed addresses.
	var symMu sync.Mutex
	symReserved := map[string]string{}
	for _, n := range m.natNodes {
		if n.typ != Symmetric {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, at := "none", time.Duration(0)
			for time.Since(killAt) < failoverBudget && m.ctx.Err() == nil {
				err := n.waitUp(m.ctx, 15*time.Second, "")
				res = m.circuitRelays(n.addrs)
				if err == nil && res == "relay2" {
					at = time.Since(killAt)
					break
				}
				time.Sleep(250 * time.Millisecond)
			}
			symMu.Lock()
			defer symMu.Unlock()
			if at > 0 {
				symReserved[n.name] = fmt.Sprintf("%s (%s after the kill)", res, ms(at))
			} else {
				symReserved[n.name] = res + " (still, " + ms(failoverBudget) + " after the kill)"
				t.Errorf("%s: relayed addresses %q %v after the relay died, want relay2's only: %v", n.name, res, failoverBudget, n.addrs)
			}
		}()
	}
	wg.Wait()
	var fo strings.Builder
	fmt.Fprintf(&fo, "| pair (callee <- caller) | path before | calls work again after | path after | attempts | one message published then |\n|---|---|---|---|---|---|\n")
	for _, f := range fos {
		fmt.Fprintf(&fo, "| %s | %s | %s | %s | %d | %s |\n", f.c.label(), m.relayVia(f.viaBefore), ms(f.recovered), f.viaAfter, f.attempts, f.pubsub)
		if f.viaBefore == "" && m.pubsubCLI && f.pubsub != "ok" {
			t.Errorf("relay failover: %s was direct, yet a message published after the relay's death was %s", f.c.label(), f.pubsub)
		}
		if f.recovered == 0 {
			t.Errorf("relay failover: %s: no successful call within %v of the relay's death: %s", f.c.label(), failoverBudget, f.err)
		}
		// A pair already on a direct path must not notice the relay's
		// death: its calls moved onto the direct connection.
		if f.viaBefore == "" && f.attempts != 1 {
			t.Errorf("relay failover: %s was direct, yet its first %d call(s) after the relay's death failed: %s", f.c.label(), f.attempts-1, f.err)
		}
	}
	fmt.Fprintf(&fo, "\nRelayed addresses of the symmetric-NAT nodes before the kill: ")
	for _, n := range []string{"sym1", "sym2"} {
		fmt.Fprintf(&fo, "%s: %s; ", n, symBefore[n])
	}
	fmt.Fprintf(&fo, "after the relay died: ")
	for _, n := range []string{"sym1", "sym2"} {
		fmt.Fprintf(&fo, "%s: %s; ", n, symReserved[n])
	}
	fo.WriteString("\n")
	m.failoverTable = fo.String()
}

// report logs the tables and, with NATLAB_MATRIX_DOC=1, writes them into
// docs/nat.md.
func (m *matrix) report(t *testing.T) {
	ps := "Pub/sub: `macula-node publish` / `subscribe` are not in this binary's CLI; not measured."
	if m.pubsubCLI {
		ps = "Pub/sub: in each cell, once the call worked, the caller published to a topic that the callee's `macula-node subscribe` listens to (again every 0.4 s until one arrived); the time is from the start of the cell."
	}
	load := "?"
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	report := fmt.Sprintf(`Run %s, configuration %q (macula-node %s; lab and %d nodes up and decided after %v, matrix %v, whole run %v; load average %s).

### Reachability decisions (`+"`macula-node nat info --json`"+`)

%s
### Cells

%s
Still relayed after the wait: %s.

Direct later than %v after the first call (the issue's goal; measured, not asserted): %s.

### Paths (once direct, or after the wait; time from the start of the cell)

%s
### NAT detection

%s
### Relay failure (relay killed; times from the kill)

%s
%s
`, time.Now().UTC().Format(time.RFC3339), m.cfg.name, m.built, len(m.all), m.upTime.Round(time.Millisecond),
		m.matrixTime.Round(time.Millisecond), time.Since(m.start).Round(time.Millisecond), load,
		m.decisionTable, m.cellTable, orNone(m.stillRelayed), directGoal, orNone(m.overGoal), m.grid, m.natTable, m.failoverTable, ps)
	t.Log("\n" + report)
	fmt.Println(report)
	if os.Getenv("NATLAB_MATRIX_DOC") == "1" {
		if err := writeMatrixDoc(m.cfg.doc, report); err != nil {
			t.Errorf("docs/nat.md: %v", err)
		}
	}
}

// orNone joins a list for the report.
func orNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, ", ")
}
