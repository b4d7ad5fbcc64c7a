package rpc

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// lookupLimit bounds the providers one DHT lookup collects.
const lookupLimit = 32

// providerSet is what a caller knows of the providers of one procedure:
// the connected peers that advertise it on their links (ads.go) and the
// providers its last DHT lookup found. Replaced, never changed, under
// RPC.mu (but for the round robin position and refreshing).
type providerSet struct {
	peers      []peer.ID // linked, then found: what pick chooses among; never this node
	found      []peer.ID // from the last DHT lookup
	fetched    time.Time // when found was looked up; zero: never
	refreshing bool
	next       atomic.Uint64 // round robin position
}

// setProvidersLocked makes procedure's provider set from its linked
// providers and found, the providers of a DHT lookup made at fetched (zero:
// none yet). A found provider whose link says it does not advertise the
// procedure is left out: its DHT record outlived its advertisement. The
// round robin position is kept. With nobody left the set is removed, so
// that the next call looks the procedure up again.
func (x *RPC) setProvidersLocked(procedure string, found []peer.ID, fetched time.Time) {
	old := x.providers[procedure]
	linked := x.linked[procedure]
	peers := make([]peer.ID, 0, len(linked)+len(found))
	peers = append(peers, linked...)
	for _, q := range found {
		if q == x.self.PeerID || slices.Contains(linked, q) || x.goneLocked(q) {
			continue
		}
		if ads := x.peerAds[q]; ads != nil && ads.known {
			continue // its link lists what it advertises, and this is not among it
		}
		peers = append(peers, q)
	}
	if len(peers) == 0 {
		delete(x.providers, procedure)
		return
	}
	ps := &providerSet{peers: peers, found: found, fetched: fetched}
	if old != nil {
		ps.next.Store(old.next.Load())
		ps.refreshing = old.refreshing
	}
	x.providers[procedure] = ps
}

// knownProviderLocked reports whether p is in any provider list.
func (x *RPC) knownProviderLocked(p peer.ID) (string, bool) {
	for proc, ps := range x.providers {
		if slices.Contains(ps.peers, p) {
			return proc, true
		}
	}
	return "", false
}

// choose picks a provider of procedure that is not in tried, and returns
// the stream to it when there is one. It looks the procedure up in the DHT
// when nothing is cached, or when force is set and the cache has nobody
// left; a stale cache is used and refreshed in the background. fresh reports
// whether this call did a lookup.
func (x *RPC) choose(ctx context.Context, procedure string, o *callOpts, tried []peer.ID, force bool) (p peer.ID, c *clientConn, fresh bool, err error) {
	// The common case takes x.mu once: a cached provider list, a pick, and
	// the stream to the provider.
	x.mu.Lock()
	ps := x.providers[procedure]
	if ps != nil {
		now := o.start
		if now.IsZero() {
			now = time.Now()
		}
		if now.Sub(ps.fetched) > x.cfg.ProviderTTL && !ps.refreshing {
			ps.refreshing = true
			x.wg.Add(1)
			go x.refresh(procedure)
		}
		p, ok := x.pickLocked(ps, o.policy, tried, now)
		if ok {
			c = x.conns[p]
			x.mu.Unlock()
			return p, c, false, nil
		}
	}
	x.mu.Unlock()
	ctx = o.ctx(ctx) // the slow path: bound by the call's deadline
	if ps == nil {
		if err := x.lookup(ctx, procedure); err != nil {
			return "", nil, true, err
		}
		fresh = true
	}
	if p, ok := x.pick(procedure, o.policy, tried); ok {
		return p, nil, fresh, nil
	}
	if force && !fresh {
		if err := x.lookup(ctx, procedure); err != nil {
			return "", nil, true, err
		}
		fresh = true
		if p, ok := x.pick(procedure, o.policy, tried); ok {
			return p, nil, fresh, nil
		}
	}
	return "", nil, fresh, fmt.Errorf("%w: %s", ErrNotFound, procedure)
}

func (x *RPC) pick(procedure string, policy Policy, tried []peer.ID) (peer.ID, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	ps := x.providers[procedure]
	if ps == nil {
		return "", false
	}
	return x.pickLocked(ps, policy, tried, time.Now())
}

