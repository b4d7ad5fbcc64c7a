package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/spf13/cobra"

	"github.com/macula-io/macula/actors"
	"github.com/macula-io/macula/api"
	"github.com/macula-io/macula/gateway"
	"github.com/macula-io/macula/metrics"
	"github.com/macula-io/macula/node"
	"github.com/macula-io/macula/registry"
	"github.com/macula-io/macula/ucan"
)

// Settings of macula-node dev.
const (
	devRealm     = "io.macula.dev"
	devListen    = "/ip4/127.0.0.1/udp/0/quic-v1"
	devFirstPort = 7401 // node i's API tries port devFirstPort+i-1
	devMaxNodes  = 32
	devMeshWait  = 15 * time.Second // how long to wait for every node to see every other
	// devCapability is the capability every dev node serves, with the demo
	// actor kind counter.
	devCapability = "demo"
)

type devOptions struct {
	nodes    int
	logLevel string
	secure   bool
	api      string // node1's API address; "" for the default, with a fallback
}

func newDevCmd(stderr io.Writer) *cobra.Command {
	o := &devOptions{}
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Start a local mesh of nodes in one process, for trying things",
		Long: fmt.Sprintf(`Start --nodes nodes of realm %s in this process, on loopback, with
identities in memory and no configuration: node1 is the bootstrap of the
others. Each node serves its API on 127.0.0.1, on port %d, %d, ... when free
(on TCP for HTTP/1.1, on UDP for HTTP/3), on a random port otherwise. With
--api HOST:PORT node1 serves it there and node i on PORT+i-1, and a port
that is taken is an error.

The realm is open (no authority) unless --secure: then dev makes a realm
authority in memory and grants each node membership with its name and every
command on the realm, so that the mesh runs with the checks of a secure realm.

dev prints a table of the nodes and commands to try, then runs until Ctrl-C.`,
			devRealm, devFirstPort, devFirstPort+1),
		Args: argsN(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.nodes < 1 || o.nodes > devMaxNodes {
				return &usageError{err: fmt.Errorf("--nodes %d: want 1 to %d", o.nodes, devMaxNodes), hint: cmd.CommandPath()}
			}
			if _, err := parseLevel(o.logLevel); err != nil {
				return &usageError{err: err, hint: cmd.CommandPath()}
			}
			if o.api != "" {
				if _, err := devAPIAddr(o.api, 1); err != nil {
					return &usageError{err: err, hint: cmd.CommandPath()}
				}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			defer tuneMemory()()
			return runDev(ctx, stop, o, cmd.OutOrStdout(), stderr)
		},
	}
	cmd.Flags().IntVar(&o.nodes, "nodes", 3, fmt.Sprintf("number of nodes, 1 to %d", devMaxNodes))
	cmd.Flags().StringVar(&o.logLevel, "log-level", "warn", "log level: debug, info, warn or error")
	cmd.Flags().BoolVar(&o.secure, "secure", false, "a secure realm: an authority in memory grants each node membership and every command")
	cmd.Flags().StringVar(&o.api, "api", "", fmt.Sprintf("node1's API address (TCP and UDP); node i's is i-1 ports above (default 127.0.0.1:%d, or random ports when taken)", devFirstPort))
	return cmd
}

// devNode is one node of the dev mesh, its actors and its API.
type devNode struct {
	n   *node.Node
	reg *registry.Registry
	a   *actors.System
	g   *gateway.Gateway
}

