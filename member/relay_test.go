package member

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/macula-io/macula/event"
	"github.com/macula-io/macula/internal/testnet"
)

// relayOnly is the gater of a node behind a NAT that nobody can dial: it
// takes direct connections only with its relay, everything else through
// the relay's circuits.
type relayOnly struct{ relay peer.ID }

func relayed(a ma.Multiaddr) bool {
	_, err := a.ValueForProtocol(ma.P_CIRCUIT)
	return err == nil
}

func (g relayOnly) InterceptPeerDial(peer.ID) bool { return true }
func (g relayOnly) InterceptAddrDial(p peer.ID, a ma.Multiaddr) bool {
	return p == g.relay || relayed(a)
}
func (g relayOnly) InterceptAccept(network.ConnMultiaddrs) bool { return true }
func (g relayOnly) InterceptSecured(_ network.Direction, p peer.ID, c network.ConnMultiaddrs) bool {
	return p == g.relay || relayed(c.RemoteMultiaddr())
}
func (g relayOnly) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }

// TestThroughRelay: a member that others can reach only through a relay
// is learnt by all, its links to its ring neighbours run over relayed
// connections, it changes its capabilities, and its failure is detected;
// in an open realm and in a secure one (claims checked against grants).
func TestThroughRelay(t *testing.T) {
	t.Run("open", func(t *testing.T) { testThroughRelay(t, false) })
	t.Run("secure", func(t *testing.T) { testThroughRelay(t, true) })
}

func testThroughRelay(t *testing.T, secure bool) {
	r := testnet.HostWith(t, libp2p.EnableRelayService(), libp2p.ForceReachabilityPublic())
	rInfo := peer.AddrInfo{ID: r.ID(), Addrs: r.Addrs()}
	circuit := r.Addrs()[0].Encapsulate(ma.StringCast("/p2p/" + r.ID().String() + "/p2p-circuit"))
	hidden := testnet.HostWith(t,
		libp2p.ConnectionGater(relayOnly{relay: r.ID()}),
		libp2p.EnableRelay(),
		// What autorelay advertises behind a real NAT: the relayed
		// address only.
		libp2p.AddrsFactory(func([]ma.Multiaddr) []ma.Multiaddr { return []ma.Multiaddr{circuit} }),
	)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := hidden.Connect(ctx, rInfo); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Reserve(ctx, hidden, rInfo); err != nil {
		t.Fatal(err)
	}
	ha, hb := testnet.HostWith(t), testnet.HostWith(t)
	policy := func(h host.Host) func(*Config) { return nil }
	if secure {
		sr := newSecureRealm(t)
		sr.grant(r)
		sr.grant(hidden, "game")
		sr.grant(ha, "chat")
		sr.grant(hb)
		policy = func(h host.Host) func(*Config) { return func(c *Config) { c.Access = sr.table(h) } }
	}
	mr := newMemberOn(t, r, "relay", policy(r))
	mh := newMemberOn(t, hidden, "hidden", policy(hidden))
	ma1 := newMemberOn(t, ha, "a", policy(ha))
	mb := newMemberOn(t, hb, "b", policy(hb))
	for _, x := range []*testMember{ma1, mb} {
		connect(t, x.h, r)
	}
	all := []*testMember{mr, mh, ma1, mb}
	eventually(t, 30*time.Second, "every member sees every member", func() bool { return sees(all, all...) })
	// The hidden member's ring neighbours other than the relay (with two
	// rings in a realm of four, one or two of a and b: a member's opposite
	// on both rings is not its neighbour) link to it through the relay.
	var linked []*testMember
	eventually(t, 30*time.Second, "the hidden member has a neighbour besides the relay", func() bool {
		mh.m.mu.Lock()
		defer mh.m.mu.Unlock()
		if mh.m.dirty {
			// The overlay has not yet recomputed its neighbours from the
			// full view: with three members, all are neighbours; with
			// four, the opposite one is not, and nothing links to it.
			return false
		}
		linked = linked[:0]
		for _, x := range []*testMember{ma1, mb} {
			if mh.m.wanted[x.h.ID()] {
				linked = append(linked, x)
			}
		}
		return len(linked) > 0
	})
	for _, x := range linked {
		eventually(t, 30*time.Second, "a relayed link to the hidden member", func() bool {
			x.m.mu.Lock()
			l := x.m.links[hidden.ID()]
			up := l != nil && l.up()
			x.m.mu.Unlock()
			if !up {
				return false
			}
			for _, c := range x.h.Network().ConnsToPeer(hidden.ID()) {
				if !relayed(c.RemoteMultiaddr()) {
					t.Fatalf("a direct connection to the hidden member: %s", c.RemoteMultiaddr())
				}
			}
			return true
		})
	}
	if err := mh.m.SetCapabilities(ctx, []string{"game"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the hidden member's capability everywhere", func() bool {
		for _, x := range all {
			if len(x.m.WithCapability("game")) != 1 {
				return false
			}
		}
		return true
	})
	if secure {
		if err := mh.m.SetCapabilities(ctx, []string{"chat", "game"}); !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("the hidden member claimed chat without a grant: %v", err)
		}
		for _, x := range all {
			if st := x.m.Stats(); st.DroppedUnauthorized != 0 {
				t.Fatalf("%s dropped %d claims of honest members", x.m.Self().Name, st.DroppedUnauthorized)
			}
		}
	}
	mh.m.mu.Lock() // frozen
	defer mh.m.mu.Unlock()
	rest := []*testMember{mr, ma1, mb}
	eventually(t, 30*time.Second, "the frozen hidden member failed everywhere", func() bool { return sees(rest, rest...) })
}

