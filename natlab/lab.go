package natlab

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

//go:embed natlab.sh
var script []byte

// NAT types of a site's router; they are also the names of the default sites.
// The values match the nat package's Type strings.
const (
	FullCone       = "full_cone"
	Restricted     = "restricted"
	PortRestricted = "port_restricted"
	Symmetric      = "symmetric"
)

// Hairpin is the name of the default site with two hosts behind one
// port-restricted router that does NAT loopback.
const Hairpin = "hairpin"

// SiteSpec describes one site.
type SiteSpec struct {
	Name    string // [a-z0-9_]{1,20}
	NAT     string // FullCone, Restricted, PortRestricted or Symmetric
	Hosts   int    // 1 to 9; 0 means 1
	Hairpin bool   // the router does NAT loopback
}

// DefaultSites returns the four NAT types with one host each, and the
// hairpin site.
func DefaultSites() []SiteSpec {
	return []SiteSpec{
		{Name: FullCone, NAT: FullCone},
		{Name: Restricted, NAT: Restricted},
		{Name: PortRestricted, NAT: PortRestricted},
		{Name: Symmetric, NAT: Symmetric},
		{Name: Hairpin, NAT: PortRestricted, Hosts: 2, Hairpin: true},
	}
}

// Options tune New. The zero value builds the default lab.
type Options struct {
	// Sites to build; nil means DefaultSites().
	Sites []SiteSpec
	// NoSTUN leaves coturn out (and the need for it).
	NoSTUN bool
	// Prefix names the lab's namespaces ([a-z0-9]{1,12}); empty means a
	// random one, so that parallel runs never collide.
	Prefix string
}

// Lab is a running NAT lab.
type Lab struct {
	// Prefix starts the name of every namespace of the lab.
	Prefix string
	// STUN is where coturn listens (unless Options.NoSTUN).
	STUN STUNServer

	scriptPath string // read-only after New
	hosts      map[string]*Host
	sites      map[string]*Site
	order      []*Site

	mu     sync.Mutex // guards the fields below
	procs  []*Proc
	closed bool
}

// STUNServer is the lab's RFC 5780 STUN server: coturn on two IPs and two
// ports.
type STUNServer struct {
	NS      string
	Primary netip.AddrPort // 7.0.0.2:3478
	OtherIP netip.Addr     // 7.0.0.3
	AltPort uint16         // 3479
	Running bool           // coturn was started
}

// Host is a network namespace with one address in the lab.
type Host struct {
	Name string     // "relay", or "SITE/K" for a host of a site
	NS   string     // the namespace
	Addr netip.Addr // its address (a site host's private one)
	lab  *Lab
}

// Site is a NAT router with the hosts behind it. Its embedded Host is the
// first host, so site.Exec and site.Start run there.
type Site struct {
	*Host
	Name    string
	NAT     string
	Hairpin bool
	Router  *Host        // the router's namespace; Router.Addr is WAN
	WAN     netip.Addr   // the router's public address (8.0.0.N)
	LAN     netip.Prefix // 10.0.N.0/24
	Hosts   []*Host      // all hosts, Hosts[0] == Host
}

// Check reports why a lab cannot be built here: not root, or a tool missing.
func Check(opts Options) error {
	if os.Geteuid() != 0 {
		return errors.New("natlab needs root (network namespaces, nftables)")
	}
	tools := []struct{ bin, pkg string }{
		{"bash", "bash"}, {"ip", "iproute2"}, {"ss", "iproute2"}, {"nft", "nftables"},
		{"sysctl", "procps"}, {"setsid", "util-linux"},
	}
	if !opts.NoSTUN {
		tools = append(tools, struct{ bin, pkg string }{"turnserver", "coturn"})
	}
	var missing []string
	for _, tool := range tools {
		if _, err := exec.LookPath(tool.bin); err != nil {
			missing = append(missing, tool.pkg)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("natlab needs: apt-get install -y %s", strings.Join(missing, " "))
	}
	return nil
}

// New builds a lab and registers its Close with t.Cleanup. Without root or
// the tools it skips the test, but fails it when CI=true, since CI must run
// the lab.
func New(t testing.TB, opts Options) *Lab {
	t.Helper()
	if err := Check(opts); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (CI=true: the NAT lab must run)", err)
		}
		t.Skip(err)
	}
	prefix := opts.Prefix
	if prefix == "" {
		var b [4]byte
		rand.Read(b[:])
		prefix = "nl" + hex.EncodeToString(b[:])
	}
	f, err := os.CreateTemp("", "natlab-*.sh")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(script); err != nil {
		f.Close()
		os.Remove(f.Name())
		t.Fatal(err)
	}
	f.Close()
	l := &Lab{Prefix: prefix, scriptPath: f.Name(), hosts: map[string]*Host{}, sites: map[string]*Site{}}

	// Labs of test binaries that were killed before their cleanup.
	if out, err := l.run("sweep"); err != nil {
		t.Logf("natlab sweep: %v\n%s", err, out)
	}
	args := []string{"up", "-p", prefix, "--owner", strconv.Itoa(os.Getpid()), "-s", siteArgs(opts.Sites)}
	if opts.NoSTUN {
		args = append(args, "--no-stun")
	}
	start := time.Now()
	out, err := l.run(args...)
	if err != nil {
		l.Close()
		t.Fatalf("natlab up: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("natlab close: %v", err)
		}
	})
	if err := l.parse(out); err != nil {
		t.Fatalf("natlab topology: %v\n%s", err, out)
	}
	l.STUN.Running = !opts.NoSTUN
	t.Logf("natlab %s up in %v: %d sites", prefix, time.Since(start).Round(time.Millisecond), len(l.order))
	return l
}

