package main

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/macula-io/macula/api"
	"github.com/macula-io/macula/internal/testnet"
)

// devRow matches a node's row of dev's table: NAME DID PEER-ID QUIC-ADDR API.
var devRow = regexp.MustCompile(`^(node\d+)\s+(did:key:\S+)\s+(\S+)\s+(/ip4/\S+/quic-v1)\s+(\S+:\d+)\s*$`)

// TestDev runs macula-node dev --nodes 3 as a process, reads the API
// addresses from its table, and checks through them that the mesh is full.
// The default API ports may be taken (by another dev, by another test run):
// dev then picks random ones, and the table says which.
func TestDev(t *testing.T) {
	t.Parallel()
	start := time.Now()
	p := startProc(t, "dev", nil, "dev", "--nodes", "3")

	apis := map[string]string{}
	// Until dev prints its table.
	testnet.Eventually(t, 30*time.Second, func() error {
		if p.exited() {
			t.Fatalf("dev exited (%v); stderr:\n%s", p.err, p.stderr.String())
		}
		out := p.stdout.String()
		if !strings.Contains(out, "Ctrl-C") {
			return errors.New("no table yet")
		}
		for _, line := range strings.Split(out, "\n") {
			if m := devRow.FindStringSubmatch(line); m != nil {
				apis[m[1]] = m[5]
			}
		}
		if len(apis) != 3 {
			return fmt.Errorf("rows for %v in:\n%s", apis, out)
		}
		return nil
	})
	t.Logf("table after %v: %v", time.Since(start).Round(time.Millisecond), apis)
	if strings.Contains(p.stderr.String(), "warning") {
		t.Errorf("dev warned: %s", p.stderr.String())
	}

	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("node%d", i)
		addr, ok := apis[name]
		if !ok {
			t.Fatalf("no row for %s", name)
		}
		// Until the node has 2 peers.
		testnet.Eventually(t, 10*time.Second, func() error {
			var peers []api.Peer
			if err := cliJSON(t, addr, &peers, "peers"); err != nil {
				return err
			}
			if len(peers) != 2 {
				return fmt.Errorf("%s has %d peers: %v", name, len(peers), peerIDs(peers))
			}
			return nil
		})
		var info api.NodeInfo
		if err := cliJSON(t, addr, &info, "id"); err != nil {
			t.Fatal(err)
		}
		if info.Name != name || info.Realm != devRealm {
			t.Errorf("%s's API answers for %s of %s", name, info.Name, info.Realm)
		}
	}

	if code := p.stop(t, syscall.SIGINT, 15*time.Second); code != 0 {
		t.Fatalf("dev exited with %d after SIGINT; stderr:\n%s", code, p.stderr.String())
	}
	t.Logf("stopped after %v", time.Since(start).Round(time.Millisecond))
}
