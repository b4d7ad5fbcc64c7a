package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/netip"
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
	ports := bdayPorts(r, bdayProbes, bdayPortMin, bdayPortMax)
	if len(ports) != bdayProbes {
		t.Fatalf("got %d ports, want %d", len(ports), bdayProbes)
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

func TestBdayHitChance(t *testing.T) {
	space := bdayPortMax - bdayPortMin + 1
	got := bdayHitChance(bdaySockets, bdayProbes, space)
	if got < 0.98 || got > 0.99 {
		t.Errorf("K=%d N=%d: chance %.4f, want about 0.983", bdaySockets, bdayProbes, got)
	}
	if c := bdayHitChance(256, 256, space); c < 0.6 || c > 0.66 {
		t.Errorf("K=N=256: chance %.4f, want about 0.63", c)
	}
	for _, c := range []struct {
		k, n, space int
		want        float64
	}{{0, 10, 100, 0}, {10, 0, 100, 0}, {100, 1, 100, 1}, {1, 100, 100, 1}, {50, 51, 100, 1}} {
		if got := bdayHitChance(c.k, c.n, c.space); got != c.want {
			t.Errorf("bdayHitChance(%d, %d, %d) = %v, want %v", c.k, c.n, c.space, got, c.want)
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
	want := bdayHitChance(64, 512, space)
	if got := float64(hits) / runs; got < want-0.05 || got > want+0.05 {
		t.Errorf("simulated %.3f, computed %.3f", got, want)
	}
}

func TestBdayPacket(t *testing.T) {
	nonce := bytes.Repeat([]byte{7}, bdayNonceLen)
	b := bdayPacket(nonce, 40000)
	if b[0]&0x40 != 0 {
		t.Fatalf("probe has QUIC's fixed bit set: %x", b[0])
	}
	if port, ok := parseBdayPacket(b, nonce); !ok || port != 40000 {
		t.Fatalf("parse: %d %v", port, ok)
	}
	other := bytes.Repeat([]byte{8}, bdayNonceLen)
	if _, ok := parseBdayPacket(b, other); ok {
		t.Fatal("accepted another nonce")
	}
	if _, ok := parseBdayPacket(bdayPacket(nonce, 0), nonce); ok {
		t.Fatal("accepted an opening packet as a probe")
	}
	if _, ok := parseBdayPacket(b[:len(b)-1], nonce); ok {
		t.Fatal("accepted a short packet")
	}
	if _, ok := parseBdayPacket(b, nonce[:4]); ok {
		t.Fatal("accepted a short nonce")
	}
}

func TestDecodeBdayMsg(t *testing.T) {
	nonce := bytes.Repeat([]byte{1}, bdayNonceLen)
	good := []bdayMsg{
		{Kind: "start", Nonce: nonce, Addr: "8.0.0.5:7400"},
		{Kind: "ready", Nonce: nonce, Addr: "8.0.0.7"},
		{Kind: "hit", Port: 43397},
		{Kind: "done", OK: true, Probes: 96},
		{Kind: "done"},
	}
	for _, m := range good {
		var buf bytes.Buffer
		if err := writeBdayMsg(&buf, m); err != nil {
			t.Fatal(err)
		}
		got, err := readBdayMsg(&buf)
		if err != nil {
			t.Errorf("%+v: %v", m, err)
			continue
		}
		if got.Kind != m.Kind || got.Addr != m.Addr || got.Port != m.Port || got.OK != m.OK ||
			got.Probes != m.Probes || !bytes.Equal(got.Nonce, m.Nonce) {
			t.Errorf("round trip: got %+v, want %+v", got, m)
		}
	}
	bad := []bdayMsg{
		{Kind: "start", Nonce: nonce, Addr: "8.0.0.5"},            // no port
		{Kind: "start", Nonce: nonce, Addr: "127.0.0.1:7400"},     // loopback
		{Kind: "start", Nonce: nonce, Addr: "224.0.0.1:7400"},     // multicast
		{Kind: "start", Nonce: nonce, Addr: "0.0.0.0:7400"},       // unspecified
		{Kind: "start", Nonce: nonce, Addr: "[2001:db8::1]:7400"}, // IPv6: not yet
		{Kind: "start", Nonce: nonce[:3], Addr: "8.0.0.5:7400"},   // short nonce
		{Kind: "start", Addr: "8.0.0.5:0"},
		{Kind: "ready", Nonce: nonce, Addr: "8.0.0.7:1234"}, // an IP only
		{Kind: "ready", Addr: "8.0.0.7"},
		{Kind: "hit", Port: 80},
		{Kind: "hit"},
		{Kind: "done", Probes: bdayProbes + 1},
		{Kind: "done", Probes: -1},
		{Kind: "other"},
		{},
	}
	for _, m := range bad {
		b, _ := json.Marshal(m)
		if got, err := decodeBdayMsg(b); err == nil {
			t.Errorf("%s: accepted as %+v", b, got)
		}
	}
	for _, b := range []string{"", "{", "null", "[]", `{"kind":"hit","port":70000}`, `{"kind":"start","nonce":"!!"}`} {
		if _, err := decodeBdayMsg([]byte(b)); err == nil {
			t.Errorf("%q accepted", b)
		}
	}
	// Frames longer than bdayMsgMax are refused before they are read.
	if _, err := readBdayMsg(bytes.NewReader([]byte{0xff, 0xff})); err == nil {
		t.Error("accepted a 64 KiB frame")
	}
	if _, err := readBdayMsg(bytes.NewReader([]byte{0, 10, '{'})); err == nil {
		t.Error("accepted a truncated frame")
	}
}

func TestBdayBegin(t *testing.T) {
	n := &Node{}
	now := time.Now()
	a, b := peer.ID("a"), peer.ID("b")
	if !n.bdayBegin(a, true, now) {
		t.Fatal("first attempt refused")
	}
	n.bdayEnd()
	if n.bdayBegin(a, true, now.Add(bdayInterval/2)) {
		t.Fatal("second attempt within the interval allowed")
	}
	// An attempt that the peer starts counts apart.
	if !n.bdayBegin(a, false, now) {
		t.Fatal("answering refused")
	}
	n.bdayEnd()
	if !n.bdayBegin(a, true, now.Add(bdayInterval)) {
		t.Fatal("attempt after the interval refused")
	}
	// At most bdayMaxRunning at once.
	if !n.bdayBegin(b, true, now) {
		t.Fatal("second peer refused")
	}
	if bdayMaxRunning == 2 && n.bdayBegin(peer.ID("c"), true, now) {
		t.Fatal("third running attempt allowed")
	}
	n.bdayEnd()
	n.bdayEnd()
	if n.punch.bday.running != 0 {
		t.Fatalf("running = %d", n.punch.bday.running)
	}
	// The map stays bounded.
	for i := 0; i < 3000; i++ {
		if n.bdayBegin(peer.ID(rune(i)), false, now) {
			n.bdayEnd()
		}
	}
	if l := len(n.punch.bday.last[0]); l > 1024 {
		t.Fatalf("%d entries", l)
	}
}

func TestBdayListeners(t *testing.T) {
	n := &Node{}
	for i := 0; i < bdayMaxListeners; i++ {
		if !n.bdayAddListener(50000 + i) {
			t.Fatalf("listener %d refused", i)
		}
	}
	if n.bdayAddListener(60000) {
		t.Fatal("too many listeners allowed")
	}
	addrs := n.withoutBdayListeners([]ma.Multiaddr{ma.StringCast("/ip4/0.0.0.0/udp/7400/quic-v1"), ma.StringCast("/ip4/0.0.0.0/udp/50001/quic-v1"), ma.StringCast("/ip4/10.0.7.2/udp/50002/quic-v1"), ma.StringCast("/ip4/10.0.7.2/tcp/50001")})
	if len(addrs) != 2 || addrs[0].String() != "/ip4/0.0.0.0/udp/7400/quic-v1" || addrs[1].String() != "/ip4/10.0.7.2/tcp/50001" {
		t.Fatalf("got %v", addrs)
	}
	n.bdayRemoveListener(50001, nil)
	if !n.bdayAddListener(60000) {
		t.Fatal("no room after a removal")
	}
}

// FuzzDecodeBdayMsg: any message body decodes or fails without panicking,
// and what decodes satisfies the checks the handlers rely on.
func FuzzDecodeBdayMsg(f *testing.F) {
	nonce := bytes.Repeat([]byte{1}, bdayNonceLen)
	for _, m := range []bdayMsg{
		{Kind: "start", Nonce: nonce, Addr: "8.0.0.5:7400"},
		{Kind: "ready", Nonce: nonce, Addr: "8.0.0.7"},
		{Kind: "hit", Port: 43397},
		{Kind: "done", OK: true, Probes: 96},
	} {
		b, _ := json.Marshal(m)
		f.Add(b)
	}
	f.Add([]byte(`{"kind":"start","addr":"[::1]:1"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeBdayMsg(b)
		if err != nil {
			return
		}
		switch m.Kind {
		case "start", "ready":
			if len(m.Nonce) != bdayNonceLen {
				t.Fatalf("nonce of %d bytes", len(m.Nonce))
			}
		case "hit":
			if m.Port < bdayPortMin {
				t.Fatalf("port %d", m.Port)
			}
		case "done":
		default:
			t.Fatalf("kind %q", m.Kind)
		}
		// The handlers parse these without checking again.
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("%s: %v", b, r)
			}
		}()
		if m.Kind == "start" {
			_ = netip.MustParseAddrPort(m.Addr)
		}
		if m.Kind == "ready" {
			_ = netip.MustParseAddr(m.Addr)
		}
		// Framed, it reads back the same.
		var buf bytes.Buffer
		if err := writeBdayMsg(&buf, m); err == nil {
			if _, err := readBdayMsg(&buf); err != nil {
				t.Fatalf("%+v does not read back: %v", m, err)
			}
		}
	})
}

// FuzzParseBdayPacket: any datagram is a probe or not without panicking;
// a probe carries the nonce and a port in range.
func FuzzParseBdayPacket(f *testing.F) {
	nonce := bytes.Repeat([]byte{9}, bdayNonceLen)
	f.Add(bdayPacket(nonce, 40000))
	f.Add(bdayPacket(nonce, 0))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		port, ok := parseBdayPacket(b, nonce)
		if !ok {
			return
		}
		if port < bdayPortMin || !bytes.Equal(bdayPacket(nonce, port), b) {
			t.Fatalf("%x: port %d", b, port)
		}
	})
}

// TestBdayListenerLifecycle: a birthday listener stays while a direct
// connection uses it and closes when none does any more.
func TestBdayListenerLifecycle(t *testing.T) {
	b := startNode(t, "io.acme.orders", "b", nil)
	c := startNode(t, "io.acme.orders", "c", nil)
	// A free port, as a probed socket's would be once closed.
	u, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	port := u.LocalAddr().(*net.UDPAddr).Port
	u.Close()
	laddr := ma.StringCast(fmt.Sprintf("/ip4/127.0.0.1/udp/%d/quic-v1", port))
	if !b.bdayAddListener(port) {
		t.Fatal("no room for a listener")
	}
	if err := b.host.Network().Listen(laddr); err != nil {
		t.Fatal(err)
	}
	listening := func() bool {
		for _, a := range b.host.Network().ListenAddresses() {
			if a.Equal(laddr) {
				return true
			}
		}
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.host.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: []ma.Multiaddr{laddr}}); err != nil {
		t.Fatal(err)
	}
	b.bdayWatch(port, laddr)
	time.Sleep(bdayWatchEvery + bdayWatchEvery/2)
	if !listening() || !b.bdayListenPort(port) {
		t.Fatal("listener closed while a connection uses it")
	}
	if err := c.host.Network().ClosePeer(b.ID()); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*bdayWatchEvery, "the listener to close", func() bool {
		return !listening() && !b.bdayListenPort(port)
	})
}
