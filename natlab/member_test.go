package natlab

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestMembersAcrossNATs runs macula-node processes behind symmetric,
// port-restricted and full-cone NATs, with a relay on the public side:
// nodes behind symmetric NAT reach each other only through the relay. Every
// node learns every node's capabilities; a change of capabilities, a clean
// stop and a kill -9 (of a node behind symmetric NAT) are seen by all
// others. It prints the times (it does not assert on them).
//
//	go test -run TestMembersAcrossNATs -v ./natlab/
//
// Every node runs with the flags a user types: the relay (the public
// bootstrap node) with --stun, the others with --bootstrap, --stun and
// --capabilities; each decides its reachability, DHT mode, reservations
// and relay service from what it measures.
func TestMembersAcrossNATs(t *testing.T) {
	if err := Check(Options{}); err != nil {
		New(t, Options{}) // skips, or fails when CI=true
	}
	bin := buildMaculaNode(t)
	specs := []SiteSpec{
		{Name: Symmetric, NAT: Symmetric}, {Name: Symmetric + "2", NAT: Symmetric},
		{Name: PortRestricted, NAT: PortRestricted}, {Name: FullCone, NAT: FullCone},
	}
	lab := New(t, Options{Sites: specs})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dataRoot := t.TempDir()
	start := func(n *mnode, args ...string) {
		n.bin = bin
		base := []string{bin, "run", "--realm", matrixRealm, "--name", n.name,
			"--data-dir", filepath.Join(dataRoot, n.name), "--listen", listenAddr,
			"--api", matrixAPI, "--http3", "off"}
		n.proc = n.host.Start(t, append(base, args...)...)
	}
	var all []*mnode
	defer func() {
		if t.Failed() {
			for _, n := range all {
				out := n.proc.Output()
				if len(out) > 8000 {
					out = "...\n" + out[len(out)-8000:]
				}
				t.Logf("---- %s log:\n%s", n.name, out)
			}
		}
	}()
	relay := &mnode{name: "relay", typ: "relay", host: lab.Relay()}
	start(relay, "--stun", lab.STUNAddr())
	all = append(all, relay)
	if err := relay.waitUp(ctx, 15*time.Second, ""); err != nil {
		t.Fatal(err)
	}
	caps := map[string]string{"relay": ""}
	for _, s := range specs {
		n := &mnode{name: strings.ReplaceAll(strings.ToLower(s.Name), "_", "-"), typ: s.NAT, site: lab.Site(s.Name), host: lab.Site(s.Name).Host}
		caps[n.name] = "game"
		start(n, "--bootstrap", relay.multiaddr(), "--stun", lab.STUNAddr(), "--capabilities", "game")
		all = append(all, n)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(all))
	for i, n := range all[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A relayed address once the node has decided that it is
			// behind a NAT and holds its reservation.
			errs[i] = n.waitUp(ctx, 60*time.Second, "p2p-circuit")
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	startAll := time.Now()
	waitAll := func(nodes []*mnode, since time.Time, what string, want map[string]string) time.Duration {
		t.Helper()
		var mu sync.Mutex
		var last time.Duration
		var failures []string
		for _, n := range nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				deadline := time.Now().Add(60 * time.Second)
				var got map[string]string
				for time.Now().Before(deadline) {
					out, err := n.cli(ctx, 5*time.Second, "members", "--json")
					var ms struct {
						Members []struct {
							Name         string   `json:"name"`
							Capabilities []string `json:"capabilities"`
						} `json:"members"`
					}
					if err == nil && json.Unmarshal(out, &ms) == nil {
						got = map[string]string{}
						for _, m := range ms.Members {
							got[m.Name] = strings.Join(m.Capabilities, ",")
						}
						if fmt.Sprint(got) == fmt.Sprint(want) {
							mu.Lock()
							last = max(last, time.Since(since))
							mu.Unlock()
							return
						}
					}
					time.Sleep(100 * time.Millisecond)
				}
				mu.Lock()
				failures = append(failures, fmt.Sprintf("%s sees %v", n.name, got))
				mu.Unlock()
			}()
		}
		wg.Wait()
		if len(failures) > 0 {
			slices.Sort(failures)
			t.Fatalf("%s: want %v everywhere; %s", what, want, strings.Join(failures, "; "))
		}
		return last
	}
	join := waitAll(all, startAll, "every node", caps)
	t.Logf("all %d nodes see each other %v after the last one was up", len(all), join.Round(time.Millisecond))

	sym, sym2, pr := all[1], all[2], all[3]
	at := time.Now()
	if _, err := sym.cli(ctx, 10*time.Second, "capabilities", "set", "game,chat"); err != nil {
		t.Fatal(err)
	}
	caps[sym.name] = "chat,game"
	change := waitAll(all, at, "a change behind symmetric NAT", caps)
	t.Logf("capability change behind symmetric NAT: seen by all %v after the command started", change.Round(time.Millisecond))

	at = time.Now()
	sym2.proc.Kill()
	delete(caps, sym2.name)
	rest := slices.DeleteFunc(slices.Clone(all), func(n *mnode) bool { return n == sym2 })
	crash := waitAll(rest, at, "a node behind symmetric NAT killed", caps)
	t.Logf("kill -9 behind symmetric NAT: seen by the %d others %v after the kill", len(rest), crash.Round(time.Millisecond))

	at = time.Now()
	pr.proc.Stop()
	delete(caps, pr.name)
	rest = slices.DeleteFunc(rest, func(n *mnode) bool { return n == pr })
	leave := waitAll(rest, at, "a node behind port-restricted NAT stopped", caps)
	t.Logf("clean stop behind port-restricted NAT: seen by the %d others %v after SIGTERM", len(rest), leave.Round(time.Millisecond))
}
