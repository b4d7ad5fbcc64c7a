package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/macula-io/macula/dht"
	"github.com/macula-io/macula/gateway"
	"github.com/macula-io/macula/internal/atomicfile"
	"github.com/macula-io/macula/member"
	"github.com/macula-io/macula/metrics"
	"github.com/macula-io/macula/node"
	"github.com/macula-io/macula/realm"
	"github.com/macula-io/macula/registry"
	"github.com/macula-io/macula/tracing/otlp"
	"github.com/macula-io/macula/ucan"
)

// stateFile is the file run writes into the data directory once the node and
// its API are up, and removes on a clean exit: how scripts and tests find a
// node's API address and peer ID.
const stateFile = "node.json"

// defaultListen is run's default QUIC listen address.
const defaultListen = "/ip4/0.0.0.0/udp/7400/quic-v1"

// runOptions are the settings of macula-node run, bound to its flags.
type runOptions struct {
	Config               string
	Realm                string
	Name                 string
	DataDir              string
	Listen               []string
	Bootstrap            []string
	STUN                 []string
	Relays               []string
	RelayService         switchFlag
	HolePunching         bool
	Reachability         string
	API                  string
	HTTP3                string
	LogLevel             string
	LogFormat            string
	Reconnect            bool
	ReconnectInterval    time.Duration
	MaxReconnectAttempts int
	DHTMode              string
	Authority            string
	UCAN                 []string
	WebhookAllow         []string
	DemoActors           bool
	Capabilities         []string
	OTLPEndpoint         string
}

// addFlags defines run's flags on fs, bound to o: the one definition of
// run's settings, for the command line, MACULA_* and the config file.
func (o *runOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Config, configFlag, "", "TOML config file; keys are flag names with '_' for '-' (realm = \"io.acme.orders\")")
	fs.StringVar(&o.Realm, "realm", "", "realm of the node, reverse DNS such as io.acme.orders (required)")
	fs.StringVar(&o.Name, "name", "", "name of the node in the realm (default: the host name, lower-cased)")
	fs.StringVar(&o.DataDir, "data-dir", "", "directory of the node's key and state (default: $HOME/.macula/<name>)")
	fs.StringArrayVar(&o.Listen, "listen", []string{defaultListen}, "QUIC multiaddr to listen on (repeatable)")
	fs.StringArrayVar(&o.Bootstrap, "bootstrap", nil, "multiaddr with /p2p/<peer-id> of a peer to join through (repeatable)")
	fs.StringArrayVar(&o.STUN, "stun", nil, "STUN server HOST:PORT for the NAT probe (repeatable; bootstrap peers answer STUN too)")
	fs.StringArrayVar(&o.Relays, "relay", nil, "multiaddr with /p2p/<peer-id> of a relay node to keep a reservation with (repeatable; default: the bootstrap peers)")
	fs.Var(&o.RelayService, "relay-service", "relay for realm members behind NAT: true forces it on, false off; auto: on while the node is publicly reachable")
	fs.Lookup("relay-service").NoOptDefVal = "true"
	fs.BoolVar(&o.HolePunching, "hole-punching", true, "upgrade relayed connections to direct ones by hole punching")
	fs.StringVar(&o.Reachability, "reachability", "", "force reachability: public or private (default: measured, from STUN and peers' dial-back checks)")
	fs.StringVar(&o.API, "api", gateway.DefaultAddr, "HTTP/1.1 API listen address (TCP host:port)")
	fs.StringVar(&o.HTTP3, "http3", "", "HTTP/3 API listen address (UDP host:port), or \"off\" (default: the --api address, on UDP)")
	fs.StringVar(&o.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&o.LogFormat, "log-format", "text", "log format: text or json")
	fs.BoolVar(&o.Reconnect, "reconnect", true, "redial bootstrap peers when they drop")
	fs.DurationVar(&o.ReconnectInterval, "reconnect-interval", time.Second, "first wait before redialing a bootstrap peer; doubles on each failure")
	fs.IntVar(&o.MaxReconnectAttempts, "max-reconnect-attempts", 0, "failures in a row after which a bootstrap peer is given up (0: never)")
	fs.StringVar(&o.DHTMode, "dht-mode", string(dht.ModeAuto), "DHT mode: server, client, or auto (a server while publicly reachable)")
	fs.StringVar(&o.Authority, "authority", "", "did:key of the realm authority: makes the realm secure (default: none, an OPEN realm for development)")
	fs.StringArrayVar(&o.WebhookAllow, "webhook-allow", nil, "where webhooks registered by programs may point besides the node's own user's loopback ones: an IP, a prefix or a host name, with an optional :port (repeatable; e.g. 10.0.0.0/8, 127.0.0.1:9000, hooks.example.com:443)")
	fs.StringSliceVar(&o.Capabilities, "capabilities", nil, "capabilities this node serves, comma-separated (game,chat); in a secure realm each needs a serve grant")
	fs.StringArrayVar(&o.UCAN, "ucan", nil, "file of delegation chains (one per line) granting this node membership or capabilities (repeatable; see 'macula-node ucan issue'); SIGHUP reads them again")
	fs.BoolVar(&o.DemoActors, "demo-actors", false, "serve the demo actor kind \"counter\" on every capability the node serves, for trying actors without writing Go")
	fs.StringVar(&o.OTLPEndpoint, "otlp-endpoint", "", "OpenTelemetry collector (OTLP/HTTP) to export the node's spans to, such as http://127.0.0.1:4318 (default: none, no spans are made)")
}

