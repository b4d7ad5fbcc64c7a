package punch

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/macula-io/macula/internal/testnet"
)

func TestPunchTarget(t *testing.T) {
	cases := []struct {
		name  string
		reply punchMsg
		want  string // "" for none
	}{
		{"full cone", punchMsg{Type: "full_cone", Addr: "8.0.0.2:7400"}, "/ip4/8.0.0.2/udp/7400/quic-v1"},
		{"restricted, opened", punchMsg{Type: "restricted", Addr: "8.0.0.4:7400", Opened: true}, "/ip4/8.0.0.4/udp/7400/quic-v1"},
		{"restricted, not opened", punchMsg{Type: "restricted", Addr: "8.0.0.4:7400"}, ""},
		{"port restricted", punchMsg{Type: "port_restricted", Addr: "8.0.0.6:7400", Opened: true}, ""},
		{"symmetric", punchMsg{Type: "symmetric", Addr: "8.0.0.7:1234"}, ""},
		{"unknown", punchMsg{Type: "unknown"}, ""},
		{"open", punchMsg{Type: "open", Addr: "7.0.0.20:7400"}, "/ip4/7.0.0.20/udp/7400/quic-v1"},
		{"no address", punchMsg{Type: "full_cone"}, ""},
		{"port zero", punchMsg{Type: "full_cone", Addr: "8.0.0.2:0"}, ""},
		{"garbage", punchMsg{Type: "full_cone", Addr: "not an address"}, ""},
		{"ipv6", punchMsg{Type: "full_cone", Addr: "[2001:db8::1]:7400"}, "/ip6/2001:db8::1/udp/7400/quic-v1"},
	}
	for _, c := range cases {
		a, ok := punchTarget(c.reply)
		switch {
		case c.want == "" && ok:
			t.Errorf("%s: got %s, want none", c.name, a)
		case c.want != "" && !ok:
			t.Errorf("%s: got none, want %s", c.name, c.want)
		case c.want != "" && !a.Equal(ma.StringCast(c.want)):
			t.Errorf("%s: got %s, want %s", c.name, a, c.want)
		}
	}
}

// TestFilter: DCUtR's address filter passes addresses through without a
// service or for peers without a punch, waits for a running one, and hides
// the addresses only when this node dialed the peer itself.
func TestFilter(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := NewFilter()
	addrs := []ma.Multiaddr{ma.StringCast("/ip4/8.0.0.2/udp/7400/quic-v1")}
	if got := f.FilterRemote("p", addrs); len(got) != 1 {
		t.Fatalf("no service: got %v", got)
	}
	s := &Service{ctx: ctx, log: testnet.QuietLogger(), tries: map[peer.ID]*try{}}
	f.svc.Store(s)

	if got := f.FilterRemote("other", addrs); len(got) != 1 {
		t.Fatalf("no punch: got %v", got)
	}
	if got := f.FilterLocal("other", addrs); len(got) != 1 {
		t.Fatalf("local: got %v", got)
	}
	for _, ours := range []bool{true, false} {
		tr := &try{done: make(chan struct{})}
		s.mu.Lock()
		s.tries["p"] = tr
		s.mu.Unlock()
		res := make(chan []ma.Multiaddr, 1)
		go func() { res <- f.FilterRemote("p", addrs) }()
		select {
		case got := <-res:
			t.Fatalf("ours=%v: filter returned %v before the decision", ours, got)
		case <-time.After(50 * time.Millisecond):
		}
		tr.decide(ours)
		tr.decide(!ours) // the first decision holds
		got := <-res
		if ours && len(got) != 0 {
			t.Errorf("ours: DCUtR got %v, want none", got)
		}
		if !ours && len(got) != 1 {
			t.Errorf("not ours: DCUtR got %v, want the addresses", got)
		}
	}

	// Closing the service releases a waiting filter.
	tr := &try{done: make(chan struct{})}
	s.mu.Lock()
	s.tries["q"] = tr
	s.mu.Unlock()
	res := make(chan []ma.Multiaddr, 1)
	go func() { res <- f.FilterRemote("q", addrs) }()
	cancel()
	if got := <-res; len(got) != 1 {
		t.Errorf("closed: got %v, want the addresses", got)
	}
}
