package registry

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/macula-io/macula/access"
	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/peerdid"
	"github.com/macula-io/macula/ucan"
)

// A secure realm: registering, joining and dispatching are UCAN commands
// on the key (the key as a realm name, or a prefix's pattern).

// authority issues grants and validates them as a node of the realm does.
type authority struct {
	*testnet.Authority
	v *ucan.Validator
}

func newAuthority(t testing.TB) *authority {
	t.Helper()
	a := testnet.NewAuthority(t)
	v, err := ucan.New(ucan.Config{Realm: testRealm, Authority: a.DID, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return &authority{Authority: a, v: v}
}

// verdict issues p the grants (command, pattern) and validates them.
func (a *authority) verdict(t testing.TB, p peer.ID, grants ...grant) *ucan.Verdict {
	t.Helper()
	var chains []ucan.Chain
	for _, g := range grants {
		chains = append(chains, a.Grant(t, peerdid.Of(p), g.cmd, g.res))
	}
	vd, err := a.v.Validate(context.Background(), peerdid.Of(p), chains)
	if err != nil {
		t.Fatal(err)
	}
	return vd
}

type grant struct {
	cmd ucan.Command
	res string
}

// secureNodes starts two registries whose tables hold the verdicts the
// grants give: self[i] is what node i believes it may do, seen[i] what the
// other node sees of it.
func secureNodes(t *testing.T, a *authority, self, seen [2][]grant) []*tnode {
	t.Helper()
	var ns []*tnode
	var tabs []*access.Table
	for i := range 2 {
		h := testnet.Host(t)
		tab := access.NewTable(nil)
		tab.SetSelf(a.verdict(t, h.ID(), self[i]...))
		r, err := New(h, nil, Config{Realm: testRealm, Logger: quietLogger(), Access: tab, AntiEntropy: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if !r.secure {
			t.Fatal("a table without an open verdict must make the registry check")
		}
		t.Cleanup(func() { r.Close() })
		ns = append(ns, &tnode{h: h, r: r})
		tabs = append(tabs, tab)
	}
	tabs[0].Set(ns[1].h.ID(), a.verdict(t, ns[1].h.ID(), seen[1]...))
	tabs[1].Set(ns[0].h.ID(), a.verdict(t, ns[0].h.ID(), seen[0]...))
	link(t, ns[0], ns[1])
	return ns
}

func TestSecureSelfChecks(t *testing.T) {
	a := newAuthority(t)
	g := []grant{{ucan.Register, testRealm + ".svc.>"}, {ucan.Join, testRealm + ".room.*"}, {ucan.Dispatch, testRealm + ".room.>"}}
	ns := secureNodes(t, a, [2][]grant{g, g}, [2][]grant{g, g})
	p := spawn(t, ns[0].r)
	mustRegister(t, p, "svc/orders", "")
	mustJoin(t, p, "room/1", "")
	for name, err := range map[string]error{
		"register outside":  p.Register("other/1", nil),
		"join too deep":     p.Join("room/1/x", nil),
		"dispatch outside":  func() error { _, err := ns[0].r.Dispatch(context.Background(), "svc/orders", nil); return err }(),
		"dispatch too wide": func() error { _, err := ns[0].r.Dispatch(context.Background(), "", nil); return err }(),
	} {
		if !errors.Is(err, ErrUnauthorized) && !(name == "dispatch too wide" && errors.Is(err, ErrInvalidKey)) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if n, err := ns[0].r.Dispatch(context.Background(), "room/", []byte("x")); err != nil || n != 1 {
		t.Fatalf("dispatch to a granted prefix: %d, %v", n, err)
	}
	if n, err := ns[0].r.Dispatch(context.Background(), "room/1", []byte("x")); err != nil || n != 1 {
		t.Fatalf("dispatch to a granted key: %d, %v", n, err)
	}
	hasName(t, ns[1].r, "svc/orders", p.Addr())
	memberCount(t, ns[1].r, "room/1", 1)
	if st := ns[1].r.Stats(); st.DroppedUnauthorized != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSecureDropsWhatAPeerMayNotWrite(t *testing.T) {
	a := newAuthority(t)
	// Node 0 believes it may register anything (its own chains say so, or
	// it is lying); node 1 sees a grant of svc.> only.
	all := []grant{{ucan.All, ""}}
	narrow := []grant{{ucan.Register, testRealm + ".svc.>"}}
	ns := secureNodes(t, a, [2][]grant{all, all}, [2][]grant{narrow, all})
	p := spawn(t, ns[0].r)
	mustRegister(t, p, "svc/ok", "")
	mustRegister(t, p, "forged/name", "")
	mustJoin(t, p, "forged/group", "")
	hasName(t, ns[1].r, "svc/ok", p.Addr())
	eventually(t, wait, "the drops to be counted", func() bool { return ns[1].r.Stats().DroppedUnauthorized >= 2 })
	if _, err := ns[1].r.Lookup("forged/name"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a forged name was kept: %v", err)
	}
	if ms, _ := ns[1].r.Members("forged/group"); len(ms) != 0 {
		t.Fatalf("a forged membership was kept: %v", ms)
	}
	// A dispatch from a node without the dispatch grant is dropped.
	q := spawn(t, ns[1].r)
	mustJoin(t, q, "svc/ok", "")
	memberCount(t, ns[0].r, "svc/ok", 1)
	if n, err := ns[0].r.Dispatch(context.Background(), "svc/ok", []byte("x")); err != nil || n != 2 {
		t.Fatalf("dispatch: %d, %v", n, err)
	}
	eventually(t, wait, "the dispatch to be refused", func() bool { return ns[1].r.stats.refusedDispatch.Load() == 1 })
	select {
	case m := <-q.Messages():
		t.Fatalf("a refused dispatch arrived: %+v", m)
	case <-time.After(50 * time.Millisecond):
	}
}

func TestSecureRefusesRelays(t *testing.T) {
	a := newAuthority(t)
	all := []grant{{ucan.All, ""}}
	ns := secureNodes(t, a, [2][]grant{all, all}, [2][]grant{all, all})
	// A stream relayed by node 0 on behalf of a third node is dropped by
	// node 1: an entry is only believed from its own node.
	other := testnet.Host(t).ID()
	l := ns[1].r.openLink(ns[0].h.ID())
	if l == nil {
		t.Fatal("no link")
	}
	inbound := ns[1].r.link(ns[0].h.ID())
	d := delta{cluster: "", origin: other, epoch: 1, to: 1, items: []item{{op: itemPut, kind: kindName, key: "relayed/x", proc: 1, ver: 1, since: 1}}}
	if err := inbound.onDelta(&d); err != nil {
		t.Fatal(err)
	}
	if _, err := ns[1].r.Lookup("relayed/x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a relayed entry was kept: %v", err)
	}
	if ns[1].r.Stats().DroppedRelayed != 1 {
		t.Fatalf("stats %+v", ns[1].r.Stats())
	}
}