func newRunCmd(stderr io.Writer) *cobra.Command {
	o := &runOptions{}
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run a node and its API (the daemon)",
		Long: `Run one node of a realm and serve its API until SIGINT or SIGTERM.

Every flag can also be set by an environment variable MACULA_<FLAG>
(MACULA_REALM, MACULA_DATA_DIR, MACULA_BOOTSTRAP=a,b, ...) or by a key of the
TOML file given with --config (realm = "io.acme.orders", bootstrap = ["..."],
reconnect_interval = "2s"). Flags beat the environment, which beats the file.

Once the node and its API are up, run writes <data-dir>/node.json (peer ID,
DIDs, addresses, API addresses, pid) and removes it on a clean exit.`,
		Example: `  macula-node run --realm io.acme.orders --name worker-1
  macula-node run --realm io.acme.orders --bootstrap /ip4/10.0.0.1/udp/7400/quic-v1/p2p/12D3Koo...
  MACULA_REALM=io.acme.orders macula-node run --config /etc/macula/node.toml`,
		Args: argsN(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runDaemon(ctx, stop, o, stderr)
		},
	}
	o.addFlags(cmd.Flags())
	cmd.Flags().SortFlags = false
	return cmd
}

// daemonPlan is a validated runOptions, ready to start.
type daemonPlan struct {
	nodeCfg node.Config
	gwCfg   gateway.Config
	dataDir string
	// http3Follows: the HTTP/3 address is the --api one, as --http3 was
	// not given; errors say so.
	http3Follows bool
}

