package node

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	p2pevent "github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/p2p/host/eventbus"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/transport/quicreuse"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/macula-io/macula/event"
	"github.com/macula-io/macula/nat"
	"github.com/macula-io/macula/nat/punch"
)

// natState is the node's NAT prober: STUN from the QUIC socket itself, so the
// mapping it learns is the one QUIC traffic gets, and a STUN responder on the
// same socket, so that every Macula node is a STUN server for its mesh.
type natState struct {
	cm     *quicreuse.ConnManager     // filled by fx when the host is built
	prober atomic.Pointer[nat.Prober] // nil until started
	last   atomic.Pointer[nat.Info]   // the latest finished probe
}

// info returns the latest NAT information (zero before the first probe).
func (s *natState) info() nat.Info {
	if p := s.prober.Load(); p != nil {
		return p.Info()
	}
	return nat.Info{Type: nat.TypeUnknown}
}

// stunServers lists the configured STUN servers and, after them, the
// bootstrap peers' QUIC sockets: Macula nodes answer STUN there.
func stunServers(cfg []string, bootstrap []peer.AddrInfo) []string {
	out := append([]string(nil), cfg...)
	seen := map[string]bool{}
	for _, s := range out {
		seen[s] = true
	}
	for _, ai := range bootstrap {
		for _, a := range ai.Addrs {
			if _, err := a.ValueForProtocol(ma.P_QUIC_V1); err != nil {
				continue
			}
			_, hostport, err := manet.DialArgs(a)
			if err != nil || seen[hostport] {
				continue
			}
			if host, _, err := net.SplitHostPort(hostport); err != nil || net.ParseIP(host) == nil {
				continue
			}
			seen[hostport] = true
			out = append(out, hostport)
		}
	}
	if len(out) > 16 {
		out = out[:16]
	}
	return out
}

// startNAT starts the prober on the host's QUIC socket. A failure here is
// not fatal: the node works without knowing its NAT, and says so in Info.
func (n *Node) startNAT() {
	if n.nat.cm == nil {
		n.log.Warn("no QUIC connection manager; NAT probing is off")
		return
	}
	conn, err := nat.SharedQUICConn(n.nat.cm, n.host.Network().ListenAddresses())
	if err != nil {
		n.log.Warn("NAT probing is off", "err", err)
		return
	}
	cfg := nat.DefaultConfig()
	cfg.Servers = stunServers(n.cfg.STUN, n.cfg.bootstrap)
	if n.cfg.NATInterval != 0 {
		cfg.Interval = n.cfg.NATInterval
	}
	cfg.Respond = true
	cfg.Logger = n.log
	cfg.OnUpdate = func(i nat.Info) {
		if n.events.Wants(event.NATProbe) {
			public := ""
			if ap, ok := i.PublicAddr(); ok {
				public = ap.String()
			}
			n.events.Emit(event.Event{Kind: event.NATProbe, Outcome: string(i.Type), Addr: public, Reason: i.Error,
				Duration: time.Duration(i.DurationMS * float64(time.Millisecond))})
		}
		prev := n.nat.last.Swap(&i)
		if prev == nil || prev.Type != i.Type || prev.PublicIP != i.PublicIP || prev.PublicPort != i.PublicPort {
			public := ""
			if ap, ok := i.PublicAddr(); ok {
				public = ap.String()
			}
			n.log.Info("NAT probed", "type", i.Type, "public", public, "err", i.Error)
			n.events.Emit(event.Event{Kind: event.NATChanged, Outcome: string(i.Type), Addr: public, Reason: i.Error})
		}
	}
	p, err := nat.New(cfg, conn)
	if err != nil {
		conn.Close()
		n.log.Warn("NAT probing is off", "err", err)
		return
	}
	n.nat.prober.Store(p)
	// Probe again when the host's own addresses change (a new interface, a
	// new local IP): the mapping may have changed with them.
	sub, err := n.host.EventBus().Subscribe(new(p2pevent.EvtLocalAddressesUpdated), eventbus.Name("macula-nat"))
	if err != nil {
		n.log.Warn("NAT: no address change events; probing on the timer only", "err", err)
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer sub.Close()
		var last string
		for {
			select {
			case <-n.ctx.Done():
				return
			case _, ok := <-sub.Out():
				if !ok {
					return
				}
				// The host folds our own STUN address into its addresses,
				// so only a change of the interface addresses counts.
				ifaces, err := n.host.Network().InterfaceListenAddresses()
				if err != nil {
					continue
				}
				// Birthday probing's listeners are no change.
				key := fmt.Sprint(n.withoutPunchListeners(ifaces))
				if last != "" && key != last {
					n.log.Info("local addresses changed; probing the NAT again", "addrs", key)
					p.Reprobe()
				}
				last = key
			}
		}
	}()
}

// NAT returns what the node knows of its NAT: type, mapping and filtering
// behaviour, public address, hairpin, when it was measured, the last error.
func (n *Node) NAT() nat.Info { return n.nat.info() }

// ReprobeNAT asks for a new NAT probe now (it runs in the background).
func (n *Node) ReprobeNAT() {
	if p := n.nat.prober.Load(); p != nil {
		p.Reprobe()
	}
}

func (n *Node) closeNAT() error {
	if p := n.nat.prober.Load(); p != nil {
		return p.Close()
	}
	return nil
}

// startPunch starts the NAT-aware punching service (nat/punch) on the host;
// it attaches to the DCUtR filter given to the host.
func (n *Node) startPunch() error {
	cfg := punch.Config{
		Realm:    n.cfg.Realm,
		Self:     n.NAT,
		Verified: n.waitVerified,
		Filter:   n.dcutr,
		Logger:   n.log,
	}
	if n.nat.cm != nil {
		cfg.Sockets = n.nat.cm
	}
	p, err := punch.New(n.host, cfg)
	if err != nil {
		return err
	}
	n.punch = p
	return nil
}

func (n *Node) closePunch() error {
	if n.punch != nil {
		return n.punch.Close()
	}
	return nil
}

// withoutPunchListeners drops the punch service's extra listeners (birthday
// probing's) from addrs.
func (n *Node) withoutPunchListeners(addrs []ma.Multiaddr) []ma.Multiaddr {
	if n.punch == nil {
		return addrs
	}
	return n.punch.WithoutListeners(addrs)
}

// waitVerified waits until p is a verified peer of the realm, or ctx ends,
// or p has no connection left. A relayed connection counts: the punches
// start on one, whose Connectedness is Limited, not Connected.
func (n *Node) waitVerified(ctx context.Context, p peer.ID) bool {
	gone := func() bool { return n.host.Network().Connectedness(p) == network.NotConnected }
	_ = n.awaitPeer(ctx, p, func() bool { return n.IsPeer(p) || gone() }, false)
	return n.IsPeer(p)
}
