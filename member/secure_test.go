package member

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/macula-io/macula/access"
	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/peerdid"
	"github.com/macula-io/macula/ucan"
)

// secureRealm hands out verdicts as a node's realm handshake would: a
// membership and the serve grants of each host.
type secureRealm struct {
	t    *testing.T
	auth *testnet.Authority
	v    *ucan.Validator
	vds  map[peer.ID]*ucan.Verdict
}

func newSecureRealm(t *testing.T) *secureRealm {
	auth := testnet.NewAuthority(t)
	v, err := ucan.New(ucan.Config{Realm: testRealm, Authority: auth.DID, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return &secureRealm{t: t, auth: auth, v: v, vds: make(map[peer.ID]*ucan.Verdict)}
}

// grant gives h a membership and the right to serve caps.
func (s *secureRealm) grant(h host.Host, caps ...string) {
	did := peerdid.Of(h.ID())
	chains := []ucan.Chain{s.auth.Grant(s.t, did, ucan.Member, "")}
	for _, c := range caps {
		chains = append(chains, s.auth.Grant(s.t, did, ucan.Serve, ucan.ServeResource(testRealm, c)))
	}
	vd, err := s.v.Validate(context.Background(), did, chains)
	if err != nil {
		s.t.Fatal(err)
	}
	s.vds[h.ID()] = vd
}

// table is the policy of host h: its own verdict and every other's.
func (s *secureRealm) table(h host.Host) *access.Table {
	tb := access.NewTable(s.vds[h.ID()])
	for p, vd := range s.vds {
		if p != h.ID() {
			tb.Set(p, vd)
		}
	}
	return tb
}

// TestSecureClaims: a member's claims are checked against its grant. It
// cannot claim what it may not serve (ErrUnauthorized, nothing changes);
// a member that claims anyway (here one that does not check itself) is
// dropped by every member that holds its verdict, and the drop is counted.
func TestSecureClaims(t *testing.T) {
	sr := newSecureRealm(t)
	ha, hb, hf := testnet.Host(t), testnet.Host(t), testnet.Host(t)
	sr.grant(ha, "game")
	sr.grant(hb)
	sr.grant(hf, "game")
	a := newMemberOn(t, ha, "a", func(c *Config) { c.Access, c.Capabilities = sr.table(ha), []string{"game"} })
	b := newMemberOn(t, hb, "b", func(c *Config) { c.Access = sr.table(hb) })
	connect(t, hb, ha)
	eventually(t, 30*time.Second, "a and b see each other", func() bool { return sees([]*testMember{a, b}, a, b) })

	err := a.m.SetCapabilities(context.Background(), []string{"chat", "game"})
	if !errors.Is(err, ErrUnauthorized) || !errors.Is(err, ucan.ErrUnauthorized) {
		t.Fatalf("claiming chat: %v", err)
	}
	if got := a.m.Self().Capabilities; len(got) != 1 || got[0] != "game" {
		t.Fatalf("after a refused claim: %v", got)
	}
	cfg := fastConfig("c")
	cfg.Access, cfg.Capabilities = sr.table(hb), []string{"payment"}
	if _, err := New(testnet.Host(t), nil, cfg); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("New claiming an ungranted capability: %v", err)
	}

	// The forger checks nothing itself (an open policy) and claims chat.
	f := newMemberOn(t, hf, "f", func(c *Config) { c.Access, c.Capabilities = access.Open(hf.ID()), []string{"chat", "game"} })
	connect(t, hf, ha)
	connect(t, hf, hb)
	eventually(t, 30*time.Second, "the forger's record dropped and counted", func() bool {
		return a.m.Stats().DroppedUnauthorized > 0 && b.m.Stats().DroppedUnauthorized > 0
	})
	time.Sleep(500 * time.Millisecond)
	for _, x := range []*testMember{a, b} {
		if _, ok := x.m.Get(hf.ID()); ok || len(x.m.WithCapability("chat")) != 0 {
			t.Fatalf("%s accepted the forger", x.m.Self().Name)
		}
	}
	// The forger itself learnt the honest members.
	eventually(t, 30*time.Second, "the forger sees a and b", func() bool {
		_, okA := f.m.Get(ha.ID())
		_, okB := f.m.Get(hb.ID())
		return okA && okB
	})
	// Once it claims only what it may serve, it is a member.
	if err := f.m.SetCapabilities(context.Background(), []string{"game"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the reformed forger accepted", func() bool { return sees([]*testMember{a, b}, a, b, f) })
}
