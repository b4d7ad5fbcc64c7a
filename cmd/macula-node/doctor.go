package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/libp2p/go-libp2p/config"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
	"github.com/spf13/cobra"

	"github.com/macula-io/macula/api"
	"github.com/macula-io/macula/internal/p2phost"
	"github.com/macula-io/macula/nat"
	"github.com/macula-io/macula/node"
	"github.com/macula-io/macula/peerdid"
	"github.com/macula-io/macula/ucan"
)

// doctor checks a node's setup the way an operator would by hand, and says
// what is wrong in plain words with what to do about it. It takes run's
// flags (and --config, MACULA_*), so `macula-node doctor --config F` checks
// the node that `macula-node run --config F` starts. When that node is
// running (its API answers), the node's own view is asked: NAT, relays,
// peers, clock skew, its grant. When it is not, doctor checks from this
// host alone what it can: the data directory, the ports, STUN (from a
// socket of its own), the bootstrap peers (a QUIC dial with a throwaway
// key) and the --ucan files.

// Statuses of a doctor check.
const (
	checkOK   = "ok"
	checkWarn = "warn"
	checkFail = "fail"
)

// doctorCheck is one line of doctor's report.
type doctorCheck struct {
	// Check names what was checked: config, data_dir, node, ports, stun,
	// nat, reachability, relays, bootstrap, clock, tokens.
	Check  string `json:"check"`
	Status string `json:"status"`
	// Summary says what was found, Fix what to do (warn and fail only).
	Summary string `json:"summary"`
	Fix     string `json:"fix,omitempty"`
}

// doctorReport is what doctor prints (--json: as it is).
type doctorReport struct {
	Realm string `json:"realm,omitempty"`
	Name  string `json:"name,omitempty"`
	// Running: a node of this realm answered at API.
	Running bool   `json:"running"`
	API     string `json:"api"`
	// NATType is the NAT type measured (by the node, or by doctor's own
	// probe when the node is not running); "" when not measured.
	NATType string `json:"nat_type,omitempty"`
	// Direct: peers can reach this node directly, without hole punching
	// (open or full-cone NAT).
	Direct bool `json:"direct"`
	// Relays are the peer IDs of the relays the node holds reservations
	// with (a running node only).
	Relays []string      `json:"relays"`
	Checks []doctorCheck `json:"checks"`
	// Failed counts the checks whose status is fail.
	Failed int `json:"failed"`
}

func (r *doctorReport) add(c doctorCheck) {
	if c.Status == checkFail {
		r.Failed++
	}
	r.Checks = append(r.Checks, c)
}

// doctorWait bounds the whole of doctor without --timeout: a STUN probe
// takes a few seconds, a bootstrap dial at most doctorDialWait.
const (
	doctorWait     = 60 * time.Second
	doctorDialWait = 10 * time.Second
	// Clock skew: UCAN validity windows have 60 s of leeway; beyond half
	// of it tokens that were just issued may be refused.
	skewWarn = 5 * time.Second
	skewFail = 30 * time.Second
	// A grant that ends within tokenWarn is reported.
	tokenWarn = 7 * 24 * time.Hour
)

func newDoctorCmd() *cobra.Command {
	o := &runOptions{}
	var asJSON bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check a node's setup and say what is wrong and how to fix it",
		Long: `Check the setup of the node that 'macula-node run' with the same flags (or
--config file, or MACULA_* variables) starts, and say in plain words what is
wrong and what to do about it.

When that node is running (its API answers at --api), doctor asks it: its
NAT type and what that means for direct connections, its relay
reservations, whether its bootstrap peers are connected, the clock skew
against its peers (tokens need clocks within a minute), and when its grant
expires. When it is not running, doctor checks from this host what it can:
the ports, STUN (from a socket of its own), the bootstrap peers (a QUIC
dial) and the --ucan files. Both check the data directory's permissions.

Exit codes: 0 nothing failed (warnings may be printed), 1 a check failed,
2 a wrong command line.`,
		Example: `  macula-node doctor --config /etc/macula/node.toml
  macula-node doctor --realm io.acme.orders --bootstrap /ip4/203.0.113.7/udp/7400/quic-v1/p2p/12D3Koo...`,
		Args: argsN(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if timeout <= 0 {
				timeout = doctorWait
			}
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			rep := runDoctor(ctx, cmd, o)
			w := cmd.OutOrStdout()
			if asJSON {
				if err := printJSON(w, rep); err != nil {
					return err
				}
			} else if err := printDoctor(w, rep); err != nil {
				return err
			}
			if rep.Failed > 0 {
				return &codedError{code: exitError, err: fmt.Errorf("%d check(s) failed", rep.Failed)}
			}
			return nil
		},
	}
	o.addFlags(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "give up on the checks after this long (default 60s)")
	cmd.Flags().SortFlags = false
	return cmd
}

