package node

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/macula-io/macula/ucan"
)

// A node whose membership expires is dropped by its bootstrap peer; given a
// renewed grant (SetChains: what SIGHUP does), it rejoins by itself at once,
// and its log says what to do in the CLI's terms, never that the bootstrap
// peer is of another realm.
func TestMembershipRenewedRejoins(t *testing.T) {
	a := newAuthority(t)
	boot := startMember(t, a, "boot", nil, func(c *Config) { c.UCAN.Leeway = -1 })
	k, _, did := nodeKey(t)
	var logs syncBuffer
	m := startNode(t, secureRealm, "m", func(c *Config) {
		c.Key, c.Authority = k, a.did
		c.Chains = []ucan.Chain{a.grant(did, ucan.Member, "", "m", 3*time.Second)}
		c.UCAN.Leeway = -1
		c.Bootstrap = bootstrapOf(boot)
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	eventually(t, 10*time.Second, "m to join", func() bool { return boot.IsPeer(m.ID()) && m.IsPeer(boot.ID()) })
	// boot checks memberships every expiryInterval (10 s).
	eventually(t, 3*time.Second+2*expiryInterval, "boot to drop m, expired", func() bool { return !boot.IsPeer(m.ID()) })
	eventually(t, 10*time.Second, "m to be refused by boot", func() bool {
		return strings.Contains(logs.String(), "a peer refused this node")
	})
	renewed := a.grant(did, ucan.Member, "", "m", time.Hour)
	if err := m.SetChains(context.Background(), []ucan.Chain{renewed}); err != nil {
		t.Fatal(err)
	}
	// No wait for the bootstrap loop's backoff: new chains end it.
	eventually(t, 5*time.Second, "m to rejoin boot", func() bool { return boot.IsPeer(m.ID()) && m.IsPeer(boot.ID()) })
	out := logs.String()
	t.Logf("m's log:\n%s", out)
	for _, bad := range []string{"not in this realm", "another realm", "SetChains"} {
		if strings.Contains(out, bad) {
			t.Errorf("m's log says %q:\n%s", bad, out)
		}
	}
	for _, want := range []string{"SIGHUP", "macula-node ucan issue", "--ucan"} {
		if !strings.Contains(out, want) {
			t.Errorf("m's log does not say %q:\n%s", want, out)
		}
	}
}

// A chain that does not hold (here: revoked) among the node's chains is left
// out with a warning naming its source; the node starts and keeps the
// others. A revoked membership, the only one, still refuses the start, and
// says which chain was left out and why.
func TestRevokedChainSkipped(t *testing.T) {
	a := newAuthority(t)
	k, _, did := nodeKey(t)
	member := a.grant(did, ucan.Member, "", "n", time.Hour)
	call := a.grant(did, ucan.Call, "io.acme.orders.*", "", time.Hour)
	publish := a.grant(did, ucan.Publish, "io.acme.orders.>", "", time.Hour)
	revCall, err := ucan.Revoke(a.key, call.Leaf())
	if err != nil {
		t.Fatal(err)
	}
	revMember, err := ucan.Revoke(a.key, member.Leaf())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// The node learns the revocation of the call chain and keeps it on disk.
	first := startNode(t, secureRealm, "n", func(c *Config) {
		c.Key, c.Authority, c.DataDir = k, a.did, dir
		c.Chains = []ucan.Chain{member, call, publish}
	})
	if err := first.Revoke(context.Background(), revCall); err != nil {
		t.Fatal(err)
	}
	first.Close()

	var logs syncBuffer
	n := startNode(t, secureRealm, "n", func(c *Config) {
		c.Key, c.Authority, c.DataDir = k, a.did, dir
		c.Chains = []ucan.Chain{member, call, publish}
		c.ChainSources = []string{"grants.ucan:1", "grants.ucan:2", "grants.ucan:3"}
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	if !strings.Contains(logs.String(), "grants.ucan:2") || !strings.Contains(logs.String(), "skipping a delegation chain") {
		t.Fatalf("no warning naming the revoked chain's source:\n%s", logs.String())
	}
	if !n.Grant().Member || ucan.Check(n.Access().Self(), ucan.Publish, "io.acme.orders.placed") != nil {
		t.Fatalf("the chains that hold were not kept: %+v", n.Grant())
	}
	if ucan.Check(n.Access().Self(), ucan.Call, "io.acme.orders.get") == nil {
		t.Fatal("the revoked call chain still counts")
	}
	// Reloading (SIGHUP) with the revoked chain among others works too.
	if err := n.SetChains(context.Background(), []ucan.Chain{call, member}, "a:1", "a:2"); err != nil {
		t.Fatalf("SetChains with one revoked chain: %v", err)
	}
	if err := n.Revoke(context.Background(), revMember); err != nil {
		t.Fatal(err)
	}
	n.Close()

	// Membership revoked: a clear refusal, naming the chain left out.
	cfg := DefaultConfig(secureRealm, "n")
	cfg.ListenAddrs = []string{"/ip4/127.0.0.1/udp/0/quic-v1"}
	cfg.Logger = quietLogger()
	cfg.Key, cfg.Authority, cfg.DataDir = k, a.did, dir
	cfg.Chains = []ucan.Chain{member, publish}
	cfg.ChainSources = []string{"member.ucan", "grants.ucan:3"}
	_, err = New(cfg)
	if !errors.Is(err, ErrNotMember) || !strings.Contains(err.Error(), "member.ucan") || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("start with a revoked membership: %v", err)
	}
}
