package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/macula-io/macula/api"
	"github.com/macula-io/macula/dht"
	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/node"
)

// runNode is one macula-node run process of a test and what its node.json
// says.
type runNode struct {
	*proc
	dir string
	st  stateInfo
}

// startRunNode starts macula-node run on loopback with random ports and
// waits for its node.json.
func startRunNode(t *testing.T, realmName, name string, bootstrap ...string) *runNode {
	t.Helper()
	return startRunNodeIn(t, filepath.Join(t.TempDir(), name), realmName, name, bootstrap...)
}

// startRunNodeIn is startRunNode with the data directory dir: a node
// restarted in the directory of one that died keeps its identity.
func startRunNodeIn(t *testing.T, dir, realmName, name string, bootstrap ...string) *runNode {
	t.Helper()
	args := []string{"run", "--realm", realmName, "--name", name, "--data-dir", dir,
		"--listen", "/ip4/127.0.0.1/udp/0/quic-v1", "--api", "127.0.0.1:0", "--http3", "off"}
	for _, b := range bootstrap {
		args = append(args, "--bootstrap", b)
	}
	return &runNode{proc: startProc(t, name, nil, args...), dir: dir}
}

// waitReady waits until the node wrote its node.json and reads it. A
// node.json left by a process killed in the same directory (another pid)
// is waited past.
func (n *runNode) waitReady(t *testing.T) {
	t.Helper()
	path := filepath.Join(n.dir, stateFile)
	// Until the node writes its state file.
	testnet.Eventually(t, 20*time.Second, func() error {
		if n.exited() {
			t.Fatalf("%s exited (%v) before it was ready; stderr:\n%s", n.name, n.err, n.stderr.String())
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		n.st = stateInfo{}
		if err := json.Unmarshal(b, &n.st); err != nil {
			return err
		}
		if n.st.PID != n.cmd.Process.Pid {
			return fmt.Errorf("%s is of pid %d, not %d", stateFile, n.st.PID, n.cmd.Process.Pid)
		}
		return nil
	})
	if n.st.API == "" || len(n.st.Addrs) == 0 || n.st.PeerID == "" {
		t.Fatalf("%s: incomplete %s: %+v", n.name, stateFile, n.st)
	}
}

func peerIDs(peers []api.Peer) []string {
	var ids []string
	for _, p := range peers {
		ids = append(ids, p.PeerID)
	}
	slices.Sort(ids)
	return ids
}

// TestEndToEnd runs five macula-node processes of one realm and a sixth of
// another on loopback: the five find each other and each other's DHT
// records through one bootstrap node; the sixth, given the same bootstrap
// address, finds nothing and is refused.
func TestEndToEnd(t *testing.T) {
	t.Parallel()
	const realmName, otherRealm, key = "io.e2e.test", "io.other.realm", "some-key"
	start := time.Now()

	nodes := []*runNode{startRunNode(t, realmName, "n1")}
	nodes[0].waitReady(t)
	boot := nodes[0].st.Addrs[0]
	if !strings.Contains(boot, "/p2p/"+nodes[0].st.PeerID) {
		t.Fatalf("node.json addr %q has no /p2p part", boot)
	}
	for i := 2; i <= 5; i++ {
		nodes = append(nodes, startRunNode(t, realmName, fmt.Sprintf("n%d", i), boot))
	}
	for _, n := range nodes[1:] {
		n.waitReady(t)
	}
	t.Logf("5 nodes ready after %v", time.Since(start).Round(time.Millisecond))

	// Every node sees the four others, as peers and in its DHT.
	for _, n := range nodes {
		var want []string
		for _, o := range nodes {
			if o != n {
				want = append(want, o.st.PeerID)
			}
		}
		slices.Sort(want)
		// Until the node sees the 4 others.
		testnet.Eventually(t, 30*time.Second, func() error {
			var peers []api.Peer
			if err := cliJSON(t, n.st.API, &peers, "peers"); err != nil {
				return err
			}
			if got := peerIDs(peers); !slices.Equal(got, want) {
				return fmt.Errorf("%s: peers %v, want %v", n.name, got, want)
			}
			var st dht.Stats
			if err := cliJSON(t, n.st.API, &st, "dht", "stats"); err != nil {
				return err
			}
			if st.Nodes != 4 {
				return fmt.Errorf("dht stats: %d nodes, want 4", st.Nodes)
			}
			return nil
		})
	}
	t.Logf("full mesh after %v", time.Since(start).Round(time.Millisecond))

	// A key provided on node 3 is found from every other node.
	n3 := nodes[2]
	if r := runCmd(t, 30*time.Second, nil, "--api", n3.st.API, "dht", "provide", key); r.code != 0 || !strings.Contains(r.stdout, key) {
		t.Fatalf("dht provide: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	for _, n := range nodes {
		if n == n3 {
			continue
		}
		// Until the node finds the provider of the key.
		testnet.Eventually(t, 20*time.Second, func() error {
			var res api.LookupResult
			if err := cliJSON(t, n.st.API, &res, "dht", "lookup", key, "--timeout", "5s"); err != nil {
				return err
			}
			for _, p := range res.Providers {
				if p.PeerID == n3.st.PeerID {
					if len(p.Addrs) == 0 {
						return fmt.Errorf("provider %s without addresses", p.PeerID)
					}
					return nil
				}
			}
			return fmt.Errorf("%s finds the providers %+v of %s, want %s", n.name, res.Providers, key, n3.st.PeerID)
		})
	}
	t.Logf("lookups done after %v", time.Since(start).Round(time.Millisecond))

	// Node 5 resolves node 2's alias to node 2's did:key.
	n2, n5 := nodes[1], nodes[4]
	// Until n5 resolves n2's alias.
	testnet.Eventually(t, 20*time.Second, func() error {
		var res node.Resolution
		if err := cliJSON(t, n5.st.API, &res, "resolve", n2.st.Alias); err != nil {
			return err
		}
		if res.DID != n2.st.DID || res.PeerID != n2.st.PeerID {
			return fmt.Errorf("resolved to %s (%s), want %s (%s)", res.DID, res.PeerID, n2.st.DID, n2.st.PeerID)
		}
		return nil
	})
	if r := runCmd(t, 30*time.Second, nil, "--api", n5.st.API, "resolve", n2.st.Alias); r.code != 0 || !strings.Contains(r.stdout, n2.st.DID) {
		t.Errorf("resolve (text): exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}

	// A node of another realm, with the same bootstrap address, finds
	// nothing and is refused.
	n6 := startRunNode(t, otherRealm, "n6", boot)
	n6.waitReady(t)
	// The realm handshake fails on n6's dial of n1. Whichever side sees it
	// first refuses the other and hangs up, so the refusal is in n6's log or
	// in n1's (naming n6).
	// Until n6 is refused.
	testnet.Eventually(t, 15*time.Second, func() error {
		if strings.Contains(n6.stderr.String(), "not in this realm") {
			return nil
		}
		for _, line := range strings.Split(nodes[0].stderr.String(), "\n") {
			if strings.Contains(line, "peer refused") && strings.Contains(line, n6.st.PeerID) {
				return nil
			}
		}
		return errors.New(`no refusal in n6's log nor n1's`)
	})
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
		var peers []api.Peer
		if err := cliJSON(t, n6.st.API, &peers, "peers"); err != nil {
			t.Fatal(err)
		}
		if len(peers) != 0 {
			t.Fatalf("n6 of %s has peers: %v", otherRealm, peerIDs(peers))
		}
		if err := cliJSON(t, nodes[0].st.API, &peers, "peers"); err != nil {
			t.Fatal(err)
		}
		if slices.Contains(peerIDs(peers), n6.st.PeerID) {
			t.Fatalf("n1 lists n6 of %s among its peers", otherRealm)
		}
		time.Sleep(250 * time.Millisecond)
	}
	var res api.LookupResult
	if err := cliJSON(t, n6.st.API, &res, "dht", "lookup", key, "--timeout", "3s"); err != nil {
		t.Fatal(err)
	}
	if len(res.Providers) != 0 {
		t.Errorf("n6 of %s finds providers of %s: %+v", otherRealm, key, res.Providers)
	}
	if r := runCmd(t, 30*time.Second, nil, "--api", n6.st.API, "dht", "lookup", key); r.code != 0 || !strings.Contains(r.stdout, "no providers for "+key) {
		t.Errorf("lookup (text) on n6: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	var st dht.Stats
	if err := cliJSON(t, n6.st.API, &st, "dht", "stats"); err != nil {
		t.Fatal(err)
	}
	if st.Nodes != 0 {
		t.Errorf("n6 of %s has %d nodes in its DHT, want 0", otherRealm, st.Nodes)
	}

	// SIGTERM stops every node cleanly: exit 0, node.json removed.
	all := append(nodes, n6)
	for _, n := range all {
		if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Errorf("%s: %v", n.name, err)
		}
	}
	for _, n := range all {
		if code := n.wait(t, 15*time.Second); code != 0 {
			t.Errorf("%s exited with %d after SIGTERM; stderr:\n%s", n.name, code, n.stderr.String())
		}
		if _, err := os.Stat(filepath.Join(n.dir, stateFile)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: %s still there after a clean exit (%v)", n.name, stateFile, err)
		}
		if _, err := os.Stat(filepath.Join(n.dir, node.KeyFile)); err != nil {
			t.Errorf("%s: key file: %v", n.name, err)
		}
	}
	t.Logf("all stopped after %v", time.Since(start).Round(time.Millisecond))
}
