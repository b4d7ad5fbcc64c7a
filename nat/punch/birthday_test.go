package punch

import (
	mrand "math/rand/v2"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/macula-io/macula/nat"
)

func TestBdayRoleFor(t *testing.T) {
	types := []nat.Type{nat.TypeUnknown, nat.TypeOpen, nat.TypeFullCone, nat.TypeRestricted, nat.TypePortRestricted, nat.TypeSymmetric}
	for _, a := range types {
		for _, b := range types {
			got := bdayRoleFor(a, b)
			want := bdayNone
			switch {
			case a == nat.TypePortRestricted && b == nat.TypeSymmetric:
				want = bdayProbe
			case a == nat.TypeSymmetric && b == nat.TypePortRestricted:
				want = bdayOpen
			}
			if got != want {
				t.Errorf("%s meets %s: role %d, want %d", a, b, got, want)
			}
			// The two sides always take opposite roles.
			if got != bdayNone && bdayRoleFor(b, a) == got {
				t.Errorf("%s/%s: both sides have role %d", a, b, got)
			}
			if got != bdayNone && bdayPeerType(got) != b {
				t.Errorf("bdayPeerType(%d) = %s, want %s", got, bdayPeerType(got), b)
			}
		}
	}
}

func TestBdayPorts(t *testing.T) {
	r := mrand.New(mrand.NewPCG(1, 2))
	ports := bdayPorts(r, bdayProbesMax, bdayPortMin, bdayPortMax)
	if len(ports) != bdayProbesMax {
		t.Fatalf("got %d ports, want %d", len(ports), bdayProbesMax)
	}
	seen := map[uint16]bool{}
	for _, p := range ports {
		if p < bdayPortMin {
			t.Fatalf("port %d out of range", p)
		}
		if seen[p] {
			t.Fatalf("port %d twice", p)
		}
		seen[p] = true
	}
	// Small ranges: every port once, n capped to the range.
	small := bdayPorts(r, 100, 2000, 2009)
	if len(small) != 10 {
		t.Fatalf("small range: %d ports", len(small))
	}
	seen = map[uint16]bool{}
	for _, p := range small {
		if p < 2000 || p > 2009 || seen[p] {
			t.Fatalf("small range: bad or repeated port %d in %v", p, small)
		}
		seen[p] = true
	}
	for _, c := range [][3]int{{0, 1024, 65535}, {5, 0, 10}, {5, 10, 9}, {5, 1, 65536}} {
		if got := bdayPorts(r, c[0], c[1], c[2]); got != nil {
			t.Errorf("bdayPorts(%v) = %v, want nil", c, got)
		}
	}
	// Roughly uniform: the halves of the range get about half each.
	low := 0
	for _, p := range bdayPorts(r, 20000, bdayPortMin, bdayPortMax) {
		if int(p) < (bdayPortMin+bdayPortMax)/2 {
			low++
		}
	}
	if low < 9000 || low > 11000 {
		t.Errorf("lower half got %d of 20000 ports", low)
	}
}

func TestHitChance(t *testing.T) {
	space := bdayPortMax - bdayPortMin + 1
	got := HitChance(bdaySockets, bdayProbesMax, space)
	if got < 0.98 || got > 0.99 {
		t.Errorf("K=%d N=%d: chance %.4f, want about 0.983", bdaySockets, bdayProbesMax, got)
	}
	if c := HitChance(256, 256, space); c < 0.6 || c > 0.66 {
		t.Errorf("K=N=256: chance %.4f, want about 0.63", c)
	}
	for _, c := range []struct {
		k, n, space int
		want        float64
	}{{0, 10, 100, 0}, {10, 0, 100, 0}, {100, 1, 100, 1}, {1, 100, 100, 1}, {50, 51, 100, 1}} {
		if got := HitChance(c.k, c.n, c.space); got != c.want {
			t.Errorf("HitChance(%d, %d, %d) = %v, want %v", c.k, c.n, c.space, got, c.want)
		}
	}
	// Against a simulation.
	r := mrand.New(mrand.NewPCG(3, 4))
	hits := 0
	const runs = 2000
	for i := 0; i < runs; i++ {
		mapped := map[uint16]bool{}
		for len(mapped) < 64 {
			mapped[uint16(bdayPortMin+r.IntN(space))] = true
		}
		for _, p := range bdayPorts(r, 512, bdayPortMin, bdayPortMax) {
			if mapped[p] {
				hits++
				break
			}
		}
	}
	want := HitChance(64, 512, space)
	if got := float64(hits) / runs; got < want-0.05 || got > want+0.05 {
		t.Errorf("simulated %.3f, computed %.3f", got, want)
	}
}