// runDoctor makes every check it can and returns the report.
func runDoctor(ctx context.Context, cmd *cobra.Command, o *runOptions) *doctorReport {
	rep := &doctorReport{Relays: []string{}, API: dialableAddr(o.API)}
	p, err := o.plan()
	if err != nil {
		rep.add(doctorCheck{Check: "config", Status: checkFail, Summary: err.Error(),
			Fix: "correct that setting (flag, MACULA_* variable or config file key); 'macula-node run --help' lists them"})
		return rep
	}
	rep.Realm, rep.Name = p.nodeCfg.Realm, p.nodeCfg.Name
	rep.add(doctorCheck{Check: "config", Status: checkOK,
		Summary: fmt.Sprintf("realm %s, node %s, data directory %s", rep.Realm, rep.Name, p.dataDir)})
	checkDataDir(rep, p.dataDir)

	// The node's local credential is in its data directory (the default
	// one too): newAPIClient looks there.
	if err := cmd.Flags().Set("data-dir", p.dataDir); err != nil {
		rep.add(doctorCheck{Check: "node", Status: checkFail, Summary: err.Error()})
		return rep
	}
	c, err := newAPIClient(cmd, rep.API)
	if err != nil {
		rep.add(doctorCheck{Check: "node", Status: checkFail, Summary: err.Error(),
			Fix: "give --api-credential the node's local credential file (api-credential in its data directory)"})
		return rep
	}
	defer c.Close()
	qctx, qcancel := context.WithTimeout(ctx, 5*time.Second)
	info, err := c.Node(qctx)
	qcancel()
	switch {
	case err == nil && info.Realm != rep.Realm:
		rep.add(doctorCheck{Check: "node", Status: checkFail,
			Summary: fmt.Sprintf("the node answering at %s is of realm %s, not %s", rep.API, info.Realm, rep.Realm),
			Fix:     "give doctor the --api of this realm's node, or --realm of that node"})
		return rep
	case err == nil:
		rep.Running = true
		doctorRunning(ctx, rep, c, info, o)
	default:
		var ae *api.APIError
		if errors.As(err, &ae) {
			rep.add(doctorCheck{Check: "node", Status: checkFail,
				Summary: fmt.Sprintf("the node API at %s refused doctor: %s", rep.API, ae.Message),
				Fix:     "run doctor as the node's user, or give --api-credential (the node's local credential file)"})
			return rep
		}
		rep.add(doctorCheck{Check: "node", Status: checkWarn,
			Summary: fmt.Sprintf("no node answers at %s: the checks below are made from this host alone", rep.API),
			Fix:     "start the node ('macula-node run' with these settings) for the NAT, relay, peer, clock and grant checks"})
		doctorStandalone(ctx, rep, p, o)
	}
	return rep
}

// dialableAddr turns a listen address (0.0.0.0:7401, [::]:7401) into one
// to dial on this host.
func dialableAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		if ip != nil && ip.To4() == nil {
			return net.JoinHostPort("::1", port)
		}
		return net.JoinHostPort("127.0.0.1", port)
	}
	return listen
}

