package node

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/macula-io/macula/alias"
	"github.com/macula-io/macula/dht"
	"github.com/macula-io/macula/rpc"
	"github.com/macula-io/macula/ucan"
)

const secureRealm = "io.acme.orders"

// authority is a realm authority for tests: it knows the keys of the nodes
// it grants things to.
type authority struct {
	t   *testing.T
	key ed25519.PrivateKey
	did string
}

func newAuthority(t *testing.T) *authority {
	t.Helper()
	k, err := ucan.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return &authority{t: t, key: k, did: ucan.KeyDID(k)}
}

// grant issues a root delegation of cmd on resource (or a membership with
// name, when cmd is ucan.Member) to did.
func (a *authority) grant(did string, cmd ucan.Command, resource, name string, ttl time.Duration) ucan.Chain {
	a.t.Helper()
	c, err := ucan.Issue(a.key, ucan.IssueOptions{Audience: did, Command: cmd, Resource: resource, Name: name, Expires: time.Now().Add(ttl)})
	if err != nil {
		a.t.Fatal(err)
	}
	return c
}

// nodeKey returns a fresh node key and its did:key.
func nodeKey(t *testing.T) (crypto.PrivKey, ed25519.PrivateKey, string) {
	t.Helper()
	priv := newKey(t)
	k, err := crypto.UnmarshalEd25519PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return k, priv, ucan.KeyDID(priv)
}

// startMember starts a node of the secure realm with a membership granting
// its name, plus the chains extra returns for its DID.
func startMember(t *testing.T, a *authority, name string, extra func(did string) []ucan.Chain, mod func(*Config)) *Node {
	t.Helper()
	k, _, did := nodeKey(t)
	chains := []ucan.Chain{a.grant(did, ucan.Member, "", name, time.Hour)}
	if extra != nil {
		chains = append(chains, extra(did)...)
	}
	return startNode(t, secureRealm, name, func(c *Config) {
		c.Key, c.Authority, c.Chains = k, a.did, chains
		if mod != nil {
			mod(c)
		}
	})
}

func TestSecureRealmAdmitsMembersOnly(t *testing.T) {
	a := newAuthority(t)
	boot := startMember(t, a, "boot", nil, nil)
	m1 := startMember(t, a, "m1", nil, func(c *Config) { c.Bootstrap = bootstrapOf(boot) })
	if !boot.Secure() || boot.Authority() != a.did || !boot.Grant().Member || boot.Grant().Name != "boot" {
		t.Fatalf("boot: secure=%v authority=%q grant=%+v", boot.Secure(), boot.Authority(), boot.Grant())
	}
	eventually(t, 10*time.Second, "members to meet", func() bool { return boot.IsPeer(m1.ID()) && m1.IsPeer(boot.ID()) })
	if vd := boot.Access().Peer(m1.ID()); vd == nil || vd.Grant().Name != "m1" {
		t.Fatalf("boot's verdict on m1: %v", vd)
	}
	// The alias counts: the authority granted the name.
	for _, p := range boot.Peers() {
		if p.ID == m1.ID() && p.Alias != "did:macula:io.acme.orders.m1" {
			t.Fatalf("m1's alias = %q", p.Alias)
		}
	}

	// A node of the same realm name without an authority (so without a
	// grant) is refused and never touches the DHT.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := boot.DHT().Provide(ctx, "members-only"); err != nil && !errors.Is(err, dht.ErrPending) {
		t.Fatal(err) // pending is fine: boot's routing table may not have m1 yet
	}
	intruder := startNode(t, secureRealm, "intruder", nil)
	err := intruder.Connect(ctx, peer.AddrInfo{ID: boot.ID(), Addrs: boot.Host().Addrs()})
	if !errors.Is(err, ErrNotMember) {
		t.Fatalf("intruder's Connect = %v, want ErrNotMember", err)
	}
	lctx, lcancel := context.WithTimeout(ctx, 2*time.Second)
	provs, _ := intruder.DHT().Lookup(lctx, "members-only", 0)
	lcancel()
	if len(provs) != 0 {
		t.Fatalf("the intruder found providers %v", provs)
	}
	for _, n := range []*Node{boot, m1} {
		if n.IsPeer(intruder.ID()) || n.Access().Peer(intruder.ID()) != nil {
			t.Fatalf("%s admitted the intruder", n.Name())
		}
		for _, p := range n.DHT().RoutingTablePeers() {
			if p == intruder.ID() {
				t.Fatalf("%s has the intruder in its routing table", n.Name())
			}
		}
	}

	// A member of another authority's realm of the same name is refused too.
	other := newAuthority(t)
	stranger := startMember(t, other, "stranger", nil, nil)
	if err := stranger.Connect(ctx, peer.AddrInfo{ID: boot.ID(), Addrs: boot.Host().Addrs()}); !errors.Is(err, ErrNotMember) {
		t.Fatalf("stranger's Connect = %v, want ErrNotMember", err)
	}
}

