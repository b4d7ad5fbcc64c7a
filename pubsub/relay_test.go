package pubsub

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/macula-io/macula/internal/testnet"
)

// linkConn is the connection our link to p runs on (nil without a link).
func linkConn(ps *PubSub, p peer.ID) network.Conn {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if r := ps.remotes[p]; r != nil && r.out != nil {
		return r.out.s.Conn()
	}
	return nil
}

// TestLinkOpenedOnRelayMovesToDirect: a link opened on a relayed
// connection while a direct one to the peer already exists moves to the
// direct one. That happens when a peer's stream comes in over the relay
// just as hole punching makes the direct connection (our link back goes on
// the peer's connection, and no connection event follows). Such a link
// stayed on the relay: when the relay died, what was published to it was
// lost (the NAT lab's relay failover, once in about 40 runs). Both sides
// end up on the direct connection, and a message published after the
// relay's death arrives.
func TestLinkOpenedOnRelayMovesToDirect(t *testing.T) {
	r := testnet.HostWith(t, libp2p.EnableRelayService(), libp2p.ForceReachabilityPublic())
	rInfo := peer.AddrInfo{ID: r.ID(), Addrs: r.Addrs()}
	pubH, subH := testnet.HostWith(t), testnet.HostWith(t, libp2p.EnableRelay())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := subH.Connect(ctx, rInfo); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Reserve(ctx, subH, rInfo); err != nil {
		t.Fatal(err)
	}
	pub, sub := newNodeOn(t, pubH, nil), newNodeOn(t, subH, nil)
	const topic = "io.acme.orders.relayed"
	_, c := subscribe(t, sub.ps, topic)
	// The relayed connection first (the relay's limits make it limited),
	// then a direct one.
	circuit := r.Addrs()[0].Encapsulate(ma.StringCast("/p2p/" + r.ID().String() + "/p2p-circuit"))
	if err := pubH.Connect(network.WithAllowLimitedConn(ctx, "test"), peer.AddrInfo{ID: subH.ID(), Addrs: []ma.Multiaddr{circuit}}); err != nil {
		t.Fatal(err)
	}
	var relayed network.Conn
	for _, cn := range pubH.Network().ConnsToPeer(subH.ID()) {
		if cn.Stat().Limited {
			relayed = cn
		}
	}
	if relayed == nil {
		t.Fatal("no limited (relayed) connection")
	}
	var addrs []ma.Multiaddr
	for _, a := range subH.Network().ListenAddresses() {
		if _, err := a.ValueForProtocol(ma.P_CIRCUIT); err != nil {
			addrs = append(addrs, a)
		}
	}
	if err := pubH.Connect(network.WithForceDirectDial(ctx, "test"), peer.AddrInfo{ID: subH.ID(), Addrs: addrs}); err != nil {
		t.Fatal(err)
	}
	direct := func(ps *PubSub, p peer.ID) error {
		cn := linkConn(ps, p)
		if cn == nil {
			return errors.New("no link")
		}
		if cn.Stat().Limited {
			return fmt.Errorf("link on the relayed connection %v", cn.RemoteMultiaddr())
		}
		return nil
	}
	testnet.Eventually(t, 20*time.Second, func() error { return direct(sub.ps, pubH.ID()) })
	// What the race leaves: the publisher's link (re)opened on the relayed
	// connection, the one the subscriber's stream came in on, after the
	// direct connection was made.
	pub.ps.mu.Lock()
	rm := pub.ps.remoteLocked(subH.ID())
	if rm.out != nil {
		rm.out.close()
		rm.out = nil
	}
	pub.ps.openOnLocked(rm, nil, relayed, true)
	pub.ps.mu.Unlock()
	for _, x := range []struct {
		ps *PubSub
		p  peer.ID
	}{{pub.ps, subH.ID()}, {sub.ps, pubH.ID()}} {
		testnet.Eventually(t, 20*time.Second, func() error { return direct(x.ps, x.p) })
	}
	// The relay dies; what is published now goes the direct way.
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	n := c.len()
	testnet.Eventually(t, 20*time.Second, func() error {
		if c.len() > n {
			return nil
		}
		publish(t, pub.ps, topic, []byte("after the relay"))
		return errors.New("nothing arrived after the relay died")
	})
}
