package nat

import (
	"fmt"
	"net"
	"slices"

	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// PacketConnSharer gives a net.PacketConn on the socket of a QUIC listener,
// for traffic that is not QUIC. go-libp2p's *quicreuse.ConnManager is one
// (get it with libp2p.WithFxOption(fx.Populate(&cm))); its reuseport must be
// on, the default.
type PacketConnSharer interface {
	SharedNonQUICPacketConn(network string, laddr *net.UDPAddr) (net.PacketConn, error)
}

// SharedQUICConn returns a conn on the UDP socket of the first QUIC listen
// address in listen (a host's Network().ListenAddresses(), which carry the
// bound ports, not its Addrs()), preferring IPv4. Give it to New: the Prober
// owns it then, and closing it releases the socket's reference, not the
// socket.
func SharedQUICConn(s PacketConnSharer, listen []ma.Multiaddr) (net.PacketConn, error) {
	ordered := slices.Clone(listen)
	slices.SortStableFunc(ordered, func(a, b ma.Multiaddr) int {
		_, errA := a.ValueForProtocol(ma.P_IP4)
		_, errB := b.ValueForProtocol(ma.P_IP4)
		switch {
		case errA == nil && errB != nil:
			return -1
		case errA != nil && errB == nil:
			return 1
		}
		return 0
	})
	for _, a := range ordered {
		if _, err := a.ValueForProtocol(ma.P_QUIC_V1); err != nil {
			continue
		}
		if _, err := a.ValueForProtocol(ma.P_WEBTRANSPORT); err == nil {
			continue
		}
		network, hostport, err := manet.DialArgs(a)
		if err != nil {
			continue
		}
		laddr, err := net.ResolveUDPAddr(network, hostport)
		if err != nil {
			continue
		}
		return s.SharedNonQUICPacketConn(network, laddr)
	}
	return nil, fmt.Errorf("%w: no QUIC listen address among %v", ErrConfig, listen)
}

// QUICMultiaddr returns /ip4/<public_ip>/udp/<public_port>/quic-v1 (or
// /ip6/...), and false when the address should not be advertised: there is
// none, or the mapping depends on the destination (symmetric NAT), so that
// other peers would reach a port that is not open for them.
func (i Info) QUICMultiaddr() (ma.Multiaddr, bool) {
	pub, ok := i.PublicAddr()
	if !ok {
		return nil, false
	}
	if i.Mapping == BehaviorAddressDependent || i.Mapping == BehaviorAddressAndPortDependent {
		return nil, false
	}
	udp, err := manet.FromNetAddr(net.UDPAddrFromAddrPort(pub))
	if err != nil {
		return nil, false
	}
	return udp.Encapsulate(ma.StringCast("/quic-v1")), true
}

// AddrsFactory returns a libp2p AddrsFactory (libp2p.AddrsFactory) that adds
// the STUN-derived QUIC address from info() to the host's addresses. info is
// called on every call of the factory; a Prober's Info fits, behind an
// indirection while the Prober does not exist yet (it needs the host's
// socket, and the factory is given before the host exists).
func AddrsFactory(info func() Info) func([]ma.Multiaddr) []ma.Multiaddr {
	return func(addrs []ma.Multiaddr) []ma.Multiaddr {
		pub, ok := info().QUICMultiaddr()
		if !ok {
			return addrs
		}
		for _, a := range addrs {
			if a.Equal(pub) {
				return addrs
			}
		}
		return append(slices.Clip(addrs), pub)
	}
}