// checkDataDir: the directory holds the node's private key, so only its
// user may write it and only its user may read the key.
func checkDataDir(rep *doctorReport, dir string) {
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		parent := filepath.Dir(dir)
		if err := writable(parent); err != nil {
			rep.add(doctorCheck{Check: "data_dir", Status: checkFail,
				Summary: fmt.Sprintf("%s does not exist and cannot be created: %v", dir, err),
				Fix:     fmt.Sprintf("create it for the node's user: mkdir -p %s && chmod 700 %s (or give --data-dir)", dir, dir)})
			return
		}
		rep.add(doctorCheck{Check: "data_dir", Status: checkOK,
			Summary: fmt.Sprintf("%s does not exist yet; run creates it (mode 0700) with a new key", dir)})
		return
	case err != nil:
		rep.add(doctorCheck{Check: "data_dir", Status: checkFail, Summary: fmt.Sprintf("%s: %v", dir, err),
			Fix: "give a --data-dir that the node's user can read and write"})
		return
	case !st.IsDir():
		rep.add(doctorCheck{Check: "data_dir", Status: checkFail, Summary: fmt.Sprintf("%s is a file, not a directory", dir),
			Fix: "give a --data-dir that is a directory, or move that file away"})
		return
	}
	var problems, fixes []string
	if st.Mode().Perm()&0o022 != 0 {
		problems = append(problems, fmt.Sprintf("%s is writable by other users (mode %04o): they could replace the node's key", dir, st.Mode().Perm()))
		fixes = append(fixes, "chmod 700 "+dir)
	}
	if uid, ok := ownerOf(st); ok && uid != os.Geteuid() {
		problems = append(problems, fmt.Sprintf("%s belongs to user %d, not to this user (%d)", dir, uid, os.Geteuid()))
		fixes = append(fixes, fmt.Sprintf("run doctor and the node as its owner, or chown -R %d %s", os.Geteuid(), dir))
	}
	if err := writable(dir); err != nil {
		problems = append(problems, fmt.Sprintf("%s is not writable by this user: %v", dir, err))
		fixes = append(fixes, "chmod u+rwx "+dir)
	}
	key := filepath.Join(dir, node.KeyFile)
	if kst, err := os.Stat(key); err == nil {
		if kst.Mode().Perm()&0o077 != 0 {
			problems = append(problems, fmt.Sprintf("the node's private key %s is readable or writable by other users (mode %04o)", key, kst.Mode().Perm()))
			fixes = append(fixes, "chmod 600 "+key)
		}
		if f, err := os.Open(key); err != nil {
			problems = append(problems, fmt.Sprintf("the node's private key %s cannot be read: %v", key, err))
			fixes = append(fixes, "chmod u+r "+key)
		} else {
			f.Close()
		}
	}
	if len(problems) > 0 {
		rep.add(doctorCheck{Check: "data_dir", Status: checkFail, Summary: strings.Join(problems, "; "), Fix: strings.Join(fixes, "; ")})
		return
	}
	rep.add(doctorCheck{Check: "data_dir", Status: checkOK, Summary: fmt.Sprintf("%s is this user's and private", dir)})
}

// writable checks that a file can be made in dir (and removes it).
func writable(dir string) error {
	f, err := os.CreateTemp(dir, ".doctor-*")
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return pe.Err
		}
		return err
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

// natMeaning says what a NAT type means for direct connections, and
// whether peers reach the node directly without hole punching.
func natMeaning(typ string) (string, bool) {
	switch typ {
	case string(nat.TypeOpen):
		return "no NAT: peers reach this node directly", true
	case string(nat.TypeFullCone):
		return "full-cone NAT: once the node has sent a packet out, any peer reaches its public address directly", true
	case string(nat.TypeRestricted):
		return "address-restricted NAT: direct connections need hole punching, which works with peers behind any NAT type; until it succeeds calls go through a relay", false
	case string(nat.TypePortRestricted):
		return "port-restricted NAT: direct connections need hole punching, which works except with peers behind symmetric NAT (those stay relayed)", false
	case string(nat.TypeSymmetric):
		return "symmetric NAT: each destination gets another public port, so direct connections work only with peers that are public or behind full-cone or address-restricted NAT; with the others calls stay relayed", false
	}
	return "NAT type unknown: no STUN server answered, so nothing is known about direct connections", false
}

