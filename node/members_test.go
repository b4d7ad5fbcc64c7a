package node

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/macula-io/macula/member"
	"github.com/macula-io/macula/ucan"
)

// memberNames returns the names of the members n sees.
func memberNames(n *Node) []string {
	var out []string
	for _, m := range n.Members().List() {
		out = append(out, m.Name)
	}
	slices.Sort(out)
	return out
}

// TestMembersThroughNodes: nodes wired as the binary wires them learn
// each other's capabilities through one bootstrap node, and forget a node
// that closes.
func TestMembersThroughNodes(t *testing.T) {
	boot := startNode(t, "io.acme.orders", "boot", nil)
	a := startNode(t, "io.acme.orders", "a", func(c *Config) {
		c.Bootstrap = bootstrapOf(boot)
		c.Members.Capabilities = []string{"game"}
	})
	b := startNode(t, "io.acme.orders", "b", func(c *Config) {
		c.Bootstrap = bootstrapOf(boot)
		c.Members.Capabilities = []string{"chat", "game"}
	})
	want := []string{"a", "b", "boot"}
	for _, n := range []*Node{boot, a, b} {
		eventually(t, 10*time.Second, n.Name()+" sees every member", func() bool { return slices.Equal(memberNames(n), want) })
		if got := n.Members().WithCapability("game"); len(got) != 2 {
			t.Fatalf("%s: game on %d members", n.Name(), len(got))
		}
	}
	if err := a.Members().SetCapabilities(context.Background(), []string{"payment"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "a's payment seen by b", func() bool { return len(b.Members().WithCapability("payment")) == 1 })
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "a's departure", func() bool { return slices.Equal(memberNames(b), []string{"b", "boot"}) })
	// Another realm on the same machine sees none of it.
	other := startNode(t, "io.acme.other", "x", func(c *Config) { c.Bootstrap = bootstrapOf(boot) })
	time.Sleep(200 * time.Millisecond)
	if got := memberNames(other); !slices.Equal(got, []string{"x"}) {
		t.Fatalf("a node of another realm sees %v", got)
	}
}

// TestMembersSecureRealm: in a secure realm a node may claim only the
// capabilities it was granted to serve: New and SetCapabilities refuse the
// others with ErrUnauthorized, and every member sees what was granted.
func TestMembersSecureRealm(t *testing.T) {
	a := newAuthority(t)
	serve := func(caps ...string) func(did string) []ucan.Chain {
		return func(did string) []ucan.Chain {
			var out []ucan.Chain
			for _, c := range caps {
				out = append(out, a.grant(did, ucan.Serve, ucan.ServeResource(secureRealm, c), "", time.Hour))
			}
			return out
		}
	}
	boot := startMember(t, a, "boot", nil, nil)
	g := startMember(t, a, "g", serve("game"), func(c *Config) {
		c.Bootstrap = bootstrapOf(boot)
		c.Members.Capabilities = []string{"game"}
	})
	all := startMember(t, a, "all", func(did string) []ucan.Chain {
		return []ucan.Chain{a.grant(did, ucan.Serve, secureRealm+".*", "", time.Hour)}
	}, func(c *Config) {
		c.Bootstrap = bootstrapOf(boot)
		c.Members.Capabilities = []string{"chat", "game"}
	})
	for _, n := range []*Node{boot, g, all} {
		eventually(t, 10*time.Second, n.Name()+" sees every member", func() bool {
			return len(n.Members().WithCapability("game")) == 2 && len(n.Members().WithCapability("chat")) == 1
		})
	}
	err := g.Members().SetCapabilities(context.Background(), []string{"game", "chat"})
	if !errors.Is(err, member.ErrUnauthorized) || !errors.Is(err, ucan.ErrUnauthorized) {
		t.Fatalf("claiming an ungranted capability: %v", err)
	}
	if got := g.Members().Self().Capabilities; !slices.Equal(got, []string{"game"}) {
		t.Fatalf("capabilities after a refused change: %v", got)
	}
	// A node started with a capability it may not serve does not start.
	k, _, did := nodeKey(t)
	cfg := DefaultConfig(secureRealm, "bad")
	cfg.ListenAddrs = []string{"/ip4/127.0.0.1/udp/0/quic-v1"}
	cfg.Logger = quietLogger()
	cfg.Key, cfg.Authority = k, a.did
	cfg.Chains = []ucan.Chain{a.grant(did, ucan.Member, "", "bad", time.Hour)}
	cfg.Members.Capabilities = []string{"game"}
	if n, err := New(cfg); !errors.Is(err, member.ErrUnauthorized) {
		if n != nil {
			n.Close()
		}
		t.Fatalf("New with an ungranted capability: %v", err)
	}
}