// plan validates o without touching the disk or the network and without
// logging, so that bad input gives exactly one error line.
func (o *runOptions) plan() (*daemonPlan, error) {
	if o.Realm == "" {
		return nil, errors.New("realm is required (--realm, MACULA_REALM or realm in the config file)")
	}
	if err := realm.ValidateRealm(o.Realm); err != nil {
		return nil, err
	}
	name := o.Name
	if name == "" {
		name = defaultName()
	}
	if err := realm.ValidateNodeName(name); err != nil {
		return nil, fmt.Errorf("--name: %w", err)
	}
	if _, err := parseLevel(o.LogLevel); err != nil {
		return nil, err
	}
	switch o.LogFormat {
	case "text", "json":
	default:
		return nil, fmt.Errorf("log format %q: want text or json", o.LogFormat)
	}
	mode := dht.Mode(o.DHTMode)
	switch mode {
	case dht.ModeServer, dht.ModeClient, dht.ModeAuto:
	default:
		return nil, fmt.Errorf("dht mode %q: want server, client or auto", o.DHTMode)
	}
	if o.ReconnectInterval <= 0 {
		return nil, fmt.Errorf("reconnect interval %v: want a positive duration such as 1s", o.ReconnectInterval)
	}
	if o.MaxReconnectAttempts < 0 {
		return nil, fmt.Errorf("max reconnect attempts %d: want 0 (never give up) or more", o.MaxReconnectAttempts)
	}
	if err := checkHostPort("api", o.API); err != nil {
		return nil, err
	}
	// HTTP/3 listens where HTTP/1.1 does, on UDP, unless told otherwise:
	// a second node given only another --api must not collide on the
	// default HTTP/3 port.
	http3, http3Follows := strings.TrimSpace(o.HTTP3), false
	switch http3 {
	case "off":
	case "":
		http3, http3Follows = o.API, true
	default:
		if err := checkHostPort("http3", http3); err != nil {
			return nil, err
		}
	}
	dir := o.DataDir
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, fmt.Errorf("no data directory: give --data-dir (%v)", err)
		}
		dir = filepath.Join(home, ".macula", name)
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("data dir %q: %v", o.DataDir, err)
	}

	nc := node.DefaultConfig(o.Realm, name)
	nc.DataDir = dir
	nc.ListenAddrs = append([]string(nil), o.Listen...)
	nc.Bootstrap = append([]string(nil), o.Bootstrap...)
	nc.STUN = append([]string(nil), o.STUN...)
	nc.Relays = append([]string(nil), o.Relays...)
	nc.RelayService, nc.DisableRelayService = o.RelayService == switchOn, o.RelayService == switchOff
	nc.DisableHolePunching = !o.HolePunching
	nc.Reachability = o.Reachability
	nc.DisableReconnect = !o.Reconnect
	nc.ReconnectInterval = o.ReconnectInterval
	nc.MaxReconnectAttempts = o.MaxReconnectAttempts
	nc.DHTMode = mode
	if o.Authority != "" {
		if _, err := realm.ParseDIDKey(o.Authority); err != nil {
			return nil, fmt.Errorf("--authority %q: want the did:key that 'macula-node realm init' printed: %v", o.Authority, err)
		}
	} else if len(o.UCAN) > 0 {
		return nil, errors.New("--ucan needs --authority: chains mean something only in a secure realm")
	}
	caps, err := member.NormalizeCapabilities(o.Capabilities)
	if err != nil {
		return nil, fmt.Errorf("--capabilities: %w", err)
	}
	nc.Members.Capabilities = caps
	nc.Authority = o.Authority
	for _, f := range o.UCAN {
		cs, srcs, err := readChainFile(f)
		if err != nil {
			return nil, fmt.Errorf("--ucan %v", err)
		}
		nc.Chains = append(nc.Chains, cs...)
		nc.ChainSources = append(nc.ChainSources, srcs...)
	}
	if err := gateway.CheckWebhookAllow(o.WebhookAllow); err != nil {
		return nil, fmt.Errorf("--webhook-allow %v", err)
	}
	if o.OTLPEndpoint != "" {
		if err := otlp.CheckEndpoint(o.OTLPEndpoint); err != nil {
			return nil, fmt.Errorf("--otlp-endpoint: %w", err)
		}
	}
	return &daemonPlan{
		nodeCfg:      nc,
		gwCfg:        gateway.Config{Addr: o.API, HTTP3Addr: http3, DataDir: dir, WebhookAllow: append([]string(nil), o.WebhookAllow...)},
		http3Follows: http3Follows,
		dataDir:      dir,
	}, nil
}

