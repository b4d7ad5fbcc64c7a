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
//
// It also keeps the peers the node knows are gone (they said goodbye or
// stopped answering): those are not dialed until they connect again (an
// inbound connection is accepted), so that nothing waits out a dial timeout
// on them; a bootstrap loop may still redial one (allowDial).
type gater struct {
	now func() time.Time // set at construction, read-only after

	// mu guards the fields below.
	mu       sync.Mutex
	refused  map[peer.ID]time.Time // until when
	strikes  map[peer.ID]strike    // failed handshakes not yet refused
	members  map[peer.ID]bool      // refused peers that are of the realm but have no membership
	departed map[peer.ID]time.Time // gone peers, until when they are not dialed
	allowed  map[peer.ID]int       // departed peers dialed anyway (bootstrap redials in flight)
}

func newGater() *gater {
	return &gater{refused: make(map[peer.ID]time.Time), strikes: make(map[peer.ID]strike), members: make(map[peer.ID]bool),
		departed: make(map[peer.ID]time.Time), allowed: make(map[peer.ID]int), now: time.Now}
}

// depart marks p gone for d: it is not dialed meanwhile.
func (g *gater) depart(p peer.ID, d time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	if _, ok := g.departed[p]; !ok && len(g.departed) >= maxRefused {
		for q, t := range g.departed {
			if t.Before(now) || len(g.departed) >= maxRefused {
				delete(g.departed, q)
			}
		}
	}
	g.departed[p] = now.Add(d)
}

// returned ends p's departure: it connected again.
func (g *gater) returned(p peer.ID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.departed, p)
}

// gone reports whether p is known to be gone.
func (g *gater) gone(p peer.ID) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.goneLocked(p)
}

func (g *gater) goneLocked(p peer.ID) bool {
	until, ok := g.departed[p]
	if ok && g.now().After(until) {
		delete(g.departed, p)
		return false
	}
	return ok
}

// allowDial lets the dials to p through while it is gone, until the
// returned function is called: a bootstrap loop redials a bootstrap peer
// that left, in case it is back.
func (g *gater) allowDial(p peer.ID) (done func()) {
	g.mu.Lock()
	g.allowed[p]++
	g.mu.Unlock()
	return func() {
		g.mu.Lock()
		if g.allowed[p]--; g.allowed[p] <= 0 {
			delete(g.allowed, p)
		}
		g.mu.Unlock()
	}
}

// dialable reports whether p may be dialed: not refused, and not gone
// unless allowed.
func (g *gater) dialable(p peer.ID) bool {
	if g.isRefused(p) {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return !g.goneLocked(p) || g.allowed[p] > 0
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

func (g *gater) InterceptPeerDial(p peer.ID) bool                                { return g.dialable(p) }
func (g *gater) InterceptAddrDial(p peer.ID, _ ma.Multiaddr) bool                { return g.dialable(p) }
func (g *gater) InterceptAccept(network.ConnMultiaddrs) bool                     { return true }
func (g *gater) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }
func (g *gater) InterceptSecured(_ network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	return !g.isRefused(p)
}
