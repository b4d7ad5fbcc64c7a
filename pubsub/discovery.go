package pubsub

import (
	"context"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// lookupKey is a DHT key that a publisher looks up for its topics.
// Guarded by PubSub.mu.
type lookupKey struct {
	refs     int       // cached topics that need it
	next     time.Time // when to look it up again; zero: at once
	inflight bool
}

// addKeysLocked counts a new topic's keys and reports whether one of them
// is new, so needs a lookup now.
func (ps *PubSub) addKeysLocked(keys []string) bool {
	fresh := false
	for _, k := range keys {
		lk := ps.keys[k]
		if lk == nil {
			lk = &lookupKey{}
			ps.keys[k] = lk
			fresh = true
		}
		lk.refs++
	}
	return fresh
}

// discoveryLoop looks up the interest keys of the topics this node
// publishes to, every InterestRefresh and at once for a new topic, and
// links to the subscriber nodes it finds. It also forgets topics that were
// not published to for idleRefreshes periods.
func (ps *PubSub) discoveryLoop() {
	defer ps.wg.Done()
	sem := make(chan struct{}, maxLookups)
	t := time.NewTimer(ps.cfg.InterestRefresh)
	defer t.Stop()
	nextExpire := time.Now().Add(ps.cfg.InterestRefresh)
	for {
		select {
		case <-ps.ctx.Done():
			return
		case <-t.C:
		case <-ps.wakeLookup:
		}
		ps.discoveryRounds.Add(1)
		now := time.Now()
		switch {
		case nextExpire.IsZero(): // woken from idleDiscovery's sleep
			nextExpire = now.Add(ps.cfg.InterestRefresh)
		case !now.Before(nextExpire):
			ps.expireRoutes(now)
			nextExpire = now.Add(ps.cfg.InterestRefresh)
		}
		// Sleep until the next key is due (a finished lookup wakes us to
		// schedule its key again), or the next expiry.
		wait := nextExpire.Sub(now)
		if due, ok := ps.startLookups(sem, now); ok {
			wait = min(wait, max(due.Sub(now), time.Millisecond))
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		if ps.idleDiscovery() {
			// Nothing to look up or expire: sleep until a new topic's
			// keys wake the loop (a wake-up every InterestRefresh on
			// every node that publishes nothing).
			nextExpire = time.Time{}
			continue
		}
		t.Reset(wait)
	}
}

// idleDiscovery reports whether the node has no topic routes and no
// interest keys: discoveryLoop has nothing to do until a publish adds some.
func (ps *PubSub) idleDiscovery() bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return len(ps.keys) == 0 && len(ps.routes) == 0
}

// expireRoutes drops the routes of topics not published to lately, and the
// keys only they needed.
func (ps *PubSub) expireRoutes(now time.Time) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	var gone []string
	for topic, tr := range ps.routes {
		if tr.used.Swap(false) {
			tr.idle = 0
			continue
		}
		if tr.idle++; tr.idle >= idleRefreshes {
			gone = append(gone, topic)
		}
	}
	if len(gone) > 0 {
		ps.routesMu.Lock()
		for _, topic := range gone {
			tr := ps.routes[topic]
			delete(ps.routes, topic)
			for _, k := range tr.keys {
				if lk := ps.keys[k]; lk != nil {
					if lk.refs--; lk.refs <= 0 {
						delete(ps.keys, k)
					}
				}
			}
		}
		ps.routesMu.Unlock()
	}
	ps.pruneBackoffLocked(now)
}

// startLookups starts a lookup for every key that is due, as far as sem
// has room, and returns when the next key not in flight is due.
func (ps *PubSub) startLookups(sem chan struct{}, now time.Time) (next time.Time, ok bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for k, lk := range ps.keys {
		if lk.inflight {
			continue
		}
		if now.Before(lk.next) {
			if !ok || lk.next.Before(next) {
				next, ok = lk.next, true
			}
			continue
		}
		select {
		case sem <- struct{}{}:
			lk.inflight = true
			ps.wg.Add(1)
			go ps.lookup(k, sem)
		default:
			// No room: try again shortly.
			next, ok = now.Add(ps.cfg.InterestRefresh/10), true
		}
	}
	return next, ok
}

// lookup finds the providers of one interest key and links to those we have
// no stream to. It is the only way a publisher finds a subscriber it is not
// connected to.
func (ps *PubSub) lookup(key string, sem chan struct{}) {
	defer ps.wg.Done()
	defer func() { <-sem }()
	start := time.Now()
	ctx, cancel := context.WithTimeout(ps.ctx, lookupTimeout)
	found, err := ps.router.Lookup(ctx, key, 0)
	cancel()

	ps.mu.Lock()
	defer ps.mu.Unlock()
	if lk := ps.keys[key]; lk != nil {
		lk.inflight = false
		lk.next = start.Add(ps.cfg.InterestRefresh)
		select {
		case ps.wakeLookup <- struct{}{}: // to schedule it
		default:
		}
	}
	if err != nil {
		if ps.ctx.Err() == nil {
			ps.log.Debug("interest lookup failed", "key", key, "err", err)
		}
		return
	}
	for i := range found {
		ai := found[i]
		if ai.ID == ps.self || ai.ID == "" {
			continue
		}
		r := ps.remoteLocked(ai.ID)
		ps.openLocked(r, &peer.AddrInfo{ID: ai.ID, Addrs: ai.Addrs}, false)
		ps.gcLocked(r) // if nothing was started
	}
}

// provideLoop keeps the DHT keys of the local patterns provided: it
// provides a key when its first pattern comes, stops when its last goes,
// retries failed provides, and stops providing everything when pubsub
// closes.
func (ps *PubSub) provideLoop() {
	defer ps.wg.Done()
	provided := make(map[string]bool) // handed to the router; value: the last attempt failed
	defer func() {
		for k := range provided {
			ps.router.StopProviding(k)
		}
	}()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		select {
		case <-ps.ctx.Done():
			return
		case <-ps.wakeProvide:
		case <-retry.C:
		}
		ps.mu.Lock()
		want := make(map[string]bool, len(ps.provide))
		for k := range ps.provide {
			want[k] = true
		}
		ps.mu.Unlock()
		for k := range provided {
			if !want[k] {
				ps.router.StopProviding(k)
				delete(provided, k)
			}
		}
		failures := 0
		for k := range want {
			if failed, ok := provided[k]; ok && !failed {
				continue
			}
			ctx, cancel := context.WithTimeout(ps.ctx, provideTimeout)
			err := ps.router.Provide(ctx, k)
			cancel()
			if ps.ctx.Err() != nil {
				provided[k] = true
				return
			}
			provided[k] = err != nil
			if err != nil {
				failures++
				ps.log.Debug("interest provide failed; will retry", "key", k, "err", err)
			}
		}
		if failures > 0 {
			retry.Reset(provideRetry)
		}
	}
}