// apiListenError says which flag to change when the API cannot listen:
// the error names the address, what it was for, and the flag it came from.
func apiListenError(err error, http3Follows bool) error {
	var le *gateway.ListenError
	if !errors.As(err, &le) {
		return err
	}
	if le.Network == "tcp" {
		return fmt.Errorf("--api %s: cannot listen for the HTTP/1.1 API (TCP): %s; give another --api", le.Addr, le.Reason)
	}
	if http3Follows {
		return fmt.Errorf("--http3 %s (the --api address, which --http3 follows): cannot listen for the HTTP/3 API (UDP): %s; "+
			"give another --api, or --http3 ADDR, or --http3 off", le.Addr, le.Reason)
	}
	return fmt.Errorf("--http3 %s: cannot listen for the HTTP/3 API (UDP): %s; give another --http3, or --http3 off", le.Addr, le.Reason)
}

func checkHostPort(what, addr string) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("%s address %q: want host:port such as 127.0.0.1:7401", what, addr)
	}
	return nil
}

// defaultName is the host name, lower-cased, up to its first dot, with
// every character outside [a-z0-9_-] turned into '-'; "node" if nothing is
// left.
func defaultName() string {
	h, _ := os.Hostname()
	return sanitizeName(h)
}

func sanitizeName(h string) string {
	h = strings.ToLower(h)
	if i := strings.IndexByte(h, '.'); i >= 0 {
		h = h[:i]
	}
	s := strings.Map(func(c rune) rune {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' {
			return c
		}
		return '-'
	}, h)
	s = strings.TrimLeft(s, "_-")
	if len(s) > realm.MaxSegmentLen {
		s = s[:realm.MaxSegmentLen]
	}
	if s == "" {
		return "node"
	}
	return s
}

// stateInfo is the content of node.json.
type stateInfo struct {
	PeerID    string    `json:"peer_id"`
	DID       string    `json:"did"`
	Alias     string    `json:"alias"`
	Realm     string    `json:"realm"`
	Name      string    `json:"name"`
	Addrs     []string  `json:"addrs"`
	API       string    `json:"api"`
	HTTP3     string    `json:"http3,omitempty"`
	PID       int       `json:"pid"`
	Security  string    `json:"security"`
	Authority string    `json:"authority,omitempty"`
	StartedAt time.Time `json:"started_at"`
}