// doctorRunning asks the running node.
func doctorRunning(ctx context.Context, rep *doctorReport, c *api.Client, info *api.NodeInfo, o *runOptions) {
	rep.add(doctorCheck{Check: "node", Status: checkOK, Summary: fmt.Sprintf("%s (%s) is running with %d peer(s), realm %s",
		info.Name, info.Alias, info.Peers, securityLine(info.Security, info.Authority))})
	rep.add(doctorCheck{Check: "ports", Status: checkOK,
		Summary: fmt.Sprintf("the node listens on %s; its API on %s", strings.Join(listenAddrs(info.Addrs), ", "), rep.API)})

	if ni, err := c.NAT(ctx); err != nil {
		rep.add(doctorCheck{Check: "nat", Status: checkFail, Summary: "cannot ask the node about its NAT: " + err.Error()})
	} else {
		public := "-"
		if ap, ok := ni.PublicAddr(); ok {
			public = ap.String()
		}
		doctorNAT(rep, ni.Type, public, ni.Error, ni.Servers)
	}

	d, err := c.Dashboard(ctx, false)
	switch {
	case err != nil:
		rep.add(doctorCheck{Check: "relays", Status: checkWarn, Summary: "cannot ask the node for its relays: " + err.Error()})
	default:
		rep.Relays = append(rep.Relays, d.Relays...)
		switch {
		case len(d.Relays) > 0:
			rep.add(doctorCheck{Check: "relays", Status: checkOK, Summary: fmt.Sprintf("reservation(s) with %s: peers that cannot reach this node directly go through them", strings.Join(d.Relays, ", "))})
		case rep.Direct:
			rep.add(doctorCheck{Check: "relays", Status: checkOK, Summary: "no relay reservation, and none is needed: peers reach this node directly"})
		default:
			rep.add(doctorCheck{Check: "relays", Status: checkFail,
				Summary: "no relay reservation: a peer that cannot punch through this node's NAT cannot reach it",
				Fix: "the relays are the bootstrap peers that serve as relays (a public node does; its 'macula-node nat info' says so), " +
					"or those given with --relay MULTIADDR; --reachability private makes the node reserve one whatever it measured"})
		}
	}

	peers, err := c.Peers(ctx)
	if err != nil {
		rep.add(doctorCheck{Check: "bootstrap", Status: checkWarn, Summary: "cannot list the node's peers: " + err.Error()})
	} else {
		byID := map[string]api.Peer{}
		for _, p := range peers {
			byID[p.PeerID] = p
		}
		self, _ := peer.Decode(info.PeerID)
		doctorBootstrap(rep, o.Bootstrap, self, len(peers), func(ai peer.AddrInfo) error {
			if _, ok := byID[ai.ID.String()]; !ok {
				return errors.New("not connected (the node keeps redialing)")
			}
			return nil
		}, func(ai peer.AddrInfo) string {
			p := byID[ai.ID.String()]
			return fmt.Sprintf("connected, %s, %.1f ms", p.Path, p.RTTMillis)
		})
	}

	if m, err := c.Mesh(ctx); err != nil {
		rep.add(doctorCheck{Check: "clock", Status: checkWarn, Summary: "cannot ask the node for its peers' clocks: " + err.Error()})
	} else {
		doctorClock(rep, m)
	}

	switch {
	case info.Security != api.SecuritySecure:
		rep.add(doctorCheck{Check: "tokens", Status: checkOK, Summary: "open realm: no tokens to expire (anyone who knows the realm's name may join it)"})
	case info.Grant == nil || !info.Grant.Member:
		rep.add(doctorCheck{Check: "tokens", Status: checkFail, Summary: "the node holds no membership grant of the realm: peers refuse it",
			Fix: "have the authority issue one ('macula-node ucan issue --can member ...'), give it with --ucan FILE, and send the node SIGHUP"})
	case info.Grant.Expires != nil:
		doctorExpiry(rep, *info.Grant.Expires)
	default:
		rep.add(doctorCheck{Check: "tokens", Status: checkOK, Summary: "the node's grant does not expire"})
	}
}

