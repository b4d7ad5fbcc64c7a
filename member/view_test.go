package member

import (
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// principal is a key for making records and alerts in view tests.
type principal struct {
	key crypto.PrivKey
	id  peer.ID
}

func newPrincipal(t testing.TB) principal {
	k, id := testKey(t)
	return principal{key: k, id: id}
}

func (p principal) record(t testing.TB, inc uint64, caps ...string) (*record, []byte) {
	t.Helper()
	r := &record{ID: p.id, Incarnation: inc, Boot: 1, Name: "n", Capabilities: caps}
	if err := r.sign(testRealm, p.key); err != nil {
		t.Fatal(err)
	}
	return r, r.encode()
}

func (p principal) alert(t testing.TB, kind alertKind, subject peer.ID, inc uint64) (*alert, []byte) {
	t.Helper()
	a := &alert{Kind: kind, Subject: subject, Incarnation: inc, Author: p.id}
	if err := a.sign(testRealm, p.key); err != nil {
		t.Fatal(err)
	}
	return a, a.encode()
}

func newTestView(t testing.TB, self principal, maxEntries int) *view {
	v := newView(self.id, 3, maxEntries, time.Second, 2)
	r, w := self.record(t, 10)
	v.setSelf(r, w)
	return v
}

func kinds(res result) []ChangeKind {
	var out []ChangeKind
	for _, c := range res.changes {
		out = append(out, c.Kind)
	}
	return out
}

func TestViewRules(t *testing.T) {
	now := time.Now()
	self, x, w1, w2 := newPrincipal(t), newPrincipal(t), newPrincipal(t), newPrincipal(t)
	v := newTestView(t, self, 100)
	for _, p := range []principal{w1, w2} {
		r, wire := p.record(t, 1)
		v.applyRecord(r, wire, now)
	}

	r5, w5 := x.record(t, 5, "game")
	if res := v.applyRecord(r5, w5, now); !res.accepted || len(res.changes) != 1 || res.changes[0].Kind != Joined {
		t.Fatalf("join: %+v", res)
	}
	if res := v.applyRecord(r5, w5, now); res.accepted {
		t.Fatal("the same record twice")
	}
	r4, w4 := x.record(t, 4, "chat")
	if res := v.applyRecord(r4, w4, now); res.accepted {
		t.Fatal("an older record")
	}
	r6, w6 := x.record(t, 6, "chat")
	if res := v.applyRecord(r6, w6, now); !res.accepted || kinds(res)[0] != Updated || res.changes[0].Previous.Capabilities[0] != "game" {
		t.Fatalf("update: %+v", res)
	}
	// A bump with nothing visible changed (a refutation, new addresses) is
	// accepted and forwarded, but no watcher hears of it.
	r7, w7 := x.record(t, 7, "chat")
	if res := v.applyRecord(r7, w7, now); !res.accepted || len(res.changes) != 0 {
		t.Fatalf("bump: %+v", res)
	}

	// Suspicion: stale ones are ignored; one does not conclude, two do.
	a, aw := w1.alert(t, alertSuspect, x.id, 6)
	if res := v.applyAlert(a, aw, now); res.accepted {
		t.Fatal("a suspicion of an old incarnation")
	}
	a, aw = w1.alert(t, alertSuspect, x.id, 7)
	// One suspicion concludes only when x has a single watcher (its
	// predecessors on the rings happen to be one member).
	single := v.needed(v.entries[x.id]) == 1
	if res := v.applyAlert(a, aw, now); !res.accepted || res.conclude != single || v.entries[x.id].st != stateSuspect {
		t.Fatalf("first suspicion: %+v", res)
	}
	if res := v.applyAlert(a, aw, now); res.accepted {
		t.Fatal("the same suspicion twice")
	}
	if got := v.members(); len(got) != 4 {
		t.Fatalf("a suspect is still a member: %d", len(got))
	}
	// A refutation (a later record) clears it.
	r8, w8 := x.record(t, 8, "chat")
	if res := v.applyRecord(r8, w8, now); !res.accepted || v.entries[x.id].st != stateAlive || len(v.suspects) != 0 {
		t.Fatalf("refutation: %+v", res)
	}
	// Members that could never reach x suspect it weakly: that never
	// concludes, however many they are.
	for _, p := range []principal{w1, w2, newPrincipal(t)} {
		u, uw := p.alert(t, alertUnreachable, x.id, 8)
		if res := v.applyAlert(u, uw, now); !res.accepted || res.conclude {
			t.Fatalf("weak suspicion: %+v", res)
		}
	}
	r85, w85 := x.record(t, 85, "chat")
	v.applyRecord(r85, w85, now) // refuted
	a, aw = w1.alert(t, alertSuspect, x.id, 85)
	v.applyAlert(a, aw, now)
	b, bw := w2.alert(t, alertSuspect, x.id, 85)
	res := v.applyAlert(b, bw, now)
	if !res.conclude {
		t.Fatalf("two suspicions: %+v", res)
	}
	f, fw := self.alert(t, alertFailed, x.id, 85)
	if res := v.applyAlert(f, fw, now); !res.accepted || kinds(res)[0] != Failed {
		t.Fatalf("failed: %+v", res)
	}
	if got := v.members(); len(got) != 3 {
		t.Fatalf("members after a failure: %d", len(got))
	}
	// The tombstone refuses the record it buried; a later one comes back.
	if res := v.applyRecord(r85, w85, now); res.accepted {
		t.Fatal("a buried record came back")
	}
	r9, w9 := x.record(t, 90)
	if res := v.applyRecord(r9, w9, now); kinds(res)[0] != Joined {
		t.Fatalf("return: %+v", res)
	}

	// A failure heard of a member we saw alive is only a suspicion:
	// the member gets its time to refute (a healed split).
	f, fw = w1.alert(t, alertFailed, x.id, 90)
	if res := v.applyAlert(f, fw, now); !res.accepted || len(res.changes) != 0 || v.entries[x.id].st != stateSuspect {
		t.Fatalf("failure of a live member: %+v", res)
	}
	// The same news again, by another way, or another's, does not end it.
	if res := v.applyAlert(f, fw, now); res.accepted || v.entries[x.id].st != stateSuspect {
		t.Fatalf("hearsay twice: %+v", res)
	}
	f2, fw2 := w2.alert(t, alertFailed, x.id, 90)
	if res := v.applyAlert(f2, fw2, now); res.accepted || v.entries[x.id].st != stateSuspect {
		t.Fatalf("hearsay from another: %+v", res)
	}
	if exp := v.expired(now.Add(2 * time.Second)); len(exp) != 1 || exp[0].id != x.id {
		t.Fatalf("expired: %v", exp)
	}
	// At its timeout, this node's own word ends a suspicion that rests on
	// hearsay (declareFailedLocked): the rule above is for others' news.
	// (It once refused that too, and such a suspect stayed forever.)
	z := newPrincipal(t)
	rz, wz := z.record(t, 4)
	v.applyRecord(rz, wz, now)
	fz, fwz := w1.alert(t, alertFailed, z.id, 4)
	if res := v.applyAlert(fz, fwz, now); v.entries[z.id].st != stateSuspect {
		t.Fatalf("hearsay of z: %+v", res)
	}
	own, ownw := self.alert(t, alertFailed, z.id, 4)
	if res := v.applyAlert(own, ownw, now); !res.accepted || len(res.changes) != 1 || res.changes[0].Kind != Failed {
		t.Fatalf("our own conclusion: %+v", res)
	}
	// A departure is final at its incarnation, and beats a failure.
	l, lw := x.alert(t, alertLeft, x.id, 90)
	if res := v.applyAlert(l, lw, now); kinds(res)[0] != Left {
		t.Fatalf("left: %+v", res)
	}
	f, fw = w2.alert(t, alertFailed, x.id, 90)
	if res := v.applyAlert(f, fw, now); res.accepted {
		t.Fatal("a failure after a departure")
	}

	// A goodbye (departed) drops a member at once; its own departure,
	// when it comes, is still passed on, without a second change.
	y := newPrincipal(t)
	ry, wy := y.record(t, 3)
	v.applyRecord(ry, wy, now)
	if res := v.departed(y.id, now); res.accepted || len(res.changes) != 1 || res.changes[0].Kind != Left {
		t.Fatalf("departed: %+v", res)
	}
	ly, lwy := y.alert(t, alertLeft, y.id, 3)
	if res := v.applyAlert(ly, lwy, now); !res.accepted || len(res.changes) != 0 {
		t.Fatalf("its departure after its goodbye: %+v", res)
	}
	if typ, w := v.fact(y.id); typ != typeAlert || string(w) != string(lwy) {
		t.Fatal("the departure is not kept to pass on")
	}

	// News of ourselves: refute.
	s, sw := w1.alert(t, alertSuspect, self.id, 10)
	if res := v.applyAlert(s, sw, now); !res.refute {
		t.Fatal("no refutation of a suspicion of self")
	}
	s, sw = w1.alert(t, alertSuspect, self.id, 9)
	if res := v.applyAlert(s, sw, now); res.refute {
		t.Fatal("refuted an old suspicion")
	}

	// Tombstones go after their time.
	v.reap(now.Add(time.Hour), time.Minute)
	if _, ok := v.entries[x.id]; ok {
		t.Fatal("tombstone kept")
	}
}

func TestViewHashAndDigest(t *testing.T) {
	now := time.Now()
	self, x, y := newPrincipal(t), newPrincipal(t), newPrincipal(t)
	a := newTestView(t, self, 100)
	b := newView(x.id, 3, 100, time.Second, 2)
	rx, wx := x.record(t, 3)
	b.setSelf(rx, wx)
	rs, ws := self.record(t, 10)
	b.applyRecord(rs, ws, now)
	a.applyRecord(rx, wx, now)
	if a.hash != b.hash {
		t.Fatal("equal views, different hashes")
	}
	// Suspicion is not exchanged: it does not change the hash.
	s, sw := y.alert(t, alertSuspect, x.id, 3)
	a.applyAlert(s, sw, now)
	if a.hash != b.hash {
		t.Fatal("a suspicion changed the hash")
	}
	ry, wy := y.record(t, 1)
	a.applyRecord(ry, wy, now)
	if a.hash == b.hash {
		t.Fatal("different views, equal hashes")
	}
	for _, d := range b.digestEntries() {
		if a.newer(d) {
			t.Fatalf("a is newer than b on %v", d)
		}
	}
	if typ, w := a.fact(y.id); typ != typeRecord || string(w) != string(wy) {
		t.Fatal("fact")
	}
}

func TestViewFull(t *testing.T) {
	now := time.Now()
	self := newPrincipal(t)
	v := newTestView(t, self, 2)
	for i := 0; i < 2; i++ {
		r, w := newPrincipal(t).record(t, 1)
		if res := v.applyRecord(r, w, now); !res.accepted {
			t.Fatal("refused under the limit")
		}
	}
	r, w := newPrincipal(t).record(t, 1)
	if res := v.applyRecord(r, w, now); !res.full || res.accepted {
		t.Fatalf("over the limit: %+v", res)
	}
	// A tombstone makes room.
	var first peer.ID
	for id := range v.entries {
		first = id
		break
	}
	v.applyAlert(&alert{Kind: alertLeft, Subject: first, Incarnation: 1, Author: first}, []byte("x"), now)
	if res := v.applyRecord(r, w, now); !res.accepted {
		t.Fatalf("no room made: %+v", res)
	}
}

func TestWatchMerge(t *testing.T) {
	m := func(caps ...string) Member { return Member{ID: "p", Capabilities: caps} }
	cases := []struct {
		in   []ChangeKind
		want []ChangeKind
	}{
		{[]ChangeKind{Joined, Updated}, []ChangeKind{Joined}},
		{[]ChangeKind{Joined, Left}, nil},
		{[]ChangeKind{Updated, Updated}, []ChangeKind{Updated}},
		{[]ChangeKind{Updated, Failed}, []ChangeKind{Failed}},
		{[]ChangeKind{Left, Joined, Updated}, []ChangeKind{Left, Joined}},
		{[]ChangeKind{Left, Joined, Failed}, []ChangeKind{Left}},
	}
	for _, c := range cases {
		var list []Change
		for i, k := range c.in {
			list = merge(list, Change{Kind: k, Member: m(string(rune('a' + i)))})
		}
		var got []ChangeKind
		for _, x := range list {
			got = append(got, x.Kind)
		}
		if len(got) != len(c.want) {
			t.Fatalf("%v -> %v, want %v", c.in, got, c.want)
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Fatalf("%v -> %v, want %v", c.in, got, c.want)
			}
		}
	}
}

