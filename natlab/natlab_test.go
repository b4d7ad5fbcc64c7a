package natlab

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/macula-io/macula/nat"
)

func TestMain(m *testing.M) {
	if role := os.Getenv("NATLAB_HELPER"); role != "" {
		os.Exit(runHelper(role))
	}
	code := m.Run()
	removeBuilt()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// truth is what a site's router really does.
type truth struct {
	typ                nat.Type
	mapping, filtering nat.Behavior
	hairpin            bool
}

var (
	ei  = nat.BehaviorEndpointIndependent
	ad  = nat.BehaviorAddressDependent
	apd = nat.BehaviorAddressAndPortDependent
)

func siteTruth(s *Site) truth {
	t := truth{mapping: ei, hairpin: s.Hairpin}
	switch s.NAT {
	case FullCone:
		t.typ, t.filtering = nat.TypeFullCone, ei
	case Restricted:
		t.typ, t.filtering = nat.TypeRestricted, ad
	case PortRestricted:
		t.typ, t.filtering = nat.TypePortRestricted, apd
	case Symmetric:
		// masquerade fully-random: a new port for every destination
		// address and port; and conntrack filters by address and port.
		t.typ, t.mapping, t.filtering = nat.TypeSymmetric, apd, apd
	}
	return t
}

// probeIn runs the probe helper in h and returns its result.
func probeIn(ctx context.Context, h *Host, env ...string) (probeOutput, error) {
	cmd := helperCommand(ctx, h, "probe", env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	raw, err := cmd.Output()
	var out probeOutput
	if jerr := json.Unmarshal(raw, &out); jerr != nil {
		return out, fmt.Errorf("probe in %s: %v (%v): %s %s", h.Name, err, jerr, raw, stderr.String())
	}
	return out, nil
}

// stunClient runs the `stun` client of stun-client (RFC 3489 era, a second
// opinion) in h and returns its verdict line and the classic type it means.
func stunClient(ctx context.Context, h *Host, server string) (line string, typ nat.Type) {
	out, _ := h.Exec(ctx, "stun", server)
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "Primary: ") {
			line = strings.TrimSpace(strings.TrimPrefix(l, "Primary: "))
		}
	}
	switch {
	case strings.Contains(line, "Dependent Mapping"):
		typ = nat.TypeSymmetric
	case strings.Contains(line, "Independent Mapping, Independent Filter"):
		typ = nat.TypeFullCone
	case strings.Contains(line, "Independent Mapping, Address Dependent Filter"):
		typ = nat.TypeRestricted
	case strings.Contains(line, "Independent Mapping, Port Dependent Filter"):
		typ = nat.TypePortRestricted
	case strings.Contains(line, "Open"):
		typ = nat.TypeOpen
	default:
		typ = nat.TypeUnknown
	}
	return line, typ
}

func hostInterfaces(t *testing.T) []string {
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, i := range ifs {
		names = append(names, i.Name)
	}
	slices.Sort(names)
	return names
}

