package node

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/macula-io/macula/dht"
)

// TestWaitVerifiedRelayed: the punch service asks waitVerified about a peer
// the moment its relayed connection comes in, before the realm handshake
// has run on it. A relayed connection is Limited, not Connected: the wait
// must last until the handshake is done, not end there.
func TestWaitVerifiedRelayed(t *testing.T) {
	relay := startNode(t, "io.acme.orders", "relay", func(c *Config) {
		c.RelayService = true
		c.Reachability = "public"
	})
	relayAddr := bootstrapOf(relay)[0]
	callee := startNode(t, "io.acme.orders", "callee", func(c *Config) {
		c.Bootstrap = []string{relayAddr}
		c.Relays = []string{relayAddr}
		c.Reachability = "private"
		c.DisableHolePunching = true
	})
	caller := startNode(t, "io.acme.orders", "caller", func(c *Config) { c.DisableHolePunching = true })
	verified := make(chan bool, 1)
	callee.Host().Network().Notify(&network.NotifyBundle{ConnectedF: func(_ network.Network, c network.Conn) {
		if c.RemotePeer() != caller.ID() || !isRelayed(c.RemoteMultiaddr()) {
			return
		}
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			verified <- callee.waitVerified(ctx, caller.ID())
		}()
	}})
	// On loopback the host does not advertise circuit addresses, so the
	// address is made by hand; it works once the callee holds its
	// reservation.
	circuit := ma.StringCast(relayAddr + "/p2p-circuit/p2p/" + callee.ID().String())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	eventually(t, 15*time.Second, "a connection through the relay", func() bool {
		err := caller.Host().Connect(ctx, peer.AddrInfo{ID: callee.ID(), Addrs: []ma.Multiaddr{circuit}})
		if err != nil {
			time.Sleep(100 * time.Millisecond)
		}
		return err == nil
	})
	select {
	case ok := <-verified:
		if !ok {
			t.Fatal("waitVerified gave up on a peer whose handshake runs on a relayed connection")
		}
	case <-time.After(15 * time.Second):
		var addrs []ma.Multiaddr
		for _, c := range callee.Host().Network().ConnsToPeer(caller.ID()) {
			addrs = append(addrs, c.RemoteMultiaddr())
		}
		t.Fatalf("waitVerified did not return; the callee's connections to the caller: %v", addrs)
	}
}

// TestReachabilityDecided: with no flag, nodes on loopback find that peers
// reach them (STUN from the bootstrap peer says no NAT; the first node asks
// its peers, having no STUN server of its own): public, so DHT servers and
// relays. A node forced private is a DHT client that keeps reservations.
func TestReachabilityDecided(t *testing.T) {
	boot := startNode(t, "io.acme.orders", "boot", nil)
	if d := boot.Reachability(); d.Public() || !d.Reservations || d.DHTServer {
		t.Fatalf("boot before any peer: %+v", d)
	}
	a := startNode(t, "io.acme.orders", "a", func(c *Config) { c.Bootstrap = bootstrapOf(boot) })
	b := startNode(t, "io.acme.orders", "b", func(c *Config) {
		c.Bootstrap = bootstrapOf(boot)
		c.Reachability = "private"
	})
	for _, n := range []*Node{boot, a} {
		defer func() {
			if t.Failed() {
				t.Logf("%s: %+v %+v", n.Name(), n.Reachability(), n.NAT())
			}
		}()
		eventually(t, 10*time.Second, n.Name()+" public", func() bool {
			d := n.Reachability()
			st, err := n.DHT().Stats(context.Background())
			return err == nil && d.Public() && d.DHTServer && d.RelayService && !d.Reservations && st.Mode == dht.ModeServer
		})
	}
	d := b.Reachability()
	if d.Public() || d.DHTServer || d.RelayService || !d.Reservations || !strings.HasPrefix(d.Reason, "forced") {
		t.Fatalf("b forced private: %+v", d)
	}
	if st, err := b.DHT().Stats(context.Background()); err != nil || st.Mode != dht.ModeClient {
		t.Fatalf("b's DHT mode %s (%v), want client", st.Mode, err)
	}
}