func TestBdayBegin(t *testing.T) {
	s := &Service{}
	now := time.Now()
	a, b := peer.ID("a"), peer.ID("b")
	if !s.bdayBegin(a, true, now) {
		t.Fatal("first attempt refused")
	}
	s.bdayEnd()
	if s.bdayBegin(a, true, now.Add(bdayInterval/2)) {
		t.Fatal("second attempt within the interval allowed")
	}
	// An attempt that the peer starts counts apart.
	if !s.bdayBegin(a, false, now) {
		t.Fatal("answering refused")
	}
	s.bdayEnd()
	if !s.bdayBegin(a, true, now.Add(bdayInterval)) {
		t.Fatal("attempt after the interval refused")
	}
	s.bdayEnd()
	// The peer's retry, bdayInterval after it began its last attempt,
	// reaches us a little less than that after we answered it.
	if s.bdayBegin(a, false, now.Add(bdayInterval/2)) {
		t.Fatal("an answer within half the interval allowed")
	}
	if !s.bdayBegin(a, false, now.Add(bdayInterval-bdayTimeout)) {
		t.Fatal("the peer's retry refused: it began its last attempt before we answered it")
	}
	// At most bdayMaxRunning at once.
	if !s.bdayBegin(b, true, now) {
		t.Fatal("second peer refused")
	}
	if bdayMaxRunning == 2 && s.bdayBegin(peer.ID("c"), true, now) {
		t.Fatal("third running attempt allowed")
	}
	s.bdayEnd()
	s.bdayEnd()
	if s.bday.running != 0 {
		t.Fatalf("running = %d", s.bday.running)
	}
	// The map stays bounded.
	for i := 0; i < 3000; i++ {
		if s.bdayBegin(peer.ID(rune(i)), false, now) {
			s.bdayEnd()
		}
	}
	if l := len(s.bday.last[0]); l > bdayMaxPeers {
		t.Fatalf("%d entries", l)
	}
}

func TestBdayListeners(t *testing.T) {
	s := &Service{}
	for i := 0; i < bdayMaxListeners; i++ {
		if !s.bdayAddListener(50000 + i) {
			t.Fatalf("listener %d refused", i)
		}
	}
	if s.bdayAddListener(60000) {
		t.Fatal("too many listeners allowed")
	}
	addrs := s.WithoutListeners([]ma.Multiaddr{ma.StringCast("/ip4/0.0.0.0/udp/7400/quic-v1"), ma.StringCast("/ip4/0.0.0.0/udp/50001/quic-v1"), ma.StringCast("/ip4/10.0.7.2/udp/50002/quic-v1"), ma.StringCast("/ip4/10.0.7.2/tcp/50001")})
	if len(addrs) != 2 || addrs[0].String() != "/ip4/0.0.0.0/udp/7400/quic-v1" || addrs[1].String() != "/ip4/10.0.7.2/tcp/50001" {
		t.Fatalf("got %v", addrs)
	}
	s.bdayRemoveListener(50001, nil)
	if !s.bdayAddListener(60000) {
		t.Fatal("no room after a removal")
	}
}