// listenAddrs keeps the addresses that are not relayed.
func listenAddrs(addrs []string) []string {
	var out []string
	for _, a := range addrs {
		if !strings.Contains(a, "/p2p-circuit") {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return []string{"no address"}
	}
	return out
}

func doctorNAT(rep *doctorReport, typ, public, probeErr string, servers []api.STUNServer) {
	var ok, bad []string
	for _, s := range servers {
		if s.OK {
			ok = append(ok, s.Server)
		} else {
			bad = append(bad, fmt.Sprintf("%s (%s)", s.Server, s.Error))
		}
	}
	switch {
	case len(servers) == 0:
		rep.add(doctorCheck{Check: "stun", Status: checkFail, Summary: "no STUN server is configured, so the node cannot learn its public address or NAT type",
			Fix: "give --stun HOST:PORT, or --bootstrap a public Macula node (every node answers STUN on its QUIC port)"})
	case len(ok) == 0:
		rep.add(doctorCheck{Check: "stun", Status: checkFail, Summary: "no STUN server answered: " + strings.Join(bad, "; "),
			Fix: "check that outgoing UDP to those servers is allowed by the firewall, and that the addresses are right"})
	case len(bad) > 0:
		rep.add(doctorCheck{Check: "stun", Status: checkWarn, Summary: fmt.Sprintf("%s answered; %s did not", strings.Join(ok, ", "), strings.Join(bad, "; ")),
			Fix: "remove or correct the servers that do not answer"})
	default:
		rep.add(doctorCheck{Check: "stun", Status: checkOK, Summary: strings.Join(ok, ", ") + " answered"})
	}
	meaning, direct := natMeaning(typ)
	rep.Direct = direct
	if typ != "" && typ != string(nat.TypeUnknown) {
		rep.NATType = typ
		s := fmt.Sprintf("%s, public address %s", typ, public)
		if probeErr != "" {
			s += " (partly measured: " + probeErr + ")"
		}
		rep.add(doctorCheck{Check: "nat", Status: checkOK, Summary: s})
		st := checkOK
		fix := ""
		if typ == string(nat.TypeSymmetric) {
			st = checkWarn
			fix = "if you control the router, an endpoint-independent mapping (full-cone, or a port forward of the node's UDP port) lets more peers connect directly"
		}
		rep.add(doctorCheck{Check: "reachability", Status: st, Summary: meaning, Fix: fix})
		return
	}
	// The cause is the stun line's: one failure, not two.
	rep.add(doctorCheck{Check: "nat", Status: checkWarn, Summary: meaning,
		Fix: "make STUN work (see the stun line); until then the node relies on relays"})
}

// doctorBootstrap reports each bootstrap peer: reach says whether it is
// reachable, okLine what to print when it is. An entry that is the node
// itself (self; "" when not known) is skipped, as the node skips it: a list
// shared by every node of a site names each of them.
func doctorBootstrap(rep *doctorReport, bootstrap []string, self peer.ID, peers int, reach func(peer.AddrInfo) error, okLine func(peer.AddrInfo) string) {
	var others []string
	for _, b := range bootstrap {
		if ai, err := peer.AddrInfoFromString(b); err != nil || self == "" || ai.ID != self {
			others = append(others, b)
		}
	}
	if len(others) == 0 && len(bootstrap) > 0 {
		rep.add(doctorCheck{Check: "bootstrap", Status: checkWarn,
			Summary: fmt.Sprintf("the only --bootstrap is this node itself (skipped); %d peer(s) connected to this node", peers),
			Fix:     "give --bootstrap MULTIADDR of another node of the realm too, unless this is the first node"})
		return
	}
	bootstrap = others
	if len(bootstrap) == 0 {
		if peers == 0 {
			rep.add(doctorCheck{Check: "bootstrap", Status: checkWarn, Summary: "no --bootstrap and no peer: this node is alone until another node bootstraps through it",
				Fix: "give --bootstrap MULTIADDR of a node of the realm (its 'macula-node id' prints it), unless this is the first node"})
			return
		}
		rep.add(doctorCheck{Check: "bootstrap", Status: checkOK, Summary: fmt.Sprintf("no --bootstrap; %d peer(s) connected to this node", peers)})
		return
	}
	type res struct {
		line string
		err  error
	}
	out := make([]res, len(bootstrap))
	var wg sync.WaitGroup
	for i, b := range bootstrap {
		ai, err := peer.AddrInfoFromString(b)
		if err != nil {
			out[i] = res{line: b, err: fmt.Errorf("not a multiaddr with /p2p/<peer-id>: %v", err)}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := reach(*ai); err != nil {
				out[i] = res{line: b, err: err}
				return
			}
			out[i] = res{line: fmt.Sprintf("%s: %s", b, okLine(*ai))}
		}()
	}
	wg.Wait()
	var good, bad []string
	for _, r := range out {
		if r.err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", r.line, r.err))
		} else {
			good = append(good, r.line)
		}
	}
	fix := "check each address (the peer's 'macula-node id' prints it), that its host is up, and that its UDP port is open in its firewall and forwarded by its router"
	switch {
	case len(bad) == 0:
		rep.add(doctorCheck{Check: "bootstrap", Status: checkOK, Summary: strings.Join(good, "; ")})
	case len(good) == 0:
		rep.add(doctorCheck{Check: "bootstrap", Status: checkFail, Summary: "no bootstrap peer is reachable: " + strings.Join(bad, "; "), Fix: fix})
	default:
		rep.add(doctorCheck{Check: "bootstrap", Status: checkWarn, Summary: strings.Join(good, "; ") + "; but " + strings.Join(bad, "; "), Fix: fix})
	}
}