// runDaemon starts the node and its API, and serves until ctx ends; stop
// is called then, so that a second signal kills the process the usual way.
func runDaemon(ctx context.Context, stop func(), o *runOptions, stderr io.Writer) error {
	p, err := o.plan()
	if err != nil {
		return &usageError{err: err, hint: "macula-node run"}
	}
	defer tuneMemory()()
	// Logs are held until the node and its API are up: a start that fails
	// reports one error line, not the node's "node started" first.
	lg, err := newLogging(stderr, o.LogLevel, o.LogFormat, true)
	if err != nil {
		return err
	}
	p.nodeCfg.Logger = lg.logger
	p.gwCfg.Logger = lg.logger
	p.gwCfg.LogLevel = lg.level

	// The files a start may create; a failed start removes those that were
	// not there before, and the directories it made, so it changes nothing.
	undo := newUndo(p.dataDir, node.KeyFile, gateway.CertFile, gateway.KeyFile, stateFile, node.RevocationsFile, lockFile)
	var lock *dirLock
	failed := func(err error) error {
		undo.run()
		lock.release()
		if lg.level.Level() <= slog.LevelDebug { // the held lines say what happened
			lg.hold.release()
		} else {
			lg.hold.discard()
		}
		return err
	}

	// Spans still queued go out on the way out (after the node's Close,
	// deferred below, so that its last calls are in).
	if o.OTLPEndpoint != "" {
		tp, err := otlp.New(otlp.Config{Endpoint: o.OTLPEndpoint, Realm: p.nodeCfg.Realm, Node: p.nodeCfg.Name})
		if err != nil {
			return failed(&usageError{err: fmt.Errorf("--otlp-endpoint: %w", err), hint: "macula-node run"})
		}
		p.nodeCfg.RPC.TracerProvider = tp
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := tp.Close(ctx); err != nil {
				lg.logger.Warn("otlp: spans not exported", "err", err)
			}
		}()
	}

	// The lock before anything reads or writes the directory: a second
	// node there would be the same identity twice.
	if lock, err = lockDataDir(p.dataDir); err != nil {
		return failed(err)
	}
	defer lock.release()

	n, err := node.New(p.nodeCfg)
	if errors.Is(err, node.ErrConfig) { // a flag's value the node refuses (a bootstrap or listen address)
		err = &usageError{err: err, hint: "macula-node run"}
	}
	if errors.Is(err, node.ErrListen) {
		err = fmt.Errorf("--listen: %w; give another --listen (port 0, /udp/0/quic-v1, picks a free one)", err)
	}
	if errors.Is(err, node.ErrNotMember) {
		self := selfCommand()
		err = fmt.Errorf("%w; to join: '%s key --data-dir %s' prints the node's DID (and keeps its key); the authority runs "+
			"'%s ucan issue --as AUTHORITY.key --realm %s --to DID --can member --name %s --out member.ucan'; then start with --ucan member.ucan",
			err, self, p.dataDir, self, p.nodeCfg.Realm, p.nodeCfg.Name)
	}
	if err != nil {
		return failed(err)
	}
	reg, err := registry.Start(n, registry.Config{Logger: lg.logger})
	if err != nil {
		n.Close()
		return failed(err)
	}
	sys, err := startActors(n, lg.logger, o.DemoActors)
	if err != nil {
		reg.Close()
		n.Close()
		return failed(err)
	}
	met, err := metrics.New(metrics.NewRegistry(), metrics.Sources{Node: n, Actors: sys, Registry: reg}, metrics.Config{})
	if err != nil {
		sys.Close()
		reg.Close()
		n.Close()
		return failed(err)
	}
	defer met.Close()
	p.gwCfg.Registry = reg
	p.gwCfg.Actors = sys
	p.gwCfg.Metrics = met
	g, err := gateway.New(p.gwCfg, n)
	if err != nil {
		sys.Close()
		reg.Close()
		n.Close()
		return failed(apiListenError(err, p.http3Follows))
	}
	st := stateInfo{
		PeerID:    n.ID().String(),
		DID:       n.DID(),
		Alias:     n.Alias(),
		Realm:     n.Realm(),
		Name:      n.Name(),
		API:       g.Addr(),
		HTTP3:     g.HTTP3Addr(),
		PID:       os.Getpid(),
		StartedAt: time.Now().UTC(),
		Security:  "open",
		Authority: n.Authority(),
	}
	if n.Secure() {
		st.Security = "secure"
	}
	for _, a := range n.Addrs() {
		st.Addrs = append(st.Addrs, a.String())
	}
	// The start's logs first, then node.json: whoever waits for node.json
	// (a script, a test) then finds every line of the start on stderr.
	lg.hold.release()
	lg.logger.Info("node ready", "api", g.Addr(), "http3", g.HTTP3Addr(), "peer", n.ID(),
		"did", n.DID(), "alias", n.Alias(), "data_dir", p.dataDir, "security", st.Security)
	statePath := filepath.Join(p.dataDir, stateFile)
	if err := writeJSONAtomic(statePath, st); err != nil {
		g.Close()
		sys.Close()
		reg.Close()
		n.Close()
		return failed(fmt.Errorf("writing %s: %w", statePath, err))
	}

	if n.Secure() {
		// SIGHUP reads the --ucan files again and presents the chains anew
		// on every connection: a new grant counts without a restart.
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		done := make(chan struct{})
		defer close(done)
		go func() {
			for {
				select {
				case <-done:
					return
				case <-hup:
					reloadChains(ctx, n, o.UCAN, lg.logger)
				}
			}
		}()
	}

	<-ctx.Done()
	stopSignals(stop)
	lg.logger.Info("stopping")
	// The actors first: they hand theirs to the other nodes while this one
	// is still a member. Then leave the realm: the peers stop sending calls
	// here, and the calls being served (webhooks included) end. Then the
	// API, so no request reaches a closing node; then the services on the
	// node (the registry says goodbye to its peers); then the node.
	aerr := sys.Close()
	lctx, lcancel := context.WithTimeout(context.Background(), leaveTimeout)
	if err := n.Leave(lctx); err != nil {
		lg.logger.Warn("stopping with calls still being served", "after", leaveTimeout, "err", err)
	}
	lcancel()
	gerr := g.Close()
	rerr := reg.Close()
	nerr := n.Close()
	if err := os.Remove(statePath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		lg.logger.Warn("cannot remove state file", "path", statePath, "err", err)
	}
	if err := errors.Join(gerr, aerr, rerr, nerr); err != nil {
		return fmt.Errorf("stopping: %w", err)
	}
	return nil
}

