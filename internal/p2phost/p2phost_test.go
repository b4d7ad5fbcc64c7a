package p2phost

import (
	"context"
	"io"
	"reflect"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/config"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/macula-io/macula/internal/testnet"
)

func TestMain(m *testing.M) { testnet.VerifyTestMain(m) }

// TestServiceLimitsAsLibp2p: the copy of go-libp2p's service limits gives
// the limits go-libp2p's own function gives (the test may import the root
// package; the binary does not).
func TestServiceLimitsAsLibp2p(t *testing.T) {
	ours, theirs := rcmgr.DefaultLimits, rcmgr.DefaultLimits
	SetDefaultServiceLimits(&ours)
	libp2p.SetDefaultServiceLimits(&theirs)
	if a, b := ours.Scale(1<<30, 4096), theirs.Scale(1<<30, 4096); !reflect.DeepEqual(a, b) {
		t.Errorf("service limits differ from go-libp2p's:\nours   %+v\ntheirs %+v", a.ToPartialLimitConfig(), b.ToPartialLimitConfig())
	}
}

func newHost(t *testing.T, opts ...Option) host.Host {
	t.Helper()
	listen := func(cfg *config.Config) error {
		cfg.ListenAddrs = []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/udp/0/quic-v1")}
		return nil
	}
	h, err := New(append([]Option{listen}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

// TestHostSpeaksQUICAndCircuits: the defaults make a host that listens on
// QUIC and nothing else (TCP, WebSocket, WebTransport and WebRTC addresses
// have no transport), and that reaches
// a peer through a circuit relay: a relayed connection is upgraded with the
// default security (TLS) and muxer (yamux), which is why those stay (the
// echo crosses both; without either the upgrade, and the connection,
// fails).
func TestHostSpeaksQUICAndCircuits(t *testing.T) {
	a, b := newHost(t), newHost(t)
	sw := a.Network().(*swarm.Swarm)
	for addr, want := range map[string]bool{
		"/ip4/127.0.0.1/udp/0/quic-v1": true, "/ip4/127.0.0.1/tcp/0": false, "/ip4/127.0.0.1/tcp/0/ws": false,
		"/ip4/127.0.0.1/udp/0/quic-v1/webtransport": false, "/ip4/127.0.0.1/udp/0/webrtc-direct": false,
	} {
		if got := sw.TransportForListening(ma.StringCast(addr)) != nil; got != want {
			t.Errorf("a transport for %s: %v, want %v", addr, got, want)
		}
	}

	relay := newHost(t, func(cfg *config.Config) error {
		// A relay serves once it holds itself public.
		public := network.ReachabilityPublic
		cfg.EnableRelayService, cfg.AutoNATConfig.ForceReachability = true, &public
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, h := range []host.Host{a, b} {
		if err := h.Connect(ctx, peer.AddrInfo{ID: relay.ID(), Addrs: relay.Addrs()}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := client.Reserve(ctx, b, peer.AddrInfo{ID: relay.ID(), Addrs: relay.Addrs()}); err != nil {
		t.Fatalf("reservation: %v", err)
	}
	const proto = "/p2phost-test/1"
	b.SetStreamHandler(proto, func(s network.Stream) {
		defer s.Close()
		_, _ = io.Copy(s, s)
	})
	circuit := ma.StringCast("/p2p/" + relay.ID().String() + "/p2p-circuit")
	if err := a.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: []ma.Multiaddr{circuit}}); err != nil {
		t.Fatalf("connecting through the relay: %v", err)
	}
	conns := a.Network().ConnsToPeer(b.ID())
	if len(conns) != 1 || !conns[0].Stat().Limited {
		t.Fatalf("connections to b: %d, want one limited (relayed)", len(conns))
	}
	s, err := a.NewStream(network.WithAllowLimitedConn(ctx, proto), b.ID(), proto)
	if err != nil {
		t.Fatalf("stream through the relay: %v", err)
	}
	defer s.Close()
	if _, err := s.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	_ = s.CloseWrite()
	got, err := io.ReadAll(s)
	if err != nil || string(got) != "ping" {
		t.Fatalf("echo through the relay: %q, %v", got, err)
	}
}
