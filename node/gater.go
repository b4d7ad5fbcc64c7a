package node

import (
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// maxRefused bounds the refusal list; past it, the entry that expires first
// is evicted, so a flood of identities cannot grow memory without bound.
const maxRefused = 4096

// gater refuses, for a while, peers that failed the realm handshake: they are
// neither dialed nor accepted until their refusal expires.
type gater struct {
	// mu guards refused.
	mu      sync.Mutex
	refused map[peer.ID]time.Time // until when
	now     func() time.Time      // set at construction, read-only after
}

func newGater() *gater {
	return &gater{refused: make(map[peer.ID]time.Time), now: time.Now}
}

func (g *gater) refuse(p peer.ID, d time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	if _, ok := g.refused[p]; !ok && len(g.refused) >= maxRefused {
		var oldest peer.ID
		var oldestT time.Time
		for q, t := range g.refused {
			if t.Before(now) {
				delete(g.refused, q)
				continue
			}
			if oldest == "" || t.Before(oldestT) {
				oldest, oldestT = q, t
			}
		}
		if len(g.refused) >= maxRefused {
			delete(g.refused, oldest)
		}
	}
	g.refused[p] = now.Add(d)
}

func (g *gater) isRefused(p peer.ID) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	until, ok := g.refused[p]
	if !ok {
		return false
	}
	if g.now().After(until) {
		delete(g.refused, p)
		return false
	}
	return true
}

func (g *gater) InterceptPeerDial(p peer.ID) bool                                { return !g.isRefused(p) }
func (g *gater) InterceptAddrDial(p peer.ID, _ ma.Multiaddr) bool                { return !g.isRefused(p) }
func (g *gater) InterceptAccept(network.ConnMultiaddrs) bool                     { return true }
func (g *gater) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }
func (g *gater) InterceptSecured(_ network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	return !g.isRefused(p)
}