func runDev(ctx context.Context, stop func(), o *devOptions, stdout, stderr io.Writer) (err error) {
	// Logs are held until the mesh is up, as run holds them: a start that
	// fails says one line (at debug, the held lines too).
	lg, err := newLogging(stderr, o.logLevel, "text", true)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil && lg.level.Level() > slog.LevelDebug {
			lg.hold.discard()
		}
		lg.hold.release()
	}()
	var nodes []devNode
	defer func() {
		// The APIs first, so that no request reaches a closing node; then
		// each node's stack in turn, as if its run process stopped: its
		// actors (handed to the nodes still up), registry, node (its
		// goodbye). Closing every actor system first would leave nodes
		// that are members, and so owners in the others' rings, without
		// an actor system to take a handoff: each would be retried until
		// the handoff timeout.
		var errs []error
		for _, d := range nodes {
			errs = append(errs, d.g.Close())
		}
		for _, d := range nodes {
			errs = append(errs, d.a.Close(), d.reg.Close(), d.n.Close())
		}
		if cerr := errors.Join(errs...); cerr != nil && err == nil {
			err = fmt.Errorf("stopping: %w", cerr)
		}
	}()

	// The nodes' local credentials (a secure realm's APIs on loopback ask
	// for them; the client commands find them through the API's answer), in
	// a directory of this user's alone, gone with the mesh.
	creds, err := os.MkdirTemp("", "macula-dev-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(creds)
	var authority ed25519.PrivateKey
	if o.secure {
		if authority, err = ucan.GenerateKey(); err != nil {
			return err
		}
	}
	var bootstrap []string
	for i := 1; i <= o.nodes; i++ {
		cfg := node.DefaultConfig(devRealm, fmt.Sprintf("node%d", i))
		cfg.ListenAddrs = []string{devListen}
		cfg.Bootstrap = bootstrap
		cfg.Logger = lg.logger
		if authority != nil {
			if err := devGrant(&cfg, authority); err != nil {
				return fmt.Errorf("node%d: %w", i, err)
			}
		}
		cfg.Members.Capabilities = []string{devCapability}
		n, err := node.New(cfg)
		if err != nil {
			return fmt.Errorf("node%d: %w", i, err)
		}
		reg, err := registry.Start(n, registry.Config{Logger: lg.logger})
		if err != nil {
			n.Close()
			return fmt.Errorf("node%d: %w", i, err)
		}
		a, err := startActors(n, lg.logger, true)
		if err != nil {
			reg.Close()
			n.Close()
			return fmt.Errorf("node%d: %w", i, err)
		}
		met, err := metrics.New(metrics.NewRegistry(), metrics.Sources{Node: n, Actors: a, Registry: reg}, metrics.Config{})
		if err != nil {
			a.Close()
			reg.Close()
			n.Close()
			return fmt.Errorf("node%d: %w", i, err)
		}
		defer met.Close()
		g, err := devGateway(n, reg, a, met, o.api, i, filepath.Join(creds, cfg.Name+"-"+api.CredentialFile), lg)
		if err != nil {
			a.Close()
			reg.Close()
			n.Close()
			return fmt.Errorf("node%d: %w", i, err)
		}
		nodes = append(nodes, devNode{n: n, reg: reg, a: a, g: g})
		if i == 1 {
			for _, a := range n.Addrs() {
				bootstrap = append(bootstrap, a.String())
			}
		}
	}

	if !waitMesh(ctx, nodes, devMeshWait) && ctx.Err() == nil {
		fmt.Fprintf(stderr, "warning: after %v not every node sees the %d others yet; going on\n", devMeshWait, len(nodes)-1)
	}
	if ctx.Err() != nil {
		return nil
	}
	lg.hold.release()
	printDevTable(stdout, nodes, authority)
	<-ctx.Done()
	stopSignals(stop)
	fmt.Fprintln(stdout, "stopping")
	return nil
}

// devGateway serves node i's API: on port devFirstPort+i-1 of 127.0.0.1
// (TCP and UDP), or on random ports if that one is taken, so that dev
// always starts; with --api (base), on base's port plus i-1, and an error
// naming the flag if that is taken.
func devGateway(n *node.Node, reg *registry.Registry, a *actors.System, met *metrics.Metrics, base string, i int, credFile string, lg *logging) (*gateway.Gateway, error) {
	addr := fmt.Sprintf("127.0.0.1:%d", devFirstPort+i-1)
	if base != "" {
		var err error
		if addr, err = devAPIAddr(base, i); err != nil {
			return nil, err
		}
	}
	cfg := gateway.Config{
		Addr:           addr,
		HTTP3Addr:      addr,
		LogLevel:       lg.level,
		Logger:         lg.logger,
		Registry:       reg,
		Actors:         a,
		CredentialFile: credFile,
		Metrics:        met,
	}
	g, err := gateway.New(cfg, n)
	if base != "" {
		var le *gateway.ListenError
		if errors.As(err, &le) {
			return nil, fmt.Errorf("--api %s: cannot listen on %s (%s) for node%d's API: %s; give another --api", base, le.Addr, le.Network, i, le.Reason)
		}
		return g, err
	}
	if errors.Is(err, gateway.ErrListen) {
		cfg.Addr, cfg.HTTP3Addr = "127.0.0.1:0", "127.0.0.1:0"
		g, err = gateway.New(cfg, n)
	}
	return g, err
}

// devAPIAddr is node i's API address for dev --api base: base's port plus
// i-1 (port 0: random ports for every node).
func devAPIAddr(base string, i int) (string, error) {
	host, p, err := net.SplitHostPort(base)
	port := 0
	if err == nil {
		port, err = strconv.Atoi(p)
	}
	if err != nil || port < 0 || port > 65535 {
		return "", fmt.Errorf("--api %q: want host:port such as 127.0.0.1:%d", base, devFirstPort)
	}
	if port != 0 {
		port += i - 1
		if port > 65535 {
			return "", fmt.Errorf("--api %s: node%d would need port %d", base, i, port)
		}
	}
	return net.JoinHostPort(host, strconv.Itoa(port)), nil
}