func siteArgs(specs []SiteSpec) string {
	if specs == nil {
		specs = DefaultSites()
	}
	parts := make([]string, 0, len(specs))
	for _, s := range specs {
		nat := s.NAT
		if nat == "" {
			nat = s.Name
		}
		hosts := s.Hosts
		if hosts == 0 {
			hosts = 1
		}
		hp := 0
		if s.Hairpin {
			hp = 1
		}
		parts = append(parts, fmt.Sprintf("%s:%s:%d:%d", s.Name, nat, hosts, hp))
	}
	return strings.Join(parts, " ")
}

// run runs natlab.sh with args and returns its combined output.
func (l *Lab) run(args ...string) ([]byte, error) {
	// Bringing a lab up takes 15-30 s on a quiet machine; under a load of
	// 150-200, with other labs being built beside it, it took over 2 min.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{l.scriptPath}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return append(out, stderr.Bytes()...), err
	}
	return out, nil
}

// parse reads the topology that `natlab.sh up` prints.
func (l *Lab) parse(out []byte) error {
	sc := bufio.NewScanner(bytes.NewReader(out))
	siteHosts := map[string][]*Host{}
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		var err error
		switch {
		case f[0] == "host" && len(f) == 4:
			var a netip.Addr
			a, err = netip.ParseAddr(f[3])
			l.hosts[f[1]] = &Host{Name: f[1], NS: f[2], Addr: a, lab: l}
		case f[0] == "stun" && len(f) == 6:
			var a1, a2 netip.Addr
			var p1, p2 uint64
			a1, err = netip.ParseAddr(f[2])
			if err == nil {
				a2, err = netip.ParseAddr(f[3])
			}
			if err == nil {
				p1, err = strconv.ParseUint(f[4], 10, 16)
			}
			if err == nil {
				p2, err = strconv.ParseUint(f[5], 10, 16)
			}
			l.STUN = STUNServer{NS: f[1], Primary: netip.AddrPortFrom(a1, uint16(p1)), OtherIP: a2, AltPort: uint16(p2)}
		case f[0] == "sitehost" && len(f) == 5:
			var a netip.Addr
			a, err = netip.ParseAddr(f[4])
			siteHosts[f[1]] = append(siteHosts[f[1]], &Host{Name: f[1] + "/" + f[2], NS: f[3], Addr: a, lab: l})
		case f[0] == "site" && len(f) == 7:
			var wan netip.Addr
			var lan netip.Prefix
			wan, err = netip.ParseAddr(f[5])
			if err == nil {
				lan, err = netip.ParsePrefix(f[6])
			}
			hs := siteHosts[f[1]]
			if err == nil && len(hs) == 0 {
				err = fmt.Errorf("site %s has no hosts", f[1])
			}
			if err == nil {
				s := &Site{
					Host: hs[0], Name: f[1], NAT: f[2], Hairpin: f[3] == "1",
					Router: &Host{Name: f[1] + "/router", NS: f[4], Addr: wan, lab: l},
					WAN:    wan, LAN: lan, Hosts: hs,
				}
				l.sites[s.Name] = s
				l.order = append(l.order, s)
			}
		case f[0] == "lab":
		default:
			err = fmt.Errorf("unexpected line %q", sc.Text())
		}
		if err != nil {
			return err
		}
	}
	return sc.Err()
}

// SetNAT gives the site's router another NAT type at run time (natlab.sh
// renat): new flows get the new type's mapping and filtering, flows that
// exist keep theirs, as on a real router whose configuration changed. It
// updates s.NAT, which nothing may read meanwhile.
func (s *Site) SetNAT(nat string) error {
	l := s.Host.lab
	if out, err := l.run("renat", "-p", l.Prefix, s.Name, nat); err != nil {
		return fmt.Errorf("natlab renat %s %s: %v: %s", s.Name, nat, err, out)
	}
	s.NAT = nat
	return nil
}

