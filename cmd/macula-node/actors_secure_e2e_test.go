package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/macula-io/macula/api"
	"github.com/macula-io/macula/internal/testnet"
)

// TestActorsSecureEndToEnd runs real macula-node processes in a secure
// realm: a node granted to serve game (run --capabilities game
// --demo-actors) owns every shard of it; a node granted to call game's
// counters calls one through the CLI and its count grows; the same node
// calling another kind of game, and a member without any actor grant, are
// refused (exit 7) and change nothing.
func TestActorsSecureEndToEnd(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	authKey, authority := secureRealmInit(t, base)
	gn := prepareSecureNode(t, base, authKey, "gamer", "serve "+rpcRealm+".game")
	cn := prepareSecureNode(t, base, authKey, "caller", "actor "+rpcRealm+".game.counter")
	pn := prepareSecureNode(t, base, authKey, "plain")
	g := gn.startWith(t, authority, []string{"--capabilities", "game", "--demo-actors"})
	c := cn.start(t, authority, g.st.Addrs[0])
	p := pn.start(t, authority, g.st.Addrs[0])
	// Every node's ring (macula-node ring, with the node's local
	// credential): game on the gamer alone.
	for _, n := range []*runNode{g, c, p} {
		testnet.Eventually(t, 30*time.Second, func() error {
			var r api.Ring
			if err := cliJSON(t, n.st.API, &r, "ring"); err != nil {
				return err
			}
			for _, cr := range r.Capabilities {
				if cr.Capability == "game" && len(cr.Nodes) == 1 && cr.Nodes[0].ID == g.st.PeerID && cr.Nodes[0].Shards == r.Shards {
					return nil
				}
			}
			return fmt.Errorf("%s's ring: %+v", n.name, r.Capabilities)
		})
	}

	count := func() (int, string, error) {
		r := runCmd(t, 40*time.Second, nil, "--api", c.st.API, "actors", "call", "game", "counter", "p1", "--json", "--timeout", "10s")
		if r.code != 0 {
			return 0, "", fmt.Errorf("caller: actors call: exit %d: %s", r.code, r.stderr)
		}
		var out struct {
			Ref struct {
				Node string `json:"node"`
			} `json:"ref"`
			Reply counterReply `json:"reply"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
			return 0, "", fmt.Errorf("actors call --json: %q: %v", r.stdout, err)
		}
		return out.Reply.Count, out.Ref.Node, nil
	}
	var first int
	testnet.Eventually(t, 30*time.Second, func() error {
		n, node, err := count()
		if err != nil {
			return err
		}
		if node != g.st.PeerID {
			t.Fatalf("p1 ran on %s, want the gamer %s", node, g.st.PeerID)
		}
		first = n
		return nil
	})
	refused := func(who *runNode, kind string) {
		t.Helper()
		r := runCmd(t, 40*time.Second, nil, "--api", who.st.API, "actors", "call", "game", kind, "p1", "--timeout", "10s")
		if r.code != exitUnauthorized || !strings.Contains(r.stderr, "actor") {
			t.Fatalf("%s calling game/%s: exit %d, want %d: %s", who.name, kind, r.code, exitUnauthorized, r.stderr)
		}
		r = runCmd(t, 40*time.Second, nil, "--api", who.st.API, "actors", "cast", "game", kind, "p1", "--timeout", "10s")
		if r.code != exitUnauthorized {
			t.Fatalf("%s casting to game/%s: exit %d, want %d: %s", who.name, kind, r.code, exitUnauthorized, r.stderr)
		}
	}
	refused(p, "counter")
	refused(c, "other")
	n, _, err := count()
	if err != nil {
		t.Fatal(err)
	}
	if n != first+1 {
		t.Fatalf("count %d after the refused calls, want %d", n, first+1)
	}
}