func TestNeighboursAndWatchers(t *testing.T) {
	now := time.Now()
	self := newPrincipal(t)
	v := newTestView(t, self, 100)
	if n := v.neighbours(); len(n) != 0 {
		t.Fatalf("alone: %v", n)
	}
	var ps []principal
	for i := 0; i < 20; i++ {
		p := newPrincipal(t)
		ps = append(ps, p)
		r, w := p.record(t, 1)
		v.applyRecord(r, w, now)
	}
	n := v.neighbours()
	if len(n) < 2 || len(n) > 6 {
		t.Fatalf("neighbours: %d", len(n))
	}
	// Neighbourhood is symmetric: every neighbour counts us among its
	// watchers or we count among its successors.
	for _, p := range n {
		e := v.entries[p]
		w := v.watchersOf(p, e.keys)
		succ := false
		for _, q := range w {
			if q == self.id {
				succ = true
			}
		}
		// or p watches us
		sw := v.watchersOf(self.id, v.selfKeys)
		for _, q := range sw {
			if q == p {
				succ = true
			}
		}
		if !succ {
			t.Fatalf("%s is a neighbour but neither watches the other", p)
		}
	}
}

// TestOverlay checks that Overlay gives every member the neighbours its
// own view computes.
func TestOverlay(t *testing.T) {
	for _, n := range []int{1, 2, 3, 5, 40} {
		ids := make([]peer.ID, n)
		for i := range ids {
			ids[i] = newPrincipal(t).id
		}
		for _, rings := range []int{1, 2, 3} {
			all := Overlay(ids, rings)
			for _, self := range ids {
				v := newView(self, rings, 100, time.Second, 2)
				for _, id := range ids {
					if id != self {
						v.entries[id] = &entry{id: id, st: stateAlive, keys: ringKeys(id, rings)}
					}
				}
				if want, got := v.neighbours(), all[self]; !slices.Equal(want, got) {
					t.Fatalf("%d members, %d rings: Overlay gives %v, the view %v", n, rings, got, want)
				}
			}
		}
	}
}

// A lone suspicion waits SuspicionTimeout in a small realm and longer in a
// large one (log10 of the live members): a starved member's refutation
// needs more hops to come back.
func TestSuspicionTimeoutGrowsWithTheRealm(t *testing.T) {
	now := time.Now()
	for _, c := range []struct {
		members int
		want    time.Duration
	}{{5, time.Second}, {10, time.Second}, {100, 2 * time.Second}} {
		self := newPrincipal(t)
		v := newTestView(t, self, 1000)
		var last principal
		for v.live < c.members {
			last = newPrincipal(t)
			r, w := last.record(t, 1)
			v.applyRecord(r, w, now)
		}
		a, aw := newPrincipal(t).alert(t, alertSuspect, last.id, 1)
		// The author is no member: its suspicion counts as a lone one.
		v.applyAlert(a, aw, now)
		e := v.entries[last.id]
		if e.sus == nil {
			t.Fatalf("%d members: no suspicion", c.members)
		}
		if got := e.sus.deadline.Sub(now); got < c.want-time.Millisecond || got > c.want+time.Millisecond {
			t.Errorf("%d members: a lone suspicion waits %v, want %v", c.members, got, c.want)
		}
	}
}
