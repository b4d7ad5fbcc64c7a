package nat

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	libp2pquic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/quicreuse"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
	"go.uber.org/fx"

	"github.com/macula-io/macula/internal/testnet"
)

// quicHost starts a QUIC-only libp2p host on 127.0.0.1 and returns it with
// its quicreuse.ConnManager.
func quicHost(t *testing.T, listen string) (host.Host, *quicreuse.ConnManager) {
	t.Helper()
	var cm *quicreuse.ConnManager
	h, err := libp2p.New(
		libp2p.ListenAddrStrings(listen),
		libp2p.Transport(libp2pquic.NewTransport),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
		libp2p.WithFxOption(fx.Populate(&cm)),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	if cm == nil {
		t.Fatal("fx.Populate gave no ConnManager")
	}
	return h, cm
}

func quicPort(t *testing.T, h host.Host) netip.AddrPort {
	t.Helper()
	for _, a := range h.Network().ListenAddresses() {
		if _, err := a.ValueForProtocol(ma.P_QUIC_V1); err != nil {
			continue
		}
		_, hostport, err := manet.DialArgs(a)
		if err != nil {
			t.Fatal(err)
		}
		return netip.MustParseAddrPort(hostport)
	}
	t.Fatal("no QUIC listen address")
	return netip.AddrPort{}
}

// STUN over the QUIC socket: the mapped port is the QUIC listener's, QUIC
// keeps working beside it, and the node answers STUN on that socket too.
func TestSharedQUICSocket(t *testing.T) {
	// 0.0.0.0 is the node's default listen address.
	for _, l := range []string{"/ip4/127.0.0.1/udp/0/quic-v1", "/ip4/0.0.0.0/udp/0/quic-v1"} {
		t.Run(l, func(t *testing.T) { testSharedQUICSocket(t, l) })
	}
}

func testSharedQUICSocket(t *testing.T, listenAddr string) {
	stunServer := rfc5780Server(t, ServerConfig{})
	h, cm := quicHost(t, listenAddr)
	listen := quicPort(t, h)
	if listen.Addr().IsUnspecified() {
		listen = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), listen.Port())
	}

	conn, err := SharedQUICConn(cm, h.Network().ListenAddresses())
	if err != nil {
		t.Fatal(err)
	}
	cfg := fastConfig(stunServer.Addr().String())
	cfg.Respond = true
	p, err := New(cfg, conn)
	if err != nil {
		conn.Close()
		t.Fatal(err)
	}
	defer p.Close()
	info, err := probe(t, p)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := info.PublicAddr()
	if pub != listen {
		t.Fatalf("STUN mapped address %v, QUIC listener %v: not the same socket", pub, listen)
	}
	if info.Type != TypeOpen || info.Filtering != BehaviorEndpointIndependent {
		t.Errorf("info %+v", info)
	}
	t.Logf("QUIC listens on %v; STUN over the shared socket maps to %v", listen, pub)

	// QUIC still works on the socket: another host pings this one.
	other, _ := quicHost(t, "/ip4/127.0.0.1/udp/0/quic-v1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	target := ma.StringCast("/ip4/127.0.0.1/udp/" + strconv.Itoa(int(listen.Port())) + "/quic-v1")
	if err := other.Connect(ctx, peer.AddrInfo{ID: h.ID(), Addrs: []ma.Multiaddr{target}}); err != nil {
		t.Fatalf("QUIC connect beside the prober: %v", err)
	}
	if res := <-ping.Ping(ctx, other, h.ID()); res.Error != nil {
		t.Fatalf("ping: %v", res.Error)
	}

	// The node answers STUN on its QUIC port: another prober uses it as
	// its (one-socket) server.
	q := newProber(t, fastConfig(listen.String()))
	qi, err := probe(t, q)
	if err != nil {
		t.Fatalf("STUN to the QUIC port: %v", err)
	}
	if pub, _ := qi.PublicAddr(); pub != q.LocalAddr() {
		t.Errorf("the node's responder mapped %v, want %v", pub, q.LocalAddr())
	}
	if p.Stats().Responses == 0 {
		t.Error("responder counted no response")
	}

	// Junk on the QUIC port that is neither QUIC nor STUN is dropped.
	junk := udp(t, "127.0.0.1:0")
	before := p.ep.ignoredCount()
	junk.WriteTo([]byte{0x01, 0x02, 0x03}, net.UDPAddrFromAddrPort(listen))
	testnet.Eventually(t, 2*time.Second, func() error {
		if p.ep.ignoredCount() == before {
			return errors.New("junk datagram not seen as ignored")
		}
		return nil
	})
	if _, err := probe(t, p); err != nil {
		t.Errorf("probe after junk: %v", err)
	}
}

func TestAddrsFactory(t *testing.T) {
	base := []ma.Multiaddr{ma.StringCast("/ip4/10.0.3.2/udp/4000/quic-v1")}
	for _, tc := range []struct {
		info Info
		want string
	}{
		{Info{Mapping: BehaviorEndpointIndependent, PublicIP: netip.MustParseAddr("8.0.0.3"), PublicPort: 4000}, "/ip4/8.0.0.3/udp/4000/quic-v1"},
		{Info{Mapping: BehaviorUnknown, PublicIP: netip.MustParseAddr("2001:db8::1"), PublicPort: 4000}, "/ip6/2001:db8::1/udp/4000/quic-v1"},
		{Info{Mapping: BehaviorAddressAndPortDependent, PublicIP: netip.MustParseAddr("8.0.0.4"), PublicPort: 5555}, ""},
		{Info{}, ""},
	} {
		got := AddrsFactory(func() Info { return tc.info })(base)
		switch {
		case tc.want == "" && len(got) != 1:
			t.Errorf("%+v: %v, want only the base address", tc.info, got)
		case tc.want != "" && (len(got) != 2 || got[1].String() != tc.want):
			t.Errorf("%+v: %v, want base + %s", tc.info, got, tc.want)
		}
		if len(base) != 1 {
			t.Fatal("factory changed its input")
		}
	}
	// Not added twice.
	info := Info{Mapping: BehaviorEndpointIndependent, PublicIP: netip.MustParseAddr("10.0.3.2"), PublicPort: 4000}
	if got := AddrsFactory(func() Info { return info })(base); len(got) != 1 {
		t.Errorf("duplicate added: %v", got)
	}
}
