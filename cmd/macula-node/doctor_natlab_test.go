package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/natlab"
)

// TestDoctorNATLab runs the commands of docs/deployment.md in the NAT lab
// (its public node, id, site and doctor blocks, with the lab's addresses
// for the example ones): a public relay node and one site node behind
// each of full-cone, port-restricted and symmetric NAT. In each site,
// doctor with the node's settings must report the router's NAT type, the
// relay reservation the node holds, and whether peers reach the node
// directly; on the public host, an open NAT and no need of a relay. Then, in a site, a
// node set up wrong (a bootstrap address where nothing listens, a data
// directory other users may write) gets a failure that says what to fix.
func TestDoctorNATLab(t *testing.T) {
	if err := natlab.Check(natlab.Options{}); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (CI=true: the NAT lab must run)", err)
		}
		t.Skip(err)
	}
	t.Parallel()
	// The commands of docs/deployment.md, with the lab's addresses.
	doc := deploymentDoc(t)
	const realmName = "io.acme.orders" // the doc's
	lab := natlab.New(t, natlab.Options{Sites: []natlab.SiteSpec{
		{Name: "fc", NAT: natlab.FullCone},
		{Name: "pr", NAT: natlab.PortRestricted},
		{Name: "sym", NAT: natlab.Symmetric},
	}})
	root := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	type site struct {
		name, nat string
		host      *natlab.Host
		args      []string // run's settings
		doctor    []string // doctor's: the same settings
		proc      *natlab.Proc
	}
	start := func(s *site) {
		cmd := s.host.Command(context.Background(), append([]string{binPath}, s.args...)...)
		cmd.Env = childEnv(t)
		s.proc = s.host.StartCommand(t, cmd)
	}
	doctor := func(s *site, args []string) (doctorReport, error) {
		cctx, ccancel := context.WithTimeout(ctx, 90*time.Second)
		defer ccancel()
		cmd := s.host.Command(cctx, append(append([]string{binPath}, args...), "--json")...)
		cmd.Env = childEnv(t)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		var rep doctorReport
		if jerr := json.Unmarshal(out, &rep); jerr != nil {
			return rep, fmt.Errorf("%s: doctor: %v, %v in %q; stderr: %s", s.name, err, jerr, out, stderr.String())
		}
		return rep, nil
	}

	stun := []string{docSTUN, lab.STUNAddr()}
	relayDir := filepath.Join(root, "relay")
	relay := &site{name: "relay", nat: "open", host: lab.Relay(),
		args: append(docCommand(t, doc["public"], stun...), "--data-dir", relayDir)}
	relay.doctor = append([]string{"doctor"}, relay.args[1:]...)
	// up waits until the node in dir wrote its state file (its listener
	// and API are up) and returns its peer ID. A doctor run before that
	// checks whether the node's UDP port is free by binding it, and a
	// node that starts meanwhile cannot listen (CI saw it once).
	up := func(dir string) (id string) {
		testnet.Eventually(t, 60*time.Second, func() error {
			b, err := os.ReadFile(filepath.Join(dir, stateFile))
			if err != nil {
				return err
			}
			var st stateInfo
			if err := json.Unmarshal(b, &st); err != nil {
				return err
			}
			id = st.PeerID
			return nil
		})
		return id
	}
	start(relay)
	relayID := up(relayDir)
	// The doc's `macula-node id` on the public host prints the address
	// the sites bootstrap through.
	idCmd := relay.host.Command(ctx, append([]string{binPath}, docCommand(t, doc["id"])...)...)
	idCmd.Env = childEnv(t)
	if out, err := idCmd.Output(); err != nil || !strings.Contains(string(out), fmt.Sprintf("/ip4/%s/udp/7400/quic-v1/p2p/%s", lab.Relay().Addr, relayID)) {
		t.Fatalf("the doc's id command on the public node: %v\n%s", err, out)
	}
	sites := []*site{relay}
	for _, s := range []struct{ name, nat string }{{"fc", natlab.FullCone}, {"pr", natlab.PortRestricted}, {"sym", natlab.Symmetric}} {
		subst := []string{docPublicIP, lab.Relay().Addr.String(), docPeerID, relayID, docSTUN, lab.STUNAddr(), "site-a", "site-" + s.name}
		dir := []string{"--data-dir", filepath.Join(root, s.name)}
		ss := &site{name: s.name, nat: s.nat, host: lab.Site(s.name).Host,
			args:   append(docCommand(t, doc["site"], subst...), dir...),
			doctor: append(docCommand(t, doc["doctor"], subst...), dir...)}
		if strings.Join(ss.args[1:], " ") != strings.Join(ss.doctor[1:], " ") {
			t.Fatalf("the doc's doctor command does not take the site's settings:\n%q\n%q", ss.args, ss.doctor)
		}
		start(ss)
		sites = append(sites, ss)
	}
	for _, s := range sites[1:] {
		up(filepath.Join(root, s.name))
	}

	var wg sync.WaitGroup
	for _, s := range sites {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var rep doctorReport
			var last error
			deadline := time.Now().Add(150 * time.Second)
			for time.Now().Before(deadline) && ctx.Err() == nil {
				rep, last = doctor(s, s.doctor)
				if last == nil {
					var circuit bool
					if circuit, last = hasCircuit(ctx, s.host); last == nil {
						last = judge(s.name, s.nat, rep, circuit, s.nat != "open" && s.nat != natlab.FullCone)
					}
				}
				if last == nil {
					break
				}
				time.Sleep(2 * time.Second)
			}
			if last != nil {
				t.Errorf("%s (%s): %v\nreport: %+v\nnode log:\n%s", s.name, s.nat, last, rep, tail(s.proc.Output(), 4000))
				return
			}
			var lines []string
			for _, c := range rep.Checks {
				lines = append(lines, fmt.Sprintf("  %-4s %-12s %s", c.Status, c.Check, c.Summary))
			}
			t.Logf("doctor in %s (%s NAT):\n%s", s.name, s.nat, strings.Join(lines, "\n"))
		}()
	}
	wg.Wait()

	// A node set up wrong, in the port-restricted site: its bootstrap
	// address names a port where nothing listens, and its data directory
	// is writable by everyone. Doctor, with no node running, says so.
	bad := filepath.Join(root, "bad")
	if err := os.Mkdir(bad, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(bad, 0o777); err != nil {
		t.Fatal(err)
	}
	wrong := fmt.Sprintf("/ip4/%s/udp/7409/quic-v1/p2p/%s", lab.Relay().Addr, relayID)
	badSite := &site{name: "pr-bad", host: lab.Site("pr").Host}
	rep, err := doctor(badSite, []string{"doctor", "--realm", realmName, "--name", "bad", "--data-dir", bad, "--api", "127.0.0.1:7411",
		"--listen", "/ip4/0.0.0.0/udp/7410/quic-v1", "--bootstrap", wrong, "--stun", lab.STUNAddr()})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Running {
		t.Errorf("doctor with the bad settings found a node running")
	}
	if c := rep.check(t, "bootstrap"); c.Status != checkFail || !strings.Contains(c.Summary, wrong) || !strings.Contains(c.Fix, "UDP port") {
		t.Errorf("bootstrap check with a wrong port = %+v", c)
	}
	if c := rep.check(t, "data_dir"); c.Status != checkFail || !strings.Contains(c.Fix, "chmod 700 "+bad) {
		t.Errorf("data_dir check of a 0777 directory = %+v", c)
	}
	// Its own STUN probe still measures the site's NAT.
	if rep.NATType != natlab.PortRestricted {
		t.Errorf("doctor's own probe in the port-restricted site says %q", rep.NATType)
	}
	for _, c := range rep.Checks {
		t.Logf("  %-4s %-12s %s", c.Status, c.Check, c.Summary)
	}
}