func TestSecureNodeNeedsMembership(t *testing.T) {
	a := newAuthority(t)
	k, _, did := nodeKey(t)
	base := DefaultConfig(secureRealm, "n")
	base.ListenAddrs = []string{"/ip4/127.0.0.1/udp/0/quic-v1"}
	base.Logger = quietLogger()
	base.Key = k
	for _, tc := range []struct {
		name string
		mod  func(*Config)
	}{
		{"no chains", func(c *Config) { c.Authority = a.did }},
		{"only a capability", func(c *Config) {
			c.Authority = a.did
			c.Chains = []ucan.Chain{a.grant(did, ucan.Call, "io.acme.orders.*", "", time.Hour)}
		}},
		{"membership of another authority", func(c *Config) {
			c.Authority = a.did
			c.Chains = []ucan.Chain{newAuthority(t).grant(did, ucan.Member, "", "n", time.Hour)}
		}},
		{"membership for another key", func(c *Config) {
			c.Authority = a.did
			_, _, otherDID := nodeKey(t)
			c.Chains = []ucan.Chain{a.grant(otherDID, ucan.Member, "", "n", time.Hour)}
		}},
		{"authority not a did:key", func(c *Config) { c.Authority = "did:web:example.com" }},
		{"chains without authority", func(c *Config) {
			c.Chains = []ucan.Chain{a.grant(did, ucan.Member, "", "n", time.Hour)}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			tc.mod(&cfg)
			n, err := New(cfg)
			if err == nil {
				n.Close()
				t.Fatal("New succeeded")
			}
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("err = %v, want ErrConfig", err)
			}
			if strings.HasPrefix(tc.name, "no chains") || strings.HasPrefix(tc.name, "only a capability") {
				if !errors.Is(err, ErrNotMember) {
					t.Fatalf("err = %v, want ErrNotMember too", err)
				}
			}
		})
	}
	// And the control: with a membership it starts.
	cfg := base
	cfg.Authority = a.did
	cfg.Chains = []ucan.Chain{a.grant(did, ucan.Member, "", "n", time.Hour)}
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n.Close()
}