// Site returns the site of that name, or nil.
func (l *Lab) Site(name string) *Site { return l.sites[name] }

// Sites returns the sites in the order they were built.
func (l *Lab) Sites() []*Site { return append([]*Site(nil), l.order...) }

// Host returns a public host by name: "stun", "relay", "relay2", "public";
// or a site's host as "SITE/K" (K from 1); or nil.
func (l *Lab) Host(name string) *Host {
	if h, ok := l.hosts[name]; ok {
		return h
	}
	if site, k, ok := strings.Cut(name, "/"); ok {
		if s := l.sites[site]; s != nil {
			if i, err := strconv.Atoi(k); err == nil && i >= 1 && i <= len(s.Hosts) {
				return s.Hosts[i-1]
			}
		}
	}
	return nil
}

// Relay is the public bootstrap / relay host (7.0.0.10).
func (l *Lab) Relay() *Host { return l.hosts["relay"] }

// Relay2 is the second relay host (7.0.0.11).
func (l *Lab) Relay2() *Host { return l.hosts["relay2"] }

// Public is the public host without NAT (7.0.0.20).
func (l *Lab) Public() *Host { return l.hosts["public"] }

// STUNAddr is coturn's primary address as HOST:PORT, for a --stun flag.
func (l *Lab) STUNAddr() string { return l.STUN.Primary.String() }

// Command returns a command that runs inside h's namespace; set its Env,
// Stdout and so on before starting it.
func (h *Host) Command(ctx context.Context, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.NS}, args...)...)
}

// Exec runs a command inside h's namespace and returns its combined output.
func (h *Host) Exec(ctx context.Context, args ...string) ([]byte, error) {
	out, err := h.Command(ctx, args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s: %s: %w", h.Name, strings.Join(args, " "), err)
	}
	return out, nil
}

// Start starts a process inside h's namespace; it is stopped at the end of
// the test (t.Cleanup) or by Lab.Close, whichever comes first.
func (h *Host) Start(t testing.TB, args ...string) *Proc {
	t.Helper()
	return h.StartCommand(t, h.Command(context.Background(), args...))
}

// StartCommand starts cmd (made by Command, with Env and the like set) as
// Start does. Its Stdout and Stderr, if nil, go to the Proc's output.
func (h *Host) StartCommand(t testing.TB, cmd *exec.Cmd) *Proc {
	t.Helper()
	p := &Proc{Host: h, cmd: cmd, done: make(chan struct{})}
	if cmd.Stdout == nil {
		cmd.Stdout = &p.out
	}
	if cmd.Stderr == nil {
		cmd.Stderr = &p.out
	}
	// Its own process group, so that Stop reaches what it starts.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	l := h.lab
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		t.Fatalf("natlab: Start on a closed lab")
	}
	if err := cmd.Start(); err != nil {
		l.mu.Unlock()
		t.Fatalf("natlab: start %v in %s: %v", cmd.Args, h.Name, err)
	}
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.Stop() })
	return p
}

// Proc is a process started in the lab.
type Proc struct {
	Host *Host
	cmd  *exec.Cmd
	out  syncBuffer
	done chan struct{}
	err  error // set before done is closed
}

// Pid is the process ID (ip netns exec runs the program in its own place).
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Output returns what the process wrote so far (if its Stdout and Stderr
// were left to the Proc).
func (p *Proc) Output() string { return p.out.String() }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Wait waits for the process to exit and returns its error.
func (p *Proc) Wait() error {
	<-p.done
	return p.err
}

// Kill kills the process group at once (a crash, as a test sees it).
func (p *Proc) Kill() {
	select {
	case <-p.done:
		return
	default:
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Stop asks the process group to end (SIGTERM), kills it after 3 s, and
// waits. Safe to call more than once.
func (p *Proc) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(3 * time.Second):
		p.Kill()
	}
}

// Close stops the processes started in the lab, ends whatever else runs in
// its namespaces (coturn), and deletes them. Safe to call more than once.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	procs := l.procs
	l.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() { defer wg.Done(); p.Stop() }()
	}
	wg.Wait()
	out, err := l.run("down", "-p", l.Prefix)
	os.Remove(l.scriptPath)
	if err != nil {
		return fmt.Errorf("natlab down -p %s: %v: %s", l.Prefix, err, out)
	}
	return nil
}

// syncBuffer is a bytes.Buffer safe for a writer and readers at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