// TestNATTypes builds the lab and checks that the nat package, run inside
// every site on a QUIC host's socket, finds the NAT type its router really
// has: against coturn and against Macula's own RFC 5780 server, with the
// stun client as a second opinion where it is installed.
func TestNATTypes(t *testing.T) {
	before := hostInterfaces(t)
	lab := New(t, Options{})
	if after := hostInterfaces(t); !slices.Equal(before, after) {
		t.Fatalf("the lab changed the host's interfaces: %v -> %v", before, after)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()

	// Macula's own STUN server beside coturn, on the same two IPs.
	stunHost := lab.Host("stun")
	srvCmd := helperCommand(context.Background(), stunHost, "stunserver",
		"NATLAB_IPS="+lab.STUN.Primary.Addr().String()+","+lab.STUN.OtherIP.String(), "NATLAB_PORTS=3480,3481")
	stdout, err := srvCmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	srv := stunHost.StartCommand(t, srvCmd)
	ready := make(chan bool, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		ready <- strings.TrimSpace(line) == "ready"
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("macula STUN server did not start: %s", srv.Output())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("macula STUN server did not start: %s", srv.Output())
	}
	coturn := lab.STUNAddr()
	macula := lab.STUN.Primary.Addr().String() + ":3480"
	_, errStun := exec.LookPath("stun")

	type row struct {
		name       string
		want       truth
		open       bool
		viaCoturn  probeOutput
		viaMacula  probeOutput
		stunLine   string
		stunType   nat.Type
		errC, errM error
	}
	var rows []*row
	for _, s := range lab.Sites() {
		rows = append(rows, &row{name: s.Name, want: siteTruth(s)})
	}
	rows = append(rows, &row{name: "public (no NAT)", open: true, want: truth{typ: nat.TypeOpen, mapping: ei, filtering: ei}})
	hostOf := func(r *row) *Host {
		if r.open {
			return lab.Public()
		}
		return lab.Site(r.name).Host
	}

	start := time.Now()
	var wg sync.WaitGroup
	for _, r := range rows {
		h := hostOf(r)
		wg.Add(2)
		go func() {
			defer wg.Done()
			r.viaCoturn, r.errC = probeIn(ctx, h, "NATLAB_QUIC=1", "NATLAB_SERVERS="+coturn)
		}()
		go func() {
			defer wg.Done()
			r.viaMacula, r.errM = probeIn(ctx, h, "NATLAB_QUIC=1", "NATLAB_SERVERS="+macula)
		}()
		if errStun == nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r.stunLine, r.stunType = stunClient(ctx, h, lab.STUN.Primary.Addr().String())
			}()
		}
	}
	wg.Wait()
	elapsed := time.Since(start)

	hp := func(b *bool) string {
		if b == nil {
			return "-"
		}
		return fmt.Sprint(*b)
	}
	var tb strings.Builder
	fmt.Fprintf(&tb, "\n%-16s | %-15s | %-15s %-41s %-7s %-15s %-9s | %-15s | %s\n",
		"site", "router (truth)", "nat (coturn)", "mapping / filtering", "hairpin", "public", "quic port", "nat (macula)", "stun client")
	for _, r := range rows {
		c, m := r.viaCoturn.Info, r.viaMacula.Info
		fmt.Fprintf(&tb, "%-16s | %-15s | %-15s %-41s %-7s %-15s %-9d | %-15s | %s\n",
			r.name, r.want.typ, c.Type, string(c.Mapping)+" / "+string(c.Filtering), hp(c.Hairpin),
			fmt.Sprintf("%v:%d", c.PublicIP, c.PublicPort), r.viaCoturn.QUICPort, m.Type, r.stunLine)
	}
	t.Logf("NAT detection in the lab (probes in parallel, %v):%s", elapsed.Round(time.Millisecond), tb.String())

	for _, r := range rows {
		for _, v := range []struct {
			via string
			out probeOutput
			err error
		}{{"coturn", r.viaCoturn, r.errC}, {"macula", r.viaMacula, r.errM}} {
			i := v.out.Info
			switch {
			case v.err != nil:
				t.Errorf("%s via %s: %v", r.name, v.via, v.err)
				continue
			case v.out.Err != "":
				t.Errorf("%s via %s: probe error %s", r.name, v.via, v.out.Err)
				continue
			}
			if i.Type != r.want.typ || i.Mapping != r.want.mapping || i.Filtering != r.want.filtering {
				t.Errorf("%s via %s: detected %s (%s / %s), router is %s (%s / %s); error %q",
					r.name, v.via, i.Type, i.Mapping, i.Filtering, r.want.typ, r.want.mapping, r.want.filtering, i.Error)
			}
			if i.Error != "" {
				t.Errorf("%s via %s: error %q", r.name, v.via, i.Error)
			}
			if !r.open && (i.Hairpin == nil || *i.Hairpin != r.want.hairpin) {
				t.Errorf("%s via %s: hairpin %s, router: %v", r.name, v.via, hp(i.Hairpin), r.want.hairpin)
			}
			if r.open {
				continue
			}
			site := lab.Site(r.name)
			if i.PublicIP != site.WAN {
				t.Errorf("%s via %s: public IP %v, router's is %v", r.name, v.via, i.PublicIP, site.WAN)
			}
			// masquerade keeps the port when it can; fully-random never does.
			if keeps := r.want.mapping == ei; keeps != (int(i.PublicPort) == v.out.QUICPort) {
				t.Errorf("%s via %s: public port %d, QUIC port %d", r.name, v.via, i.PublicPort, v.out.QUICPort)
			}
		}
		if errStun == nil && r.stunType != r.want.typ {
			t.Errorf("%s: the stun client says %q (%s), router is %s", r.name, r.stunLine, r.stunType, r.want.typ)
		}
	}
}

// TestHairpinReach: two hosts behind one hairpinning router reach each other
// at their public addresses: host 1 answers STUN on its socket (as a node
// does on its QUIC socket) and host 2 uses it as its STUN server.
func TestHairpinReach(t *testing.T) {
	lab := New(t, Options{Sites: []SiteSpec{{Name: Hairpin, NAT: PortRestricted, Hosts: 2, Hairpin: true}}})
	site := lab.Site(Hairpin)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	cmd := helperCommand(context.Background(), site.Hosts[0], "probe",
		"NATLAB_SERVERS="+lab.STUNAddr(), "NATLAB_ADDRONLY=1", "NATLAB_RESPOND=1", "NATLAB_HOLD=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p1 := site.Hosts[0].StartCommand(t, cmd)
	line, err := bufio.NewReader(stdout).ReadString('\n')
	var first probeOutput
	if err != nil || json.Unmarshal([]byte(line), &first) != nil || first.Err != "" {
		t.Fatalf("host 1: %q %v %s", line, err, p1.Output())
	}
	pub, ok := first.Info.PublicAddr()
	if !ok || pub.Addr() != site.WAN {
		t.Fatalf("host 1 public address %v", first.Info)
	}
	second, err := probeIn(ctx, site.Hosts[1], "NATLAB_SERVERS="+pub.String(), "NATLAB_ADDRONLY=1")
	if err != nil || second.Err != "" {
		t.Fatalf("host 2 cannot reach host 1 at %v: %v %s", pub, err, second.Err)
	}
	if got := second.Info.PublicIP; got != site.WAN {
		t.Errorf("host 1 saw host 2 as %v, want the router's public address %v (hairpin SNAT)", got, site.WAN)
	}
	t.Logf("host 2 (%v) reached host 1 at %v; host 1 saw it as %v:%d", site.Hosts[1].Addr, pub, second.Info.PublicIP, second.Info.PublicPort)
}

// TestLabCleanup: Close deletes every namespace of the lab.
func TestLabCleanup(t *testing.T) {
	lab := New(t, Options{Sites: []SiteSpec{{Name: Symmetric}}, NoSTUN: true})
	ns := []string{lab.Site(Symmetric).NS, lab.Site(Symmetric).Router.NS, lab.Relay().NS, lab.Prefix + "-pub"}
	p := lab.Relay().Start(t, "sleep", "60")
	if err := lab.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	default:
		t.Error("a process started in the lab survived Close")
	}
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ns {
		if strings.Contains(string(out), n) {
			t.Errorf("namespace %s survived Close", n)
		}
	}
	if _, err := os.Stat("/run/natlab/" + lab.Prefix); !os.IsNotExist(err) {
		t.Errorf("state of %s survived Close: %v", lab.Prefix, err)
	}
}