func doctorClock(rep *doctorReport, m *api.Mesh) {
	var worst float64
	var worstName string
	var measured int
	for _, n := range m.Nodes {
		if n.Self || n.SkewMS == nil {
			continue
		}
		measured++
		if math.Abs(*n.SkewMS) >= math.Abs(worst) {
			worst, worstName = *n.SkewMS, cmpName(n.Name, n.PeerID)
		}
	}
	if measured == 0 {
		rep.add(doctorCheck{Check: "clock", Status: checkOK, Summary: "no peer answered with its clock yet: skew not measured"})
		return
	}
	skew := time.Duration(math.Abs(worst)) * time.Millisecond
	s := fmt.Sprintf("largest clock skew against %d peer(s): %s against %s", measured, (time.Duration(worst) * time.Millisecond).Round(time.Millisecond), worstName)
	fix := "synchronize the clocks (systemd-timesyncd, chrony or ntpd) on this host and on " + worstName
	switch {
	case skew >= skewFail:
		rep.add(doctorCheck{Check: "clock", Status: checkFail, Summary: s + ": tokens issued on one host may be refused on the other (60 s leeway)", Fix: fix})
	case skew >= skewWarn:
		rep.add(doctorCheck{Check: "clock", Status: checkWarn, Summary: s, Fix: fix})
	default:
		rep.add(doctorCheck{Check: "clock", Status: checkOK, Summary: s})
	}
}

func cmpName(name, id string) string {
	if name != "" {
		return name
	}
	return id
}

func doctorExpiry(rep *doctorReport, exp time.Time) {
	left := time.Until(exp)
	fix := "have the authority issue a new grant ('macula-node ucan issue'), put it in the --ucan file, and send the node SIGHUP"
	switch {
	case left <= 0:
		rep.add(doctorCheck{Check: "tokens", Status: checkFail, Summary: fmt.Sprintf("the node's grant expired at %s: peers refuse it", exp.UTC().Format(time.RFC3339)), Fix: fix})
	case left < tokenWarn:
		rep.add(doctorCheck{Check: "tokens", Status: checkWarn, Summary: fmt.Sprintf("the node's grant expires at %s, in %s", exp.UTC().Format(time.RFC3339), left.Round(time.Minute)), Fix: fix})
	default:
		rep.add(doctorCheck{Check: "tokens", Status: checkOK, Summary: fmt.Sprintf("the node's grant expires at %s, in %s", exp.UTC().Format(time.RFC3339), left.Round(time.Hour))})
	}
}

