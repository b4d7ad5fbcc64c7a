package actors

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/macula-io/macula/access"
	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/peerdid"
	"github.com/macula-io/macula/rpc"
	"github.com/macula-io/macula/ucan"
)

// secureRealm issues the grants of a test and turns them into verdicts, as
// a node would after the realm handshake.
type secureRealm struct {
	auth *testnet.Authority
	v    *ucan.Validator
}

func newSecureRealm(t *testing.T) *secureRealm {
	a := testnet.NewAuthority(t)
	v, err := ucan.New(ucan.Config{Realm: testRealm, Authority: a.DID, Logger: quiet()})
	must(t, err)
	return &secureRealm{auth: a, v: v}
}

// verdict is p's verdict holding each (command, resource) pair given.
func (r *secureRealm) verdict(t *testing.T, p peer.ID, grants ...string) *ucan.Verdict {
	t.Helper()
	var chains []ucan.Chain
	for i := 0; i+1 < len(grants); i += 2 {
		chains = append(chains, r.auth.Grant(t, peerdid.Of(p), ucan.Command(grants[i]), grants[i+1]))
	}
	vd, err := r.v.Validate(context.Background(), peerdid.Of(p), chains)
	must(t, err)
	return vd
}

func TestSecureRealm(t *testing.T) {
	sr := newSecureRealm(t)
	tables := map[string]*access.Table{}
	c := newCluster(t)
	mod := func(name string) func(*Config) {
		tables[name] = access.NewTable(nil)
		return func(cfg *Config) { cfg.Access = tables[name] }
	}
	a := c.add("a", mod("a"), "game")
	b := c.add("b", mod("b"))
	cc := c.add("c", mod("c"))
	c.sync()
	c.waitView()
	serve := ucan.ServeResource(testRealm, "game")
	counterRes := ActorResource(testRealm, "game", "counter")
	tables["a"].SetSelf(sr.verdict(t, a.h.ID(), string(ucan.Serve), serve, string(ucan.Actor), testRealm+".game.*"))
	tables["b"].SetSelf(sr.verdict(t, b.h.ID(), string(ucan.Actor), counterRes))
	tables["c"].SetSelf(sr.verdict(t, cc.h.ID(), string(ucan.Actor), testRealm+".game.*"))
	// a knows b's grant; c's, as a sees it, allows nothing of actors.
	tables["a"].Set(b.h.ID(), sr.verdict(t, b.h.ID(), string(ucan.Actor), counterRes))
	tables["a"].Set(cc.h.ID(), sr.verdict(t, cc.h.ID(), string(ucan.Publish), testRealm+".x"))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, n := callCount(t, b.sys, "game", "p1"); n != 1 {
		t.Fatalf("b's call: %d", n)
	}
	// b may not call another kind: refused before any traffic.
	_, _, err := b.sys.Call(ctx, Request{Capability: "game", Kind: "wallet", ID: "p1"})
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("b calls a kind it may not: %v", err)
	}
	// c believes it may; a, the owner, refuses it.
	_, _, err = cc.sys.Call(ctx, Request{Capability: "game", Kind: "counter", ID: "p1"})
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("c's call refused by the owner: %v", err)
	}
	if _, n := callCount(t, b.sys, "game", "p1"); n != 2 {
		t.Fatalf("c's refused call ran: count %d", n)
	}
	// A node without /macula/serve cannot hand actors over.
	body := appendHandoff(nil, &handoffRequest{final: true, capability: "game", shards: []int{1},
		actors: []handoffActor{{kind: "counter", id: "p1", snapshot: []byte{0, 0, 0, 0, 0, 0, 0, 99}}}})
	_, err = cc.rpc.CallPeer(ctx, a.h.ID(), procHandoff, body)
	var re *rpc.RemoteError
	if !errors.As(err, &re) || re.Code != codeUnauthorized {
		t.Fatalf("handoff from a node that may not serve: %v", err)
	}
	if a.sys.Stats().MovedIn != 0 {
		t.Fatal("a took the refused handoff")
	}
}