// leaveTimeout bounds the wait, when the node stops, for the calls it
// serves to end.
const leaveTimeout = 5 * time.Second

// writeJSONAtomic writes v as indented JSON to path, whole or not at all: a
// reader sees the old file or the whole new one.
func writeJSONAtomic(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(b, '\n'), 0o644)
}

// undo remembers which files of a directory, and which of its ancestors,
// did not exist before a start, and removes them again when the start fails.
type undo struct {
	files []string // files that did not exist, to remove
	dirs  []string // directories that did not exist, deepest first
}

func newUndo(dir string, names ...string) *undo {
	u := &undo{}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil || !errors.Is(err, fs.ErrNotExist) {
			break
		}
		u.dirs = append(u.dirs, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	for _, name := range names {
		p := filepath.Join(dir, name)
		if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
			u.files = append(u.files, p)
		}
	}
	return u
}

func (u *undo) run() {
	for _, f := range u.files {
		os.Remove(f)
	}
	for _, d := range u.dirs {
		os.Remove(d) // only if empty: never anything we did not make
	}
}

// reloadChains reads the chain files again and has the node present them.
// A file that no longer reads, or chains without a membership, leave the
// node with the chains it had; a chain that does not hold is left out with
// a warning naming its file and line.
func reloadChains(ctx context.Context, n *node.Node, files []string, log *slog.Logger) {
	var chains []ucan.Chain
	var sources []string
	for _, f := range files {
		cs, srcs, err := readChainFile(f)
		if err != nil {
			log.Error("SIGHUP: keeping the chains the node has", "err", err)
			return
		}
		chains = append(chains, cs...)
		sources = append(sources, srcs...)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := n.SetChains(ctx, chains, sources...); err != nil {
		log.Error("SIGHUP: presenting the chains again", "err", err)
		return
	}
	log.Info("SIGHUP: chains read again and presented to every peer", "chains", len(chains))
}

// readChainFile reads the chains of a --ucan file: one chain in any form
// ucan.ParseChain reads, or several in text, one per line. It returns, for
// each chain, where it came from (the file, and the line when there are
// several), for the node's warnings.
func readChainFile(path string) ([]ucan.Chain, []string, error) {
	data, err := ucanReadLimited(path, nil)
	if err != nil {
		return nil, nil, err
	}
	if c, err := ucan.ParseChain(data); err == nil {
		return []ucan.Chain{c}, []string{path}, nil
	}
	var out []ucan.Chain
	var srcs []string
	for i, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSpace(line); line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		c, err := ucan.ParseChain([]byte(line))
		if err != nil {
			return nil, nil, fmt.Errorf("%s:%d: %v", path, i+1, cleanUCANError(err))
		}
		out = append(out, c)
		srcs = append(srcs, fmt.Sprintf("%s:%d", path, i+1))
	}
	if len(out) == 0 {
		return nil, nil, fmt.Errorf("%s: no chain in it", path)
	}
	return out, srcs, nil
}
