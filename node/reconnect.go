package node

import (
	"context"
	"errors"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/macula-io/macula/internal/backoff"
)

// dialTimeout bounds one dial of a bootstrap peer, handshake included.
const dialTimeout = 15 * time.Second

// maintain keeps the node connected to one bootstrap peer: it dials at
// start, and again after each disconnect (one that trim.go made waits
// until the node has no peer left), waiting ReconnectInterval doubled
// per failure (with jitter, capped at ReconnectMaxInterval); new chains
// (SetChains) end the wait at once. It gives up after MaxReconnectAttempts
// failures in a row (0: never), at once when the peer is of another realm,
// and after the first failure when DisableReconnect is set. A peer that
// refuses this node's membership is no reason to stop: the membership may
// be renewed.
func (n *Node) maintain(ai peer.AddrInfo, disconnected <-chan bool) {
	defer n.wg.Done()
	failures := 0
	joined := false
	for {
		if n.ctx.Err() != nil || n.isLeaving() {
			return
		}
		if n.host.Network().Connectedness(ai.ID) != network.Connected {
			n.mu.Lock()
			alone := n.upPeersLocked() == 0
			n.mu.Unlock()
			ctx, cancel := context.WithTimeout(n.ctx, dialTimeout)
			allowed := n.gater.allowDial(ai.ID) // also when it left or was refused: it may be back
			n.mu.Lock()
			rejoin := n.rejoin
			n.mu.Unlock()
			err := n.Connect(ctx, ai)
			allowed()
			cancel()
			if n.ctx.Err() != nil {
				return
			}
			if err != nil {
				failures++
				if errors.Is(err, ErrOtherRealm) {
					n.log.Error("bootstrap peer is of another realm; not dialing it again (check its --realm, and the --bootstrap address)", "peer", ai.ID, "err", err)
					return
				}
				if n.cfg.DisableReconnect || (n.cfg.MaxReconnectAttempts > 0 && failures >= n.cfg.MaxReconnectAttempts) {
					n.log.Error("giving up on bootstrap peer", "peer", ai.ID, "failures", failures, "err", err)
					return
				}
				wait := backoff.Wait(n.cfg.ReconnectInterval, n.cfg.ReconnectMaxInterval, failures)
				msg := "bootstrap peer unreachable"
				if errors.Is(err, errRefusedByPeer) {
					msg = "bootstrap peer refuses this node's membership; redialing when the node's --ucan chains change (SIGHUP) or after the wait"
				}
				n.log.Warn(msg, "peer", ai.ID, "failures", failures, "retry_in", wait.Round(time.Millisecond), "err", err)
				select {
				case <-n.ctx.Done():
					return
				case <-time.After(wait):
				case <-rejoin:
					failures = 0
				}
				continue
			}
			failures = 0
			// The routing table is refreshed and every key announced
			// again on joining, and on coming back from having no peer;
			// not on each redial while the node has peers: that dialed
			// dozens of peers per redial, whose connections were trimmed
			// and redialed in turn (a 50-node realm dialed 550
			// connections a minute, and growing).
			if !joined || alone {
				n.wg.Add(1)
				go n.refreshAfterJoin()
			}
			joined = true
		}
		select {
		case <-n.ctx.Done():
			return
		case trimmed := <-disconnected:
			// This node closed the connection as idle (trim.go): it is
			// not redialed while the node has other peers, so that a
			// bootstrap peer does not keep a connection to every node
			// that ever bootstrapped through it. The node losing its
			// last peer, or the peer's connection closing otherwise
			// (after it came back), redials it.
			for trimmed {
				n.log.Debug("bootstrap peer's idle connection closed; redialed when the node has no peer left", "peer", ai.ID)
				select {
				case <-n.ctx.Done():
					return
				case trimmed = <-disconnected:
				}
			}
			if n.cfg.DisableReconnect {
				n.log.Info("bootstrap peer dropped; reconnect is off", "peer", ai.ID)
				return
			}
			n.log.Info("bootstrap peer dropped; reconnecting", "peer", ai.ID)
			n.redials.Add(1)
		}
	}
}

// isLeaving reports whether Leave was called.
func (n *Node) isLeaving() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.leaving
}

// refreshAfterJoin fills the routing table through a newly joined bootstrap
// peer and re-announces provided keys, which had nowhere to go before.
func (n *Node) refreshAfterJoin() {
	defer n.wg.Done()
	ctx, cancel := context.WithTimeout(n.ctx, 30*time.Second)
	defer cancel()
	if err := n.dht.RefreshRoutingTable(ctx); err != nil && n.ctx.Err() == nil {
		n.log.Debug("routing table refresh failed", "err", err)
	}
	n.dht.Reprovide(ctx)
}
