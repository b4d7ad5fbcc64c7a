package rpc

import (
	"context"
	"fmt"
	"slices"
	"time"

	p2pevent "github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// Procedures known from the links.
//
// A node that advertises procedures tells every connected peer that speaks
// the realm's rpc protocol, on its own stream to that peer (the one its
// calls to the peer use): an advertised-set frame with the whole list, and
// a new one whenever the list changes. The peer keeps the list while the
// stream lives. A caller therefore knows the procedures of its connected
// peers without asking the DHT: a call to one of them goes out at once, a
// withdrawal is known at once, and a peer that leaves takes its procedures
// with it. The DHT serves the providers that are not connected; its lookup
// runs in the background when the links already gave providers.

const (
	// maxAdsFrame bounds the procedures of one advertised-set or -add
	// frame (a longer list is a set frame and add frames).
	maxAdsFrame = 60 << 10
	// maxPeerAds bounds the procedures recorded for one peer; a stream
	// that announces more is closed.
	maxPeerAds = 1 << 16
	// linkOpenTimeout bounds opening a stream to a connected peer to tell
	// it our procedures.
	linkOpenTimeout = 10 * time.Second
)

// peerAds is what a linked peer advertises. Guarded by RPC.mu.
type peerAds struct {
	from  *serverConn         // the stream that carries the list
	procs map[string]struct{} // the list
	known bool                // a set frame arrived: procs is the whole list
}

// wakeAds asks the ads loop to tell the peers (new ones, or a new list).
func (x *RPC) wakeAds() {
	select {
	case x.adsWake <- struct{}{}:
	default:
	}
}

// adsLoop keeps every connected peer told of this node's procedures: it
// opens a stream to each peer that speaks the protocol while there is
// something to tell, and sends the current list on every stream that has
// not had it. Bursts of changes are folded into one list per stream.
func (x *RPC) adsLoop() {
	defer x.wg.Done()
	for {
		select {
		case <-x.ctx.Done():
			return
		case <-x.adsWake:
		}
		x.mu.Lock()
		gen := x.adsGen
		set := x.adsSet()
		var stale []*clientConn
		for _, c := range x.conns {
			if c.adsSent != gen {
				stale = append(stale, c)
			}
		}
		x.mu.Unlock()
		if len(set) > 0 {
			x.linkAll()
		}
		for _, c := range stale {
			c.sendAds(gen, set)
		}
	}
}

// adsSet returns this node's advertised procedures (internal ones are
// not announced), sorted.
func (x *RPC) adsSet() []string {
	out := x.Advertised()
	slices.Sort(out)
	return out
}

// linkAll opens a stream to every connected peer that speaks the protocol
// and has none from us yet. The opened streams get the list from the ads
// loop.
func (x *RPC) linkAll() {
	for _, p := range x.h.Network().Peers() {
		x.mu.Lock()
		_, has := x.conns[p]
		_, busy := x.dialing[p]
		closed := x.closed
		x.mu.Unlock()
		if has || busy || closed {
			continue
		}
		if ok, err := x.h.Peerstore().SupportsProtocols(p, x.proto); err != nil || len(ok) == 0 {
			continue
		}
		x.wg.Add(1)
		go func() {
			defer x.wg.Done()
			ctx, cancel := context.WithTimeout(x.ctx, linkOpenTimeout)
			defer cancel()
			if _, err := x.conn(network.WithNoDial(ctx, "macula rpc link"), p); err != nil && x.ctx.Err() == nil {
				x.log.Debug("rpc: cannot link to peer", "peer", p, "err", err)
			}
		}()
	}
}

// sendAds sends the list set, of generation gen, unless c has had it.
// adsMu keeps two senders from interleaving their frames.
func (c *clientConn) sendAds(gen uint64, set []string) {
	c.adsMu.Lock()
	defer c.adsMu.Unlock()
	if c.adsSent == gen {
		return
	}
	typ := frameAdsSet
	rest := set
	for first := true; first || len(rest) > 0; first = false {
		b := startFrame(typ)
		*b, rest = appendProcedures(*b, rest, maxAdsFrame)
		sealFrame(b)
		if err := c.w.send(b); err != nil {
			return
		}
		typ = frameAdsAdd
	}
	c.x.mu.Lock()
	c.adsSent = gen
	c.x.mu.Unlock()
}

// watchPeers opens links to peers as they are identified as speakers of
// the protocol, while this node advertises something.
func (x *RPC) watchPeers(sub p2pevent.Subscription) {
	defer x.wg.Done()
	defer sub.Close()
	for {
		select {
		case <-x.ctx.Done():
			return
		case e, ok := <-sub.Out():
			if !ok {
				return
			}
			var protos []protocol.ID
			switch e := e.(type) {
			case p2pevent.EvtPeerIdentificationCompleted:
				protos = e.Protocols
			case p2pevent.EvtPeerProtocolsUpdated:
				protos = e.Added
			}
			if slices.Contains(protos, x.proto) && len(x.Advertised()) > 0 {
				x.wakeAds()
			}
		}
	}
}

// onAds records the procedures a peer advertised on its stream sc: the
// whole list (set) or more of it.
func (x *RPC) onAds(sc *serverConn, procs []string, set bool) error {
	for _, p := range procs {
		if err := x.validateProcedure(p); err != nil {
			return fmt.Errorf("%w: advertised procedure: %v", errMalformed, err)
		}
	}
	p := sc.caller.PeerID
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		return nil
	}
	cur := x.peerAds[p]
	if set {
		// The whole list; on a newer stream of the peer, it replaces the
		// old stream's.
		if len(procs) > maxPeerAds {
			return fmt.Errorf("%w: more than %d advertised procedures", errMalformed, maxPeerAds)
		}
		x.replaceAdsLocked(p, cur, &peerAds{from: sc, procs: make(map[string]struct{}, len(procs)), known: true}, procs)
		return nil
	}
	if cur == nil || cur.from != sc {
		return fmt.Errorf("%w: advertised-add frame before the set", errMalformed)
	}
	if len(cur.procs)+len(procs) > maxPeerAds {
		return fmt.Errorf("%w: more than %d advertised procedures", errMalformed, maxPeerAds)
	}
	for _, proc := range procs {
		if _, ok := cur.procs[proc]; ok {
			continue
		}
		cur.procs[proc] = struct{}{}
		x.linkLocked(proc, p, true)
	}
	return nil
}

