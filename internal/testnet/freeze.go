package testnet

import (
	"net"
	"sync"
	"sync/atomic"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/config"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/p2p/transport/quicreuse"
	"github.com/quic-go/quic-go"
	"go.uber.org/fx"
)

// Freezer freezes the UDP sockets of the hosts made with its Option, as a
// stopped process (SIGSTOP, or kill -9 before QUIC notices) is frozen:
// while frozen they drop what arrives and send nothing. Locking a
// service's mutex is no model of that: the host's QUIC stack would still
// acknowledge packets, which is evidence of life to the liveness checks
// (internal/heard).
type Freezer struct {
	mu    sync.Mutex
	socks []*freezable
}

// Option gives a host libp2p's own QUIC connection manager over
// freezable sockets (and without its resource accounting of inbound
// connections).
func (f *Freezer) Option() libp2p.Option {
	listen := func(network string, laddr *net.UDPAddr) (net.PacketConn, error) {
		pc, err := net.ListenUDP(network, laddr)
		if err != nil {
			return nil, err
		}
		s := &freezable{PacketConn: pc}
		f.mu.Lock()
		f.socks = append(f.socks, s)
		f.mu.Unlock()
		return s, nil
	}
	return func(cfg *config.Config) error {
		cfg.QUICReuse = append(cfg.QUICReuse, fx.Provide(func(key quic.StatelessResetKey, tok quic.TokenGeneratorKey, rcmgr network.ResourceManager, lc fx.Lifecycle) (*quicreuse.ConnManager, error) {
			cm, err := quicreuse.NewConnManager(key, tok, quicreuse.OverrideListenUDP(listen), quicreuse.VerifySourceAddress(rcmgr.VerifySourceAddress))
			if err != nil {
				return nil, err
			}
			lc.Append(fx.StopHook(cm.Close))
			return cm, nil
		}))
		return nil
	}
}

// Freeze freezes every socket made so far.
func (f *Freezer) Freeze() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.socks {
		s.frozen.Store(true)
	}
}

// Thaw lets every socket made so far send and receive again.
func (f *Freezer) Thaw() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.socks {
		s.frozen.Store(false)
	}
}

// freezable is a UDP socket that drops everything while frozen.
type freezable struct {
	net.PacketConn
	frozen atomic.Bool
}

func (f *freezable) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, a, err := f.PacketConn.ReadFrom(b)
		if err != nil || !f.frozen.Load() {
			return n, a, err
		}
	}
}

func (f *freezable) WriteTo(b []byte, a net.Addr) (int, error) {
	if f.frozen.Load() {
		return len(b), nil
	}
	return f.PacketConn.WriteTo(b, a)
}
