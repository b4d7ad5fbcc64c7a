package natlab

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/macula-io/macula/internal/testnet"
)

// The processes, cells and reports of the NAT matrix (matrix_test.go).

const (
	matrixRealm = "io.natlab.test"
	matrixAPI   = "127.0.0.1:7401" // every namespace has its own loopback
	echoAddr    = "127.0.0.1:18080"
	listenAddr  = "/ip4/0.0.0.0/udp/7400/quic-v1"

	// The waits are generous: they bound waiting for an outcome on a
	// loaded machine, they are not goals. A pair that a first punch left
	// relayed is punched again 15 s, 45 s and 105 s after its relayed
	// connection opened (nat/punch, retry.go).
	cellCallBudget   = 60 * time.Second  // to the first successful call
	cellDirectBudget = 120 * time.Second // after it, waiting for a direct path (wantDirect's pairs)
	cellSettle       = 12 * time.Second  // after it, watching the path of the others
	cellPubSubBudget = 30 * time.Second  // after it, publishing until one arrives
	failoverBudget   = 60 * time.Second
	// directGoal: the goal, a direct path within this time of the
	// first successful call; measured and printed, not asserted.
	directGoal = 2 * time.Second
)

// init turns the test binary into the matrix's webhook (an HTTP echo server
// on NATLAB_MATRIX_ECHO) when it runs as a helper inside a namespace; it
// runs before TestMain.
func init() {
	if addr := os.Getenv("NATLAB_MATRIX_ECHO"); addr != "" {
		os.Exit(runEchoServer(addr))
	}
}

// runEchoServer answers every POST with its body and Content-Type, prints
// "ready" once listening, and stops on SIGTERM.
func runEchoServer(addr string) int {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if ct := r.Header.Get("Content-Type"); ct != "" {
			w.Header().Set("Content-Type", ct)
		}
		w.Write(body)
	})}
	go srv.Serve(ln)
	fmt.Println("ready")
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	<-ch
	srv.Close()
	return 0
}

// mnode is one macula-node process of the matrix.
type mnode struct {
	name  string // node name, also the label in the tables
	typ   string // the router's NAT type, or "open" / "relay"
	site  *Site  // nil on public hosts
	host  *Host
	sub   *Proc // `macula-node subscribe` of its cell topic
	proc  *Proc
	nat   natJSON  // its nat info once decided
	id    string   // peer ID
	addrs []string // from `id --json`
	bin   string
}