// replaceAdsLocked replaces p's list cur (nil: none) with next, holding
// procs, and updates the provider sets of every procedure that changed.
func (x *RPC) replaceAdsLocked(p peer.ID, cur, next *peerAds, procs []string) {
	if next != nil {
		for _, proc := range procs {
			next.procs[proc] = struct{}{}
		}
		x.peerAds[p] = next
	} else {
		delete(x.peerAds, p)
	}
	if cur != nil {
		for proc := range cur.procs {
			if next == nil {
				x.linkLocked(proc, p, false)
			} else if _, ok := next.procs[proc]; !ok {
				x.linkLocked(proc, p, false)
			}
		}
	}
	if next != nil {
		for proc := range next.procs {
			if cur == nil {
				x.linkLocked(proc, p, true)
			} else if _, ok := cur.procs[proc]; !ok {
				x.linkLocked(proc, p, true)
			}
		}
	}
	// Found providers are filtered by the lists: refresh every set p is in.
	for proc, ps := range x.providers {
		if slices.Contains(ps.found, p) {
			x.setProvidersLocked(proc, ps.found, ps.fetched)
		}
	}
}

// linkLocked adds p to (or removes it from) the linked providers of proc.
func (x *RPC) linkLocked(proc string, p peer.ID, add bool) {
	linked := x.linked[proc]
	has := slices.Contains(linked, p)
	switch {
	case add && !has:
		linked = append(slices.Clone(linked), p)
		slices.Sort(linked)
	case !add && has:
		linked = slices.DeleteFunc(slices.Clone(linked), func(q peer.ID) bool { return q == p })
	default:
		return
	}
	if len(linked) == 0 {
		delete(x.linked, proc)
	} else {
		x.linked[proc] = linked
	}
	var found []peer.ID
	var fetched time.Time
	if ps := x.providers[proc]; ps != nil {
		found, fetched = ps.found, ps.fetched
	}
	x.setProvidersLocked(proc, found, fetched)
}

// dropAds forgets what p advertised on sc, which ended.
func (x *RPC) dropAds(sc *serverConn) {
	p := sc.caller.PeerID
	x.mu.Lock()
	defer x.mu.Unlock()
	if cur := x.peerAds[p]; cur != nil && cur.from == sc {
		x.replaceAdsLocked(p, cur, nil, nil)
	}
}

// PeerGone drops p, which left the realm or stopped answering, from every
// provider list at once, and keeps it out of them should a later DHT lookup
// name it again (its records outlive it), until it connects again.
func (x *RPC) PeerGone(p peer.ID) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		return
	}
	now := time.Now()
	if _, ok := x.gone[p]; !ok && len(x.gone) >= maxGone {
		for q, until := range x.gone {
			if now.After(until) || len(x.gone) >= maxGone {
				delete(x.gone, q)
			}
		}
	}
	x.gone[p] = now.Add(goneFor)
	x.replaceAdsLocked(p, x.peerAds[p], nil, nil)
	for proc, ps := range x.providers {
		if slices.Contains(ps.found, p) {
			x.setProvidersLocked(proc, ps.found, ps.fetched)
		}
	}
}

const (
	// goneFor is how long a peer declared gone (PeerGone) is left out of
	// every provider list, unless it connects again first: long enough for
	// its DHT records not to bring it back at once, short enough that a
	// peer declared dead by mistake (a network blip) is called again.
	goneFor = time.Minute
	// maxGone bounds the peers remembered as gone.
	maxGone = 4096
)

// goneLocked reports whether p was declared gone and has not connected
// since.
func (x *RPC) goneLocked(p peer.ID) bool {
	until, ok := x.gone[p]
	if ok && time.Now().After(until) {
		delete(x.gone, p)
		return false
	}
	return ok
}
