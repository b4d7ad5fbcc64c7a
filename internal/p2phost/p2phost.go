// Package p2phost makes a node's libp2p host from go-libp2p's config
// package: go-libp2p's libp2p.New, without go-libp2p's root package.
//
// That package's defaults are package variables that hold every transport
// go-libp2p has (TCP, WebSocket, WebTransport, WebRTC with pion's whole
// stack) and the Noise handshake, so importing it links them all, 4 MB of
// code and tables in a binary that speaks QUIC only: pages that every
// macula-node process maps (docs/benchmarks.md, "A binary without what it
// does not use"). Here the defaults are the few a node
// needs: QUIC, TLS and yamux for relayed connections (a circuit is upgraded
// like a bare stream), an in-memory peerstore, the circuit v2 client, and
// go-libp2p's resource limits.
//
// Options are go-libp2p's own type (config.Option = libp2p.Option): a test
// may still pass libp2p's option functions.
package p2phost

import (
	"crypto/rand"

	"github.com/libp2p/go-libp2p/config"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/transport"
	"github.com/libp2p/go-libp2p/p2p/host/peerstore/pstoremem"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	tptu "github.com/libp2p/go-libp2p/p2p/net/upgrader"
	tls "github.com/libp2p/go-libp2p/p2p/security/tls"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"go.uber.org/fx"
)

// Option sets fields of the host's config.
type Option = config.Option

// New makes and starts a host: opts first, then a default for each part
// they left unset (the same rule as libp2p.New's fallbacks).
func New(opts ...Option) (host.Host, error) {
	var cfg config.Config
	if err := cfg.Apply(opts...); err != nil {
		return nil, err
	}
	if err := fallbacks(&cfg); err != nil {
		return nil, err
	}
	return cfg.NewNode()
}

// fallbacks fills what opts left unset.
func fallbacks(cfg *config.Config) error {
	if cfg.Transports == nil {
		cfg.Transports = []fx.Option{QUIC()}
	}
	if cfg.SecurityTransports == nil && !cfg.Insecure {
		cfg.SecurityTransports = []config.Security{{ID: tls.ID, Constructor: tls.New}}
	}
	if cfg.Muxers == nil {
		cfg.Muxers = []tptu.StreamMuxer{{ID: yamux.ID, Muxer: yamux.DefaultTransport}}
	}
	if cfg.PeerKey == nil {
		k, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			return err
		}
		cfg.PeerKey = k
	}
	if cfg.Peerstore == nil {
		ps, err := pstoremem.NewPeerstore()
		if err != nil {
			return err
		}
		cfg.Peerstore = ps
	}
	if !cfg.RelayCustom {
		cfg.RelayCustom, cfg.Relay = true, true
	}
	if cfg.ResourceManager == nil {
		limits := rcmgr.DefaultLimits
		SetDefaultServiceLimits(&limits)
		rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(limits.AutoScale()), rcmgr.WithMetricsDisabled())
		if err != nil {
			return err
		}
		cfg.ResourceManager = rm
	}
	if cfg.ConnManager == nil {
		cm, err := connmgr.NewConnManager(160, 192)
		if err != nil {
			return err
		}
		cfg.ConnManager = cm
	}
	if cfg.PrometheusRegisterer == nil {
		// Nobody reads go-libp2p's metrics here: the node exports its own.
		cfg.DisableMetrics = true
	}
	if !cfg.CustomUDPBlackHoleSuccessCounter && cfg.UDPBlackHoleSuccessCounter == nil {
		cfg.UDPBlackHoleSuccessCounter = &swarm.BlackHoleSuccessCounter{N: 100, MinSuccesses: 5, Name: "UDP"}
	}
	if !cfg.CustomIPv6BlackHoleSuccessCounter && cfg.IPv6BlackHoleSuccessCounter == nil {
		cfg.IPv6BlackHoleSuccessCounter = &swarm.BlackHoleSuccessCounter{N: 100, MinSuccesses: 5, Name: "IPv6"}
	}
	return nil
}

// QUIC is the fx option of go-libp2p's QUIC transport, as
// libp2p.Transport(quic.NewTransport) makes it.
func QUIC() fx.Option {
	return fx.Provide(fx.Annotate(quic.NewTransport,
		fx.As(new(transport.Transport)), fx.ResultTags(`group:"transport"`)))
}