// waitMesh waits until every node has all the others as peers, ctx ends or
// the wait is over; it reports whether the mesh is complete.
func waitMesh(ctx context.Context, nodes []devNode, wait time.Duration) bool {
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		done := true
		for _, d := range nodes {
			if len(d.n.Peers()) < len(nodes)-1 {
				done = false
				break
			}
		}
		if done {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-deadline.C:
			return false
		case <-tick.C:
		}
	}
}

// printDevTable prints the nodes and a few commands to try.
func printDevTable(w io.Writer, nodes []devNode, authority ed25519.PrivateKey) {
	fmt.Fprintf(w, "Macula dev mesh: %d node(s) of realm %s\n", len(nodes), devRealm)
	if authority != nil {
		fmt.Fprintf(w, "Secure realm: authority %s (in memory); each node may do everything\n\n", ucan.KeyDID(authority))
	} else {
		fmt.Fprintf(w, "OPEN realm (no authority): for development only; --secure runs one with an authority\n\n")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tDID\tPEER ID\tQUIC ADDR\tAPI")
	for _, d := range nodes {
		quic := ""
		if addrs := d.n.Host().Addrs(); len(addrs) > 0 {
			quic = addrs[0].String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.n.Name(), d.n.DID(), d.n.ID(), quic, d.g.Addr())
	}
	tw.Flush()

	first, other := nodes[0], nodes[min(1, len(nodes)-1)]
	self := selfCommand()
	var b strings.Builder
	fmt.Fprintf(&b, "\nTry, in another terminal:\n")
	fmt.Fprintf(&b, "  %s --api %s id\n", self, first.g.Addr())
	fmt.Fprintf(&b, "  %s --api %s peers\n", self, first.g.Addr())
	fmt.Fprintf(&b, "  %s --api %s dht provide hello\n", self, first.g.Addr())
	fmt.Fprintf(&b, "  %s --api %s dht lookup hello\n", self, other.g.Addr())
	fmt.Fprintf(&b, "  %s --api %s resolve %s\n", self, other.g.Addr(), first.n.Alias())
	fmt.Fprintf(&b, "  %s --api %s subscribe '%s.>'\n", self, first.g.Addr(), devRealm)
	fmt.Fprintf(&b, "  %s --api %s publish %s.greetings --data '{\"hello\":\"world\"}'\n", self, other.g.Addr(), devRealm)
	fmt.Fprintf(&b, "  %s --api %s actors call %s %s player_1\n", self, first.g.Addr(), devCapability, actors.CounterKind)
	fmt.Fprintf(&b, "  %s --api %s ring\n", self, other.g.Addr())
	fmt.Fprintf(&b, "  %s --api %s registry watch\n", self, first.g.Addr())
	fmt.Fprintf(&b, "  %s --api %s registry register user/alice --meta '{\"role\":\"admin\"}'\n", self, other.g.Addr())
	fmt.Fprintf(&b, "  %s --api %s registry ls\n", self, first.g.Addr())
	if strings.HasPrefix(self, "go run ") {
		fmt.Fprintf(&b, "(or 'make build', then bin/macula-node ...; 'go install ./cmd/macula-node' puts macula-node on PATH)\n")
	}
	fmt.Fprintf(&b, "\nDashboard: http://%s/ (each node's API serves one; metrics at /metrics)\n", first.g.Addr())
	fmt.Fprintf(&b, "\nPress Ctrl-C to stop.\n")
	io.WriteString(w, b.String())
}

// devGrant gives cfg a key of its own and the authority's grants: membership
// with the node's name, and every command on the realm.
func devGrant(cfg *node.Config, authority ed25519.PrivateKey) error {
	priv, err := ucan.GenerateKey()
	if err != nil {
		return err
	}
	if cfg.Key, err = crypto.UnmarshalEd25519PrivateKey(priv); err != nil {
		return err
	}
	did := ucan.KeyDID(priv)
	exp := time.Now().Add(30 * 24 * time.Hour)
	member, err := ucan.Issue(authority, ucan.IssueOptions{Audience: did, Command: ucan.Member, Name: cfg.Name, Expires: exp})
	if err != nil {
		return err
	}
	all, err := ucan.Issue(authority, ucan.IssueOptions{Audience: did, Command: ucan.All, Resource: devRealm + ".>", Realm: devRealm, Expires: exp})
	if err != nil {
		return err
	}
	cfg.Authority = ucan.KeyDID(authority)
	cfg.Chains = []ucan.Chain{member, all}
	return nil
}