// behindNAT is the gater of a node behind a NAT with no relay address:
// it dials out freely, and takes connections in only from its relay (an
// existing mapping).
type behindNAT struct{ relay peer.ID }

func (g behindNAT) InterceptPeerDial(peer.ID) bool               { return true }
func (g behindNAT) InterceptAddrDial(peer.ID, ma.Multiaddr) bool { return true }
func (g behindNAT) InterceptAccept(network.ConnMultiaddrs) bool  { return true }
func (g behindNAT) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) {
	return true, 0
}
func (g behindNAT) InterceptSecured(dir network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	return dir == network.DirOutbound || p == g.relay
}

// TestUnreachablePairStaysMembers: two members behind NATs that neither
// can cross (no relay address) cannot link, although the rings make them
// neighbours. Each is alive and linked to the others, so it refutes the
// other's suspicion: both stay members everywhere, and nobody is declared
// failed, however long it lasts.
func TestUnreachablePairStaysMembers(t *testing.T) {
	r := newMember(t, "relay", nil)
	h1 := newMemberOn(t, testnet.HostWith(t, libp2p.ConnectionGater(behindNAT{relay: r.h.ID()})), "h1", nil)
	h2 := newMemberOn(t, testnet.HostWith(t, libp2p.ConnectionGater(behindNAT{relay: r.h.ID()})), "h2", nil)
	// Three members: each is the other two's neighbour on every ring (in a
	// realm of four, two members may be opposite on both rings and never
	// try to link).
	for _, x := range []*testMember{h1, h2} {
		connect(t, x.h, r.h)
	}
	all := []*testMember{r, h1, h2}
	eventually(t, 30*time.Second, "every member sees every member", func() bool { return sees(all, all...) })
	eventually(t, 30*time.Second, "h1 and h2 want a link to each other", func() bool {
		h1.m.mu.Lock()
		defer h1.m.mu.Unlock()
		return h1.m.wanted[h2.h.ID()]
	})
	subs := make([]*event.Subscription, len(all))
	for i, x := range all {
		subs[i] = x.bus.Subscribe(64, event.MemberFailed, event.MemberLeft)
		defer subs[i].Close()
	}
	// Long enough for every weak suspicion to be raised and refuted:
	// ProbeTimeout of failed dials, then SuspicionTimeout.
	cfg := fastConfig("x")
	time.Sleep(2*cfg.ProbeTimeout + 2*cfg.SuspicionTimeout)
	if !sees(all, all...) {
		t.Fatal("a member went missing")
	}
	for i, s := range subs {
		select {
		case e := <-s.C:
			t.Fatalf("%s: %s %s (%s)", all[i].m.Self().Name, e.Kind, e.Name, e.Reason)
		default:
		}
	}
	t.Logf("refutations: h1 %d, h2 %d", h1.m.Stats().Refutations, h2.m.Stats().Refutations)
	for _, x := range []*testMember{h1, h2} {
		if st := x.m.Stats(); st.Refutations > 2 {
			t.Fatalf("%s refuted %d times: the weak suspicion repeats", x.m.Self().Name, st.Refutations)
		}
	}
}
