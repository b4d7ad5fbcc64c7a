package rpc

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// lookupLimit bounds the providers one DHT lookup collects.
const lookupLimit = 32

// providerSet is the cached provider list of one procedure.
type providerSet struct {
	peers      []peer.ID // never contains this node
	fetched    time.Time
	refreshing bool
	next       atomic.Uint64 // round robin position
}

// knownProviderLocked reports whether p is in any cached provider list.
func (x *RPC) knownProviderLocked(p peer.ID) (string, bool) {
	for proc, ps := range x.providers {
		for _, q := range ps.peers {
			if q == p {
				return proc, true
			}
		}
	}
	return "", false
}

// choose picks a provider of procedure that is not in tried. It looks the
// procedure up in the DHT when nothing is cached, or when force is set and
// the cache has nobody left; a stale cache is used and refreshed in the
// background. fresh reports whether this call did a lookup.
func (x *RPC) choose(ctx context.Context, procedure string, policy Policy, tried map[peer.ID]bool, force bool) (p peer.ID, fresh bool, err error) {
	x.mu.Lock()
	ps := x.providers[procedure]
	if ps != nil && time.Since(ps.fetched) > x.cfg.ProviderTTL && !ps.refreshing {
		ps.refreshing = true
		x.wg.Add(1)
		go x.refresh(procedure)
	}
	x.mu.Unlock()
	if ps == nil {
		if err := x.lookup(ctx, procedure); err != nil {
			return "", true, err
		}
		fresh = true
	}
	if p, ok := x.pick(procedure, policy, tried); ok {
		return p, fresh, nil
	}
	if force && !fresh {
		if err := x.lookup(ctx, procedure); err != nil {
			return "", true, err
		}
		fresh = true
		if p, ok := x.pick(procedure, policy, tried); ok {
			return p, fresh, nil
		}
	}
	return "", fresh, fmt.Errorf("%w: %s", ErrNotFound, procedure)
}

// pick applies the policy to the usable providers: not tried, and not
// avoided unless every one is.
func (x *RPC) pick(procedure string, policy Policy, tried map[peer.ID]bool) (peer.ID, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	ps := x.providers[procedure]
	if ps == nil {
		return "", false
	}
	now := time.Now()
	var usable, avoided []peer.ID
	for _, p := range ps.peers {
		if tried[p] {
			continue
		}
		if until, ok := x.avoid[p]; ok && now.Before(until) {
			avoided = append(avoided, p)
			continue
		}
		usable = append(usable, p)
	}
	if len(usable) == 0 {
		usable = avoided
	}
	if len(usable) == 0 {
		return "", false
	}
	switch policy {
	case Random:
		return usable[rand.IntN(len(usable))], true
	case LeastInFlight:
		best := usable[0]
		for _, p := range usable[1:] {
			if x.inflight[p] < x.inflight[best] {
				best = p
			}
		}
		return best, true
	default:
		return usable[int(ps.next.Add(1)-1)%len(usable)], true
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
	old := x.providers[procedure]
	ps := &providerSet{peers: peers, fetched: time.Now()}
	if old != nil {
		ps.next.Store(old.next.Load())
	}
	if len(peers) == 0 {
		delete(x.providers, procedure)
		return fmt.Errorf("%w: %s", ErrNotFound, procedure)
	}
	x.providers[procedure] = ps
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
	kept := ps.peers[:0:0]
	for _, q := range ps.peers {
		if q != p {
			kept = append(kept, q)
		}
	}
	if len(kept) == 0 {
		delete(x.providers, procedure)
		return
	}
	nps := &providerSet{peers: kept, fetched: ps.fetched}
	nps.next.Store(ps.next.Load())
	x.providers[procedure] = nps
}

// markUnreachable keeps p out of the choice for AvoidFor.
func (x *RPC) markUnreachable(_ string, p peer.ID) {
	x.mu.Lock()
	x.avoid[p] = time.Now().Add(x.cfg.AvoidFor)
	x.mu.Unlock()
}