// doctorStandalone checks from this host, without the node.
func doctorStandalone(ctx context.Context, rep *doctorReport, p *daemonPlan, o *runOptions) {
	doctorPorts(rep, o)

	servers := doctorSTUNServers(o)
	if len(servers) == 0 {
		doctorNAT(rep, "", "", "", nil)
	} else {
		conn, err := net.ListenUDP("udp", &net.UDPAddr{})
		if err != nil {
			rep.add(doctorCheck{Check: "stun", Status: checkFail, Summary: "cannot open a UDP socket: " + err.Error()})
		} else {
			pr, err := nat.New(nat.Config{Servers: servers, Interval: -1, Logger: slog.New(slog.DiscardHandler)}, conn)
			if err != nil {
				conn.Close()
				rep.add(doctorCheck{Check: "stun", Status: checkFail, Summary: err.Error(), Fix: "correct --stun"})
			} else {
				info, _ := pr.Probe(ctx)
				pr.Close()
				var ss []api.STUNServer
				for _, s := range info.Servers {
					ss = append(ss, api.STUNServer{Server: s.Server, OK: s.OK, Error: s.Error})
				}
				public := "-"
				if ap, ok := info.PublicAddr(); ok {
					public = ap.String() + " (doctor's own socket: the node's port may map differently)"
				}
				doctorNAT(rep, string(info.Type), public, info.Error, ss)
			}
		}
	}

	doctorBootstrap(rep, o.Bootstrap, keyPeerID(p.dataDir), 0, func(ai peer.AddrInfo) error { return dialBootstrap(ctx, ai) },
		func(peer.AddrInfo) string { return "reachable (a QUIC handshake with a throwaway key)" })

	doctorChains(ctx, rep, p)
}

// doctorPorts checks that the node could listen where it is told to.
func doctorPorts(rep *doctorReport, o *runOptions) {
	var bad, good []string
	for _, l := range o.Listen {
		a, err := ma.NewMultiaddr(l)
		if err != nil {
			bad = append(bad, fmt.Sprintf("--listen %s: %v", l, err))
			continue
		}
		network, hostport, err := manet.DialArgs(a)
		if err != nil {
			bad = append(bad, fmt.Sprintf("--listen %s: %v", l, err))
			continue
		}
		if err := tryListen(network, hostport); err != nil {
			bad = append(bad, fmt.Sprintf("--listen %s: %s", l, err))
			continue
		}
		good = append(good, fmt.Sprintf("%s %s", network, hostport))
	}
	if err := tryListen("tcp", o.API); err != nil {
		bad = append(bad, fmt.Sprintf("--api %s: %s", o.API, err))
	} else {
		good = append(good, "tcp "+o.API+" (API)")
	}
	if len(bad) > 0 {
		rep.add(doctorCheck{Check: "ports", Status: checkFail, Summary: strings.Join(bad, "; "),
			Fix: "stop the program that holds the port (ss -lunp / ss -ltnp shows it), or give another --listen / --api"})
		return
	}
	rep.add(doctorCheck{Check: "ports", Status: checkOK, Summary: "free: " + strings.Join(good, ", ")})
}

func tryListen(network, addr string) error {
	var err error
	if strings.HasPrefix(network, "udp") {
		var c net.PacketConn
		if c, err = net.ListenPacket(network, addr); err == nil {
			c.Close()
		}
	} else {
		var l net.Listener
		if l, err = net.Listen(network, addr); err == nil {
			l.Close()
		}
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, syscall.EADDRINUSE):
		return errors.New("the port is in use by another program")
	case errors.Is(err, syscall.EACCES):
		return errors.New("permission denied (ports under 1024 need root or CAP_NET_BIND_SERVICE)")
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return errors.New("no interface of this host has that address")
	}
	return rootCause(err)
}

// doctorSTUNServers: the configured servers, then the bootstrap peers'
// QUIC sockets, as the node asks them.
func doctorSTUNServers(o *runOptions) []string {
	out := slices.Clone(o.STUN)
	for _, b := range o.Bootstrap {
		ai, err := peer.AddrInfoFromString(b)
		if err != nil {
			continue
		}
		for _, a := range ai.Addrs {
			if _, err := a.ValueForProtocol(ma.P_QUIC_V1); err != nil {
				continue
			}
			if _, hp, err := manet.DialArgs(a); err == nil && !slices.Contains(out, hp) {
				out = append(out, hp)
			}
		}
	}
	if len(out) > 16 {
		out = out[:16]
	}
	return out
}