// pickLocked applies the policy to the usable providers: not tried, and not
// avoided unless every one is. It allocates nothing.
func (x *RPC) pickLocked(ps *providerSet, policy Policy, tried []peer.ID, now time.Time) (peer.ID, bool) {
	usable := func(p peer.ID, avoidedToo bool) bool {
		if slices.Contains(tried, p) {
			return false
		}
		if avoidedToo || len(x.avoid) == 0 {
			return true
		}
		until, ok := x.avoid[p]
		return !ok || !now.Before(until)
	}
	n, avoidedToo := 0, false
	for _, p := range ps.peers {
		if usable(p, false) {
			n++
		}
	}
	if n == 0 {
		avoidedToo = true
		for _, p := range ps.peers {
			if usable(p, true) {
				n++
			}
		}
	}
	if n == 0 {
		return "", false
	}
	nth := func(k int) peer.ID {
		for _, p := range ps.peers {
			if usable(p, avoidedToo) {
				if k == 0 {
					return p
				}
				k--
			}
		}
		panic("rpc: pick: provider list changed under the lock")
	}
	switch policy {
	case Random:
		return nth(rand.IntN(n)), true
	case LeastInFlight:
		// Ties are common (a call is counted only once it is sent), so the
		// scan starts at a rotating position: equal providers share the
		// load instead of the first one taking it all.
		var best peer.ID
		bestN := int64(-1)
		start := int(ps.next.Add(1) - 1)
		for i := range ps.peers {
			p := ps.peers[(start+i)%len(ps.peers)]
			if !usable(p, avoidedToo) {
				continue
			}
			var in int64
			if c := x.conns[p]; c != nil {
				in = c.inflight.Load()
			}
			if bestN < 0 || in < bestN {
				best, bestN = p, in
			}
		}
		return best, true
	default:
		return nth(int(ps.next.Add(1)-1) % n), true
	}
}

// lookup replaces the cached providers of procedure with a DHT lookup.
// Concurrent lookups of one procedure share one DHT query.
func (x *RPC) lookup(ctx context.Context, procedure string) error {
	x.mu.Lock()
	if wait, ok := x.lookups[procedure]; ok {
		x.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return ctxError(ctx)
		}
		x.mu.Lock()
		_, found := x.providers[procedure]
		x.mu.Unlock()
		if !found {
			return fmt.Errorf("%w: %s", ErrNotFound, procedure)
		}
		return nil
	}
	wait := make(chan struct{})
	x.lookups[procedure] = wait
	x.mu.Unlock()
	defer func() {
		x.mu.Lock()
		delete(x.lookups, procedure)
		close(wait)
		x.mu.Unlock()
	}()
	return x.lookupNow(ctx, procedure)
}

func (x *RPC) lookupNow(ctx context.Context, procedure string) error {
	if x.router == nil {
		return fmt.Errorf("%w: %s", ErrNotFound, procedure)
	}
	lctx, cancel := context.WithTimeout(ctx, x.cfg.DialTimeout)
	defer cancel()
	found, err := x.router.Lookup(lctx, providerKey(procedure), lookupLimit)
	if err != nil && len(found) == 0 {
		if ctx.Err() != nil {
			return ctxError(ctx)
		}
		return fmt.Errorf("%w: %s: lookup failed: %v", ErrNotFound, procedure, err)
	}
	var peers []peer.ID
	for _, ai := range found {
		if ai.ID == x.h.ID() {
			continue
		}
		x.addAddrs(ai)
		peers = append(peers, ai.ID)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.setProvidersLocked(procedure, peers, time.Now())
	if x.providers[procedure] == nil {
		return fmt.Errorf("%w: %s", ErrNotFound, procedure)
	}
	return nil
}

func (x *RPC) refresh(procedure string) {
	defer x.wg.Done()
	err := x.lookup(x.ctx, procedure)
	x.mu.Lock()
	if ps := x.providers[procedure]; ps != nil {
		ps.refreshing = false
		if err != nil {
			ps.fetched = time.Now() // keep the old list a while longer
		}
	}
	x.mu.Unlock()
}

// forget removes p from procedure's providers: it said it does not serve it.
func (x *RPC) forget(procedure string, p peer.ID) {
	x.mu.Lock()
	defer x.mu.Unlock()
	ps := x.providers[procedure]
	if ps == nil {
		return
	}
	if linked := x.linked[procedure]; slices.Contains(linked, p) {
		// Its link will say so too (it withdrew while we called).
		x.linked[procedure] = slices.DeleteFunc(slices.Clone(linked), func(q peer.ID) bool { return q == p })
	}
	x.setProvidersLocked(procedure, slices.DeleteFunc(slices.Clone(ps.found), func(q peer.ID) bool { return q == p }), ps.fetched)
}

// markUnreachable keeps p out of the choice for AvoidFor.
func (x *RPC) markUnreachable(_ string, p peer.ID) {
	x.mu.Lock()
	x.avoid[p] = time.Now().Add(x.cfg.AvoidFor)
	x.mu.Unlock()
}