// cli runs `macula-node ARGS --api 127.0.0.1:7401` in the node's namespace
// and returns its stdout.
func (n *mnode) cli(ctx context.Context, timeout time.Duration, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := n.host.Command(ctx, append(append([]string{n.bin}, args...), "--api", matrixAPI)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s: macula-node %s: %v: %s", n.name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

type peerJSON struct {
	PeerID string   `json:"peer_id"`
	Name   string   `json:"name"`
	Addrs  []string `json:"addrs"`
	Path   string   `json:"path"`
	RTT    float64  `json:"rtt_ms"`
	// DirectSince: when the caller's node opened its oldest direct
	// connection to the peer (its own clock; the lab's namespaces share it).
	DirectSince *time.Time `json:"direct_since"`
}

// peer returns what n's peers list says of the peer with ID id, if listed.
func (n *mnode) peer(ctx context.Context, id string) (peerJSON, bool, error) {
	out, err := n.cli(ctx, 15*time.Second, "peers", "--json")
	if err != nil {
		return peerJSON{}, false, err
	}
	var ps []peerJSON
	if err := json.Unmarshal(out, &ps); err != nil {
		return peerJSON{}, false, fmt.Errorf("%s: peers --json: %v: %s", n.name, err, out)
	}
	for _, p := range ps {
		if p.PeerID == id {
			return p, true, nil
		}
	}
	return peerJSON{}, false, nil
}

func (n *mnode) procedure() string { return matrixRealm + ".echo." + n.name }

func (n *mnode) topic() string { return matrixRealm + ".cell." + n.name }

func (n *mnode) multiaddr() string {
	return fmt.Sprintf("/ip4/%s/udp/7400/quic-v1/p2p/%s", n.host.Addr, n.id)
}

// waitUp polls `id --json` until the API answers (and, if want is given,
// until an address contains it).
func (n *mnode) waitUp(ctx context.Context, within time.Duration, want string) error {
	deadline := time.Now().Add(within)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-n.proc.Done():
			return fmt.Errorf("%s exited: %v\n%s", n.name, n.proc.Wait(), n.proc.Output())
		default:
		}
		out, err := n.cli(ctx, 10*time.Second, "id", "--json")
		if err == nil {
			var info struct {
				PeerID string   `json:"peer_id"`
				Addrs  []string `json:"addrs"`
			}
			if err = json.Unmarshal(out, &info); err == nil {
				if n.id == "" {
					n.id = info.PeerID
				}
				n.addrs = info.Addrs
				if want == "" || slices.ContainsFunc(info.Addrs, func(a string) bool { return strings.Contains(a, want) }) {
					return nil
				}
				err = fmt.Errorf("no address with %q yet: %v", want, info.Addrs)
			}
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("%s not up within %v: %v", n.name, within, last)
}

// cell is one pair: the caller calls the callee's procedure.
type cell struct {
	callee, caller *mnode
	reverse        bool // the second run of a pair of types, other way round
	hairpin        bool // both behind the hairpin router

	preconnected bool
	ok           bool
	attempts     int
	firstCall    time.Duration // from the start of the cell
	pathAtFirst  string
	direct       time.Duration // from the start of the cell, as a peers poll saw it; 0: never
	// directOpened: when the caller's node opened the direct connection,
	// from the start of the cell (negative: before it), if the node said.
	directOpened time.Duration
	directKnown  bool
	pathAtEnd    string
	rtt          float64
	relayAddr    string // the caller's address of the callee, if relayed
	addr         string // the caller's address of the callee at the end
	err          string

	pubsub    bool          // a published message reached the callee's subscriber
	pubsubAt  time.Duration // from the start of the cell
	publishes int
	pubsubErr string
}

// key names the cell in payloads: plain characters only.
func (c *cell) key() string { return c.callee.name + "_from_" + c.caller.name }

func (c *cell) label() string { return c.callee.name + " <- " + c.caller.name }

// run calls until the first success (bounded), then waits (bounded) for the
// path to become direct.
func (c *cell) run(ctx context.Context) {
	start := time.Now()
	if _, ok, _ := c.caller.peer(ctx, c.callee.id); ok {
		c.preconnected = true
	}
	payload := fmt.Sprintf(`{"cell":%q}`, c.label())
	for time.Since(start) < cellCallBudget && ctx.Err() == nil {
		c.attempts++
		out, err := c.caller.cli(ctx, 20*time.Second, "call", c.callee.procedure(), "--data", payload, "--timeout", "4s", "--raw")
		if err == nil && strings.Contains(string(out), c.label()) {
			c.ok, c.firstCall = true, time.Since(start)
			break
		}
		if err != nil {
			c.err = err.Error()
		} else {
			c.err = fmt.Sprintf("wrong echo %q", out)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if !c.ok {
		return
	}
	c.err = ""
	var psDone sync.WaitGroup
	if c.callee.sub != nil {
		psDone.Add(1)
		go func() {
			defer psDone.Done()
			c.publish(ctx, start)
		}()
	}
	defer psDone.Wait()
	p, ok, err := c.caller.peer(ctx, c.callee.id)
	if err != nil || !ok {
		c.pathAtFirst = "?"
	} else {
		c.pathAtFirst = p.Path
	}
	c.pathAtEnd = c.pathAtFirst
	if c.pathAtFirst == "direct" {
		c.direct = time.Since(start)
		c.directFrom(p, start)
	} else {
		wait := cellSettle
		if c.wantDirect() {
			wait = cellDirectBudget
		}
		until := time.Now().Add(wait)
		for time.Now().Before(until) && ctx.Err() == nil {
			time.Sleep(250 * time.Millisecond)
			if p, ok, err := c.caller.peer(ctx, c.callee.id); err == nil && ok {
				c.pathAtEnd = p.Path
				if p.Path == "direct" {
					c.direct = time.Since(start)
					c.directFrom(p, start)
					break
				}
			}
		}
	}
	if p, ok, err := c.caller.peer(ctx, c.callee.id); err == nil && ok {
		c.pathAtEnd, c.rtt = p.Path, p.RTT
		if p.Path == "relayed" && len(p.Addrs) > 0 {
			c.relayAddr = p.Addrs[0]
		}
		for _, a := range p.Addrs {
			if c.addr == "" || p.Path == "direct" && !strings.Contains(a, "p2p-circuit") {
				c.addr = a
			}
		}
	}
}

// directFrom keeps when the caller's node says its direct connection
// opened: a peers poll sees it only after a CLI process's start, which took
// seconds on a loaded machine.
func (c *cell) directFrom(p peerJSON, start time.Time) {
	if p.DirectSince != nil {
		c.directOpened, c.directKnown = p.DirectSince.Sub(start), true
	}
}

// toDirect is how long after the first successful call (its CLI process's
// return) the path was direct: by the node's clock where it said, else by
// the peers poll. Zero when it was direct by then.
func (c *cell) toDirect() time.Duration {
	if c.directKnown {
		return max(c.directOpened-c.firstCall, 0)
	}
	return max(c.direct-c.firstCall, 0)
}

// directAt renders when the path became direct, from the start of the cell.
func (c *cell) directAt() string {
	switch {
	case c.directKnown && c.directOpened <= 0:
		return "before the cell"
	case c.directKnown:
		return ms(c.directOpened)
	}
	return ms(c.direct)
}

// publish publishes to the callee's topic from the caller until the
// callee's subscriber prints the message (pub/sub is at most once, and the
// caller's node may not know of the subscription at first).
func (c *cell) publish(ctx context.Context, start time.Time) {
	payload := fmt.Sprintf(`{"pcell":%q}`, c.key())
	until := time.Now().Add(cellPubSubBudget)
	for time.Now().Before(until) && ctx.Err() == nil {
		c.publishes++
		if _, err := c.caller.cli(ctx, 15*time.Second, "publish", c.callee.topic(), "--data", payload); err != nil {
			c.pubsubErr = err.Error()
		}
		for range 4 {
			if strings.Contains(c.callee.sub.Output(), c.key()) {
				c.pubsub, c.pubsubAt, c.pubsubErr = true, time.Since(start), ""
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if c.pubsubErr == "" {
		c.pubsubErr = fmt.Sprintf("%d messages published, none arrived", c.publishes)
	}
}

func ms(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

// wantDirect reports whether the lab's routers let the cell's pair punch
// a direct path.
func (c *cell) wantDirect() bool {
	return c.caller.typ == "open" || c.hairpin || wantDirect(c.callee.typ, c.caller.typ)
}

// wantDirect: the pairs that the lab gets direct (with the tuned flags,
// before the defaults worked): all but symmetric with symmetric. The callee
// is the hole punch's initiator, the caller its dialer.
func wantDirect(callee, caller string) bool {
	return !(callee == Symmetric && caller == Symmetric)
}

// goLibp2pDirect: the pairs (DCUtR initiator = callee, QUIC dialer =
// caller) that go-libp2p v0.51's hole punching alone got direct in this
// lab (../shared/natlab.md): all but port-restricted with symmetric and
// symmetric with symmetric.
func goLibp2pDirect(a, b string) bool {
	hard := func(x string) bool { return x == PortRestricted || x == Symmetric }
	if a == Symmetric && hard(b) || b == Symmetric && hard(a) {
		return false
	}
	return true
}

// buildMaculaNode returns the macula-node binary that the lab's tests run:
// NATLAB_MACULA_NODE, or ./cmd/macula-node built once for the whole test
// binary (removed by TestMain).
func buildMaculaNode(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("NATLAB_MACULA_NODE"); p != "" {
		return p
	}
	built.once.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Dir(filepath.Dir(file))
		dir, err := os.MkdirTemp("", "natlab-bin-*")
		if err != nil {
			built.err = err
			return
		}
		built.dir = dir
		bin := filepath.Join(dir, "macula-node")
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if out, err := testnet.BuildNode(ctx, root, "./cmd/macula-node", bin); err != nil {
			built.err = fmt.Errorf("go build ./cmd/macula-node: %v\n%s", err, out)
			return
		}
		built.bin = bin
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.bin
}

// built is the macula-node binary built for this test binary.
var built struct {
	once     sync.Once
	dir, bin string
	err      error
}

// removeBuilt deletes the binary that buildMaculaNode built.
func removeBuilt() {
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
}

// shortAddr names a relayed address by its relay, a direct one by its IP
// and port.
func shortAddr(a string, relay, relay2 *mnode) string {
	switch {
	case a == "":
		return "-"
	case strings.Contains(a, "p2p-circuit") && strings.Contains(a, relay.id):
		return "relay"
	case strings.Contains(a, "p2p-circuit") && strings.Contains(a, relay2.id):
		return "relay2"
	}
	f := strings.Split(a, "/")
	if len(f) >= 5 {
		return f[2] + ":" + f[4]
	}
	return a
}

// writeMatrixDoc puts report between the markers <!-- name:begin --> and
// <!-- name:end --> of docs/nat.md.
func writeMatrixDoc(name, report string) error {
	_, file, _, _ := runtime.Caller(0)
	path := filepath.Join(filepath.Dir(filepath.Dir(file)), "docs", "nat.md")
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	begin, end := "<!-- "+name+":begin -->", "<!-- "+name+":end -->"
	s := string(b)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		return fmt.Errorf("no %s ... %s markers", begin, end)
	}
	s = s[:i+len(begin)] + "\n" + report + "\n" + s[j:]
	return os.WriteFile(path, []byte(s), 0o644)
}

// natJSON is what `nat info --json` says.
type natJSON struct {
	Type, Mapping, Filtering, Error string
	PublicIP                        string `json:"public_ip"`
	PublicPort                      int    `json:"public_port"`
	Hairpin                         *bool  `json:"hairpin"`
	MeasuredAt                      string `json:"measured_at"`
	Reachability                    *struct {
		Reachability      string `json:"reachability"`
		Reason            string `json:"reason"`
		DHTServer         bool   `json:"dht_server"`
		RelayReservations bool   `json:"relay_reservations"`
		RelayService      bool   `json:"relay_service"`
	} `json:"reachability"`
}

func (n *mnode) natInfo(ctx context.Context) (natJSON, error) {
	var info natJSON
	out, err := n.cli(ctx, 15*time.Second, "nat", "info", "--json")
	if err == nil {
		err = json.Unmarshal(out, &info)
	}
	return info, err
}

// waitDecided polls until the node's NAT type is measured and its
// reachability decided (not unknown), and its addresses agree with the
// decision: a relayed address while it keeps reservations.
func (n *mnode) waitDecided(ctx context.Context, within time.Duration) (natJSON, error) {
	deadline := time.Now().Add(within)
	var last error
	var info natJSON
	for time.Now().Before(deadline) && ctx.Err() == nil {
		select {
		case <-n.proc.Done():
			return info, fmt.Errorf("%s exited: %v\n%s", n.name, n.proc.Wait(), n.proc.Output())
		default:
		}
		var err error
		info, err = n.natInfo(ctx)
		switch {
		case err != nil:
			last = err
		case info.Reachability == nil:
			return info, fmt.Errorf("%s: nat info has no reachability decision", n.name)
		case info.MeasuredAt == "" || info.Reachability.Reachability == "unknown":
			last = fmt.Errorf("not decided yet: %s (%s)", info.Reachability.Reachability, info.Reachability.Reason)
		default:
			want := ""
			if info.Reachability.RelayReservations {
				want = "p2p-circuit"
			}
			if err := n.waitUp(ctx, 10*time.Second, want); err != nil {
				last = err
				continue
			}
			return info, nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return info, fmt.Errorf("%s not decided within %v: %v", n.name, within, last)
}