// A member whose name the authority did not grant is admitted, but its
// alias does not count: peers show none, and its record is not stored.
func TestSecureAliasNeedsNamedGrant(t *testing.T) {
	a := newAuthority(t)
	boot := startMember(t, a, "boot", nil, nil)
	k, _, did := nodeKey(t)
	anon := startNode(t, secureRealm, "claims-boot2", func(c *Config) {
		c.Key, c.Authority = k, a.did
		c.Chains = []ucan.Chain{a.grant(did, ucan.Member, "", "", time.Hour)} // no name
		c.Bootstrap = bootstrapOf(boot)
	})
	eventually(t, 10*time.Second, "anon to be admitted", func() bool { return boot.IsPeer(anon.ID()) })
	for _, p := range boot.Peers() {
		if p.ID == anon.ID() && p.Alias != "" {
			t.Fatalf("anon's alias counts: %q", p.Alias)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := boot.Resolve(ctx, anon.Alias()); err == nil {
		t.Fatal("the ungranted alias resolved")
	}
	// A record forged for a granted name without the grant is refused by
	// the validator.
	now := time.Now()
	forged := &alias.Record{Alias: "did:macula:io.acme.orders.boot", Seq: 1, Bound: now, Expires: now.Add(time.Hour)}
	if err := forged.Sign(newKey(t)); err != nil {
		t.Fatal(err)
	}
	rec, _ := json.Marshal(forged)
	if err := boot.aliasV.Validate(alias.Key("did:macula:io.acme.orders.boot"), rec); !errors.Is(err, ErrBadRecord) {
		t.Fatalf("record without membership: %v", err)
	}
}

// A revocation given to one node reaches the others through the realm,
// disconnects the peer whose membership it revokes, reaches a node that
// joins later, and survives a restart.
func TestRevocationSpreads(t *testing.T) {
	a := newAuthority(t)
	dir := t.TempDir()
	boot := startMember(t, a, "boot", nil, func(c *Config) { c.DataDir = dir })
	m1 := startMember(t, a, "m1", nil, func(c *Config) { c.Bootstrap = bootstrapOf(boot) })

	// m2's membership is the one revoked; m2 meets only m1.
	k2, _, did2 := nodeKey(t)
	m2member := a.grant(did2, ucan.Member, "", "m2", time.Hour)
	m2 := startNode(t, secureRealm, "m2", func(c *Config) {
		c.Key, c.Authority, c.Chains = k2, a.did, []ucan.Chain{m2member}
		c.Bootstrap = bootstrapOf(m1)
	})
	eventually(t, 30*time.Second, "m2 to meet m1", func() bool { return m1.IsPeer(m2.ID()) })

	rec, err := ucan.Revoke(a.key, m2member.Leaf())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := boot.Revoke(ctx, []byte("not a record")); !errors.Is(err, ucan.ErrUnauthorized) {
		t.Fatalf("garbage revocation: %v", err)
	}
	forged, err := ucan.Revoke(newKey(t), m2member.Leaf())
	if err != nil {
		t.Fatal(err)
	}
	if err := boot.Revoke(ctx, forged); !errors.Is(err, ucan.ErrNotRooted) {
		t.Fatalf("revocation not by the authority: %v", err)
	}
	start := time.Now()
	if err := boot.Revoke(ctx, rec); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "m1 to drop m2", func() bool { return !m1.IsPeer(m2.ID()) && len(m1.Revocations()) == 1 })
	t.Logf("revocation reached m1 and m2 was dropped after %v", time.Since(start))
	// m2 sees its connection close a moment later; only then is a Connect
	// a new dial (before, it finds the old connection and returns).
	eventually(t, 30*time.Second, "m2 to lose m1", func() bool { return !m2.IsPeer(m1.ID()) })
	if err := m2.Connect(ctx, peer.AddrInfo{ID: m1.ID(), Addrs: m1.Host().Addrs()}); err == nil {
		t.Fatal("m2 reconnected after its membership was revoked")
	}

	// A node that joins later learns it in the exchange after its handshake.
	late := startMember(t, a, "late", nil, func(c *Config) { c.Bootstrap = bootstrapOf(m1) })
	eventually(t, 30*time.Second, "late to learn the revocation", func() bool { return len(late.Revocations()) == 1 })

	// boot kept it on disk.
	if _, err := os.Stat(filepath.Join(dir, RevocationsFile)); err != nil {
		t.Fatal(err)
	}
	boot.Close()
	again := startNode(t, secureRealm, "boot", func(c *Config) {
		c.DataDir, c.Authority, c.Key = dir, a.did, boot.cfg.Key
		c.Chains = boot.cfg.Chains
	})
	if len(again.Revocations()) != 1 {
		t.Fatalf("after restart: %d revocations, want 1", len(again.Revocations()))
	}
}

// SetChains presents new chains on every connection: peers see the new
// grant without reconnecting.
func TestSetChainsRepresents(t *testing.T) {
	a := newAuthority(t)
	boot := startMember(t, a, "boot", nil, nil)
	k, _, did := nodeKey(t)
	member := a.grant(did, ucan.Member, "", "m", time.Hour)
	m := startNode(t, secureRealm, "m", func(c *Config) {
		c.Key, c.Authority, c.Chains = k, a.did, []ucan.Chain{member}
		c.Bootstrap = bootstrapOf(boot)
	})
	eventually(t, 10*time.Second, "m to be admitted", func() bool { return boot.IsPeer(m.ID()) && m.IsPeer(boot.ID()) })
	if err := ucan.Check(boot.Access().Peer(m.ID()), ucan.Call, "io.acme.orders.place"); err == nil {
		t.Fatal("m may call before the grant")
	}
	call := a.grant(did, ucan.Call, "io.acme.orders.*", "", time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.SetChains(ctx, []ucan.Chain{member, call}); err != nil {
		t.Fatal(err)
	}
	if err := ucan.Check(boot.Access().Peer(m.ID()), ucan.Call, "io.acme.orders.place"); err != nil {
		t.Fatalf("after SetChains: %v", err)
	}
	if err := ucan.Check(m.Access().Self(), ucan.Call, "io.acme.orders.place"); err != nil {
		t.Fatalf("own verdict after SetChains: %v", err)
	}
	if err := m.SetChains(ctx, []ucan.Chain{call}); !errors.Is(err, ErrConfig) {
		t.Fatalf("SetChains without membership: %v", err)
	}
}

// A relay of a secure realm serves members only.
func TestSecureRelayServesMembersOnly(t *testing.T) {
	a := newAuthority(t)
	relay := startMember(t, a, "relay", nil, func(c *Config) {
		c.RelayService = true
		c.HandshakeTimeout = time.Second
	})
	m := startMember(t, a, "m", nil, func(c *Config) { c.Bootstrap = bootstrapOf(relay) })
	m2 := startMember(t, a, "m2", nil, func(c *Config) { c.Bootstrap = bootstrapOf(relay) })
	eventually(t, 10*time.Second, "m and m2 to be admitted", func() bool { return relay.IsPeer(m.ID()) && relay.IsPeer(m2.ID()) })
	acl := relayACL{relay}
	if !acl.AllowReserve(m.ID(), nil) || !acl.AllowConnect(m.ID(), nil, m2.ID()) {
		t.Fatal("the relay refuses a member")
	}
	intruder := startNode(t, secureRealm, "intruder", nil)
	_ = intruder.Connect(context.Background(), peer.AddrInfo{ID: relay.ID(), Addrs: relay.Host().Addrs()})
	if acl.AllowReserve(intruder.ID(), nil) {
		t.Fatal("the relay lets a non-member reserve")
	}
	if acl.AllowConnect(intruder.ID(), nil, m.ID()) || acl.AllowConnect(m.ID(), nil, intruder.ID()) {
		t.Fatal("the relay connects a non-member")
	}
}

// Members of a secure realm reach each other through a relay of the realm:
// the relay admits their reservation and circuit, the handshake with its
// chains runs on the limited connection, and a call goes through.
func TestSecureRealmThroughRelay(t *testing.T) {
	a := newAuthority(t)
	relay := startMember(t, a, "relay", nil, func(c *Config) {
		c.RelayService = true
		c.Reachability = "public"
	})
	relayAddr := bootstrapOf(relay)[0]
	const proc = "io.acme.orders.place"
	callee := startMember(t, a, "callee", func(did string) []ucan.Chain {
		return []ucan.Chain{a.grant(did, ucan.Advertise, "io.acme.orders.*", "", time.Hour)}
	}, func(c *Config) {
		c.Bootstrap = []string{relayAddr}
		c.Relays = []string{relayAddr}
		c.Reachability = "private"
		c.DisableHolePunching = true
	})
	eventually(t, 10*time.Second, "the callee in the relay's routing table", func() bool {
		return len(callee.DHT().RoutingTablePeers()) > 0
	})
	if err := callee.RPC().Advertise(context.Background(), proc, func(_ context.Context, req *rpc.Request) ([]byte, error) {
		return []byte("ok " + req.Verdict.Caller()), nil
	}); err != nil {
		t.Fatal(err)
	}
	caller := startMember(t, a, "caller", func(did string) []ucan.Chain {
		return []ucan.Chain{a.grant(did, ucan.Call, "io.acme.orders.*", "", time.Hour)}
	}, func(c *Config) { c.DisableHolePunching = true })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// On loopback the host does not advertise circuit addresses (autorelay
	// wants a relay with a public address), so the address is made by hand;
	// it works once the callee holds its reservation.
	circuit := ma.StringCast(relayAddr + "/p2p-circuit/p2p/" + callee.ID().String())
	var err error
	eventually(t, 15*time.Second, "a connection through the relay", func() bool {
		if err != nil {
			time.Sleep(100 * time.Millisecond)
		}
		err = caller.Connect(ctx, peer.AddrInfo{ID: callee.ID(), Addrs: []ma.Multiaddr{circuit}})
		return err == nil
	})
	// The handshake, chains included, ran on the relayed connection.
	eventually(t, 10*time.Second, "a verified relayed connection", func() bool {
		caller.mu.Lock()
		defer caller.mu.Unlock()
		if ps := caller.peers[callee.ID()]; ps != nil {
			for c := range ps.verified {
				if isRelayed(c.RemoteMultiaddr()) {
					return true
				}
			}
		}
		return false
	})
	if vd := callee.Access().Peer(caller.ID()); vd == nil {
		t.Fatal("the callee holds no verdict on the caller")
	}
	var reply []byte
	eventually(t, 10*time.Second, "a call to the callee", func() bool {
		reply, err = caller.RPC().Call(ctx, proc, []byte("x"))
		return err == nil
	})
	if string(reply) != "ok "+caller.DID() {
		t.Fatalf("reply %q", reply)
	}
}