// judge says what is wrong with a site's doctor report, nil if nothing.
// circuit is the truth doctor must tell: whether the node's own addresses
// (macula-node id) include a relayed one; mustRelay: the node is behind a
// NAT that peers cannot dial through, so with default flags its
// measurements make it private, and it must hold a reservation.
func judge(name, natType string, rep doctorReport, circuit, mustRelay bool) error {
	if !rep.Running {
		return fmt.Errorf("doctor did not find the node running: %+v", rep.Checks)
	}
	if rep.NATType != natType {
		return fmt.Errorf("NAT type %q, want %q", rep.NATType, natType)
	}
	wantDirect := natType == "open" || natType == natlab.FullCone
	if rep.Direct != wantDirect {
		return fmt.Errorf("direct = %v, want %v", rep.Direct, wantDirect)
	}
	if mustRelay && !circuit {
		return errors.New("the node holds no reservation yet")
	}
	for _, c := range rep.Checks {
		switch {
		case c.Check == "relays" && (wantDirect || circuit):
			if c.Status != checkOK || (circuit && len(rep.Relays) == 0) {
				return fmt.Errorf("relays (the node has a relayed address: %v): %+v, relays %v", circuit, c, rep.Relays)
			}
		case c.Check == "relays":
			if c.Status != checkFail || !strings.Contains(c.Fix, "--reachability private") {
				return fmt.Errorf("relays, with no reservation behind %s NAT: %+v", natType, c)
			}
		case c.Check == "bootstrap" && name != "relay":
			if c.Status != checkOK || !strings.Contains(c.Summary, "connected") {
				return fmt.Errorf("bootstrap: %+v", c)
			}
		case c.Status == checkFail:
			return fmt.Errorf("check failed: %+v", c)
		}
	}
	return nil
}

// hasCircuit asks the node in h (macula-node id) whether one of its
// addresses is relayed: it holds a reservation.
func hasCircuit(ctx context.Context, h *natlab.Host) (bool, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := h.Command(cctx, binPath, "id", "--json").Output()
	if err != nil {
		return false, fmt.Errorf("macula-node id: %v", err)
	}
	var info struct {
		Addrs []string `json:"addrs"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return false, err
	}
	for _, a := range info.Addrs {
		if strings.Contains(a, "/p2p-circuit") {
			return true, nil
		}
	}
	return false, nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
