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
// neither dialed nor accepted until their refusal expires. A peer refused
// for want of membership may still connect (it may have been given a grant
// since); a bootstrap loop may still dial a peer refused for repeated
// failures or membership (allowDial), since only another realm is final.
//
// It also keeps the peers the node knows are gone (they said goodbye or
// stopped answering): those are not dialed until they connect again (an
// inbound connection is accepted), so that nothing waits out a dial timeout
// on them; a bootstrap loop may still redial one (allowDial).
type gater struct {
	now func() time.Time // set at construction, read-only after

	// mu guards the fields below.
	mu       sync.Mutex
	refused  map[peer.ID]refusal
	strikes  map[peer.ID]strike    // failed handshakes not yet refused
	departed map[peer.ID]time.Time // gone peers, until when they are not dialed
	allowed  map[peer.ID]int       // peers dialed anyway (bootstrap redials in flight)
}

// refusal is why and until when a peer is refused.
type refusal struct {
	until time.Time
	why   refusalKind
}

type refusalKind uint8

const (
	refusedOtherRealm refusalKind = iota // it said so, or does not speak our realm's handshake
	refusedNonMember                     // no valid membership grant (secure realm)
	refusedStrikes                       // maxStrikes failed handshakes, cause unknown
)

func newGater() *gater {
	return &gater{refused: make(map[peer.ID]refusal), strikes: make(map[peer.ID]strike),
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

// allowDial lets the dials to p through while it is gone or refused for a
// reason other than another realm, until the returned function is called:
// a bootstrap loop redials its peer whatever happened, in case it is back.
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

// dialable reports whether p may be dialed.
func (g *gater) dialable(p peer.ID) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	allowed := g.allowed[p] > 0
	if r, ok := g.refusalLocked(p); ok && (r.why == refusedOtherRealm || !allowed) {
		return false
	}
	return !g.goneLocked(p) || allowed
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
	g.refuse(p, d, refusedStrikes)
	return true
}

// refuse refuses p for d, for why.
func (g *gater) refuse(p peer.ID, d time.Duration, why refusalKind) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	if _, ok := g.refused[p]; !ok && len(g.refused) >= maxRefused {
		var oldest peer.ID
		var oldestT time.Time
		for q, r := range g.refused {
			if r.until.Before(now) {
				delete(g.refused, q)
				continue
			}
			if oldest == "" || r.until.Before(oldestT) {
				oldest, oldestT = q, r.until
			}
		}
		if len(g.refused) >= maxRefused {
			delete(g.refused, oldest)
		}
	}
	g.refused[p] = refusal{until: now.Add(d), why: why}
}

// forgive ends the refusals of every peer refused for repeated failures or
// membership: this node's own membership was renewed, and those failures
// may have been its own.
func (g *gater) forgive() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for p, r := range g.refused {
		if r.why != refusedOtherRealm {
			delete(g.refused, p)
		}
	}
	clear(g.strikes)
}

// refusalOf returns p's refusal, if it is refused.
func (g *gater) refusalOf(p peer.ID) (refusal, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.refusalLocked(p)
}

func (g *gater) refusalLocked(p peer.ID) (refusal, bool) {
	r, ok := g.refused[p]
	if ok && g.now().After(r.until) {
		delete(g.refused, p)
		return refusal{}, false
	}
	return r, ok
}

func (g *gater) isRefused(p peer.ID) bool {
	_, ok := g.refusalOf(p)
	return ok
}

func (g *gater) InterceptPeerDial(p peer.ID) bool                                { return g.dialable(p) }
func (g *gater) InterceptAddrDial(p peer.ID, _ ma.Multiaddr) bool                { return g.dialable(p) }
func (g *gater) InterceptAccept(network.ConnMultiaddrs) bool                     { return true }
func (g *gater) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }

// InterceptSecured accepts a peer refused for want of membership when it
// dials us: it may present a grant given since (the handshake checks it).
func (g *gater) InterceptSecured(dir network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	if dir == network.DirOutbound {
		return g.dialable(p)
	}
	r, ok := g.refusalOf(p)
	return !ok || r.why == refusedNonMember
}
