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
	strikes map[peer.ID]strike    // failed handshakes not yet refused
	members map[peer.ID]bool      // refused peers that are of the realm but have no membership
	now     func() time.Time      // set at construction, read-only after
}

func newGater() *gater {
	return &gater{refused: make(map[peer.ID]time.Time), strikes: make(map[peer.ID]strike), members: make(map[peer.ID]bool), now: time.Now}
}

type strike struct {
	n     int
	first time.Time
}

// maxStrikes is how many failed handshakes within the refusal time get a
// peer refused even when we could not tell why they failed: a peer of
// another realm often closes the connection before our side of the
// handshake can see that it speaks another realm.
const maxStrikes = 3

// strike counts a failed handshake of p and refuses p for d at the
// maxStrikes-th within d. It reports whether p is now refused.
func (g *gater) strike(p peer.ID, d time.Duration) bool {
	g.mu.Lock()
	now := g.now()
	s := g.strikes[p]
	if now.Sub(s.first) > d {
		s = strike{first: now}
	}
	s.n++
	if s.n < maxStrikes {
		if len(g.strikes) < maxRefused {
			g.strikes[p] = s
		}
		g.mu.Unlock()
		return false
	}
	delete(g.strikes, p)
	g.mu.Unlock()
	g.refuse(p, d)
	return true
}

// refuseNonMember refuses p for d as a peer without a membership grant.
func (g *gater) refuseNonMember(p peer.ID, d time.Duration) {
	g.refuse(p, d)
	g.mu.Lock()
	if _, ok := g.refused[p]; ok {
		g.members[p] = true
	}
	g.mu.Unlock()
}

// refusedNonMember reports whether p is refused for want of membership.
func (g *gater) refusedNonMember(p peer.ID) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.members[p]
}

func (g *gater) refuse(p peer.ID, d time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.members, p)
	now := g.now()
	if _, ok := g.refused[p]; !ok && len(g.refused) >= maxRefused {
		var oldest peer.ID
		var oldestT time.Time
		for q, t := range g.refused {
			if t.Before(now) {
				delete(g.refused, q)
				delete(g.members, q)
				continue
			}
			if oldest == "" || t.Before(oldestT) {
				oldest, oldestT = q, t
			}
		}
		if len(g.refused) >= maxRefused {
			delete(g.refused, oldest)
			delete(g.members, oldest)
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
		delete(g.members, p)
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