// dialBootstrap makes a QUIC connection to ai with a throwaway key: it
// shows the peer is reachable (the realm is checked when the node joins).
func dialBootstrap(ctx context.Context, ai peer.AddrInfo) error {
	h, err := p2phost.New(func(cfg *config.Config) error {
		cfg.RelayCustom, cfg.Relay = true, false
		cfg.DisableIdentifyAddressDiscovery = true
		return nil
	})
	if err != nil {
		return err
	}
	defer h.Close()
	ctx, cancel := context.WithTimeout(ctx, doctorDialWait)
	defer cancel()
	if err := h.Connect(ctx, ai); err != nil {
		msg := err.Error()
		if ctx.Err() != nil || strings.Contains(msg, "deadline exceeded") || strings.Contains(msg, "timeout") {
			return errors.New("no answer (nothing listens there, or a firewall drops the UDP packets)")
		}
		// libp2p lists each address tried: keep the last reason.
		if i := strings.LastIndex(msg, "] "); i >= 0 {
			msg = msg[i+2:]
		}
		return errors.New(oneLine(msg))
	}
	return nil
}

// doctorChains validates the --ucan files as the node would.
func doctorChains(ctx context.Context, rep *doctorReport, p *daemonPlan) {
	if p.nodeCfg.Authority == "" {
		rep.add(doctorCheck{Check: "tokens", Status: checkOK, Summary: "open realm (no --authority): no tokens to expire; anyone who knows the realm's name may join it"})
		return
	}
	if len(p.nodeCfg.Chains) == 0 {
		rep.add(doctorCheck{Check: "tokens", Status: checkFail, Summary: "secure realm, but no --ucan file: peers will refuse this node",
			Fix: "have the authority issue a membership grant ('macula-node ucan issue --can member ...') and give it with --ucan FILE"})
		return
	}
	v, err := ucan.New(ucan.Config{Realm: p.nodeCfg.Realm, Authority: p.nodeCfg.Authority})
	if err != nil {
		rep.add(doctorCheck{Check: "tokens", Status: checkFail, Summary: cleanUCANError(err)})
		return
	}
	var first time.Time
	for i, ch := range p.nodeCfg.Chains {
		src := p.nodeCfg.ChainSources[i]
		holder, err := ch.Holder()
		if err == nil {
			var vd *ucan.Verdict
			if vd, err = v.Validate(ctx, holder, []ucan.Chain{ch}); err == nil {
				if exp := vd.Grant().Expires; !exp.IsZero() && (first.IsZero() || exp.Before(first)) {
					first = exp
				}
				continue
			}
		}
		if errors.Is(err, ucan.ErrExpired) {
			rep.add(doctorCheck{Check: "tokens", Status: checkFail, Summary: fmt.Sprintf("%s: the grant has expired", src),
				Fix: "have the authority issue a new one ('macula-node ucan issue') and replace it in that file"})
			return
		}
		rep.add(doctorCheck{Check: "tokens", Status: checkFail, Summary: fmt.Sprintf("%s: %s", src, cleanUCANError(err)),
			Fix: "check it with 'macula-node ucan verify', and have the authority issue a valid one"})
		return
	}
	if first.IsZero() {
		rep.add(doctorCheck{Check: "tokens", Status: checkOK, Summary: "the --ucan grants are valid and do not expire"})
		return
	}
	doctorExpiry(rep, first)
}

// printDoctor prints the report for people: one line per check, the fix
// under it.
func printDoctor(w io.Writer, r *doctorReport) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range r.Checks {
		mark := map[string]string{checkOK: "ok", checkWarn: "WARN", checkFail: "FAIL"}[c.Status]
		fmt.Fprintf(tw, "%s\t%s\t%s\n", mark, c.Check, c.Summary)
		if c.Fix != "" {
			fmt.Fprintf(tw, "\t\tfix: %s\n", c.Fix)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	switch {
	case r.Failed > 0:
		_, err := fmt.Fprintf(w, "\n%d problem(s) to fix.\n", r.Failed)
		return err
	default:
		_, err := fmt.Fprintln(w, "\nNothing to fix.")
		return err
	}
}

// keyPeerID is the peer ID of the node key in dataDir ("" when there is
// none yet, or it cannot be read: the data_dir check says why).
func keyPeerID(dataDir string) peer.ID {
	k, err := node.LoadKey(filepath.Join(dataDir, node.KeyFile))
	if err != nil {
		return ""
	}
	id, err := peerdid.ID(k.Public().(ed25519.PublicKey))
	if err != nil {
		return ""
	}
	return id
}
