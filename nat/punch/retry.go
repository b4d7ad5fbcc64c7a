package punch

import (
	"context"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/macula-io/macula/nat"
)

// Retries. DCUtR punches once per relayed connection (three rounds within
// about 15 s) and never again, and the service's own punch runs once when
// the connection comes in. On a loaded machine, or after lost packets, a
// pair whose NATs allow a direct path stays relayed for the life of the
// connection: slower, and bounded by the relay's limits. So the service
// looks at the peers it reaches only through relays and, for one still
// relayed RetryAfter after its relayed connection opened, punches again
// with its own protocol, then again after twice the wait (up to
// retryMaxWait) while it stays relayed.
//
// One side of a pair starts a retry: the symmetric one if there is one (it
// knows what to do with each peer type: dial a full cone or restricted
// cone, birthday probing with a port-restricted cone), else the one with
// the smaller peer ID, which asks the peer to open its filter for its
// public address (punchMsg.Dial) and dials the peer's public address.

const (
	// retryTick is how often the relayed peers are looked at.
	retryTick = 2 * time.Second
	// retryAfter is the default Config.RetryAfter: soon after the first
	// punch, which ends within about as long when it fails (a lost probe
	// on a loaded path is the usual cause, and a retry a few seconds later
	// usually gets through); a pair that stays relayed is tried at
	// doubling waits, a few packets each time, so the cost stays small.
	retryAfter = 4 * time.Second
	// retryMaxWait bounds the doubling wait between retries.
	retryMaxWait = 5 * time.Minute
	// retryParallel bounds the punches (first tries and retries) at once.
	retryParallel = 4
	// retryDialTimeout bounds a retry's direct dial: DCUtR is not waiting
	// on it, and a loaded peer may answer slowly.
	retryDialTimeout = 5 * time.Second
)

// retryState is when to retry a relayed peer next.
type retryState struct {
	next time.Time
	wait time.Duration
}

// retryLoop retries direct paths to relayed peers until Close. It ticks
// only while some peer is reached through relays only, and otherwise
// sleeps until a connection opens over a relay or one closes: most nodes
// have no such peer, and an idle node's wake-ups are most of its cost.
func (s *Service) retryLoop() {
	defer s.wg.Done()
	t := time.NewTimer(retryTick)
	t.Stop()
	defer t.Stop()
	state := make(map[peer.ID]*retryState)
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		case <-s.paths:
		}
		s.retryRounds.Add(1)
		s.retryDue(state, time.Now())
		t.Stop()
		if len(state) > 0 {
			t.Reset(retryTick)
		}
	}
}

// pathsChanged wakes retryLoop.
func (s *Service) pathsChanged() {
	select {
	case s.paths <- struct{}{}:
	default:
	}
}

// retryDue starts the retries that are due at now. state is the loop's:
// peers that are no longer relayed-only are dropped from it.
func (s *Service) retryDue(state map[peer.ID]*retryState, now time.Time) {
	seen := make(map[peer.ID]bool)
	self := s.cfg.Self()
	for _, p := range s.h.Network().Peers() {
		opened, ok := s.relayedSince(p)
		if !ok {
			continue
		}
		seen[p] = true
		st := state[p]
		if st == nil {
			st = &retryState{next: opened.Add(s.cfg.RetryAfter), wait: s.cfg.RetryAfter}
			state[p] = st
		}
		if now.Before(st.next) || !s.startsRetry(self, p) {
			continue
		}
		if !s.startRetry(p, self) {
			continue // busy: due again at the next tick
		}
		st.wait = min(2*st.wait, retryMaxWait)
		st.next = now.Add(st.wait)
	}
	for p := range state {
		if !seen[p] {
			delete(state, p)
		}
	}
}

// relayedSince reports whether p is reached through relays only, and since
// when (the oldest relayed connection's opening).
func (s *Service) relayedSince(p peer.ID) (time.Time, bool) {
	var opened time.Time
	conns := s.h.Network().ConnsToPeer(p)
	for _, c := range conns {
		if !isRelayed(c.RemoteMultiaddr()) {
			return time.Time{}, false
		}
		if o := c.Stat().Opened; opened.IsZero() || o.Before(opened) {
			opened = o
		}
	}
	return opened, len(conns) > 0
}

// startsRetry reports whether this node, of NAT type self.Type, is the side
// of the pair with p that retries.
func (s *Service) startsRetry(self nat.Info, p peer.ID) bool {
	switch {
	case self.Type == nat.TypeSymmetric:
		return true
	case eiMapping(self.Type):
		return s.h.ID() < p
	}
	return false // not measured yet
}

// startRetry starts a retry towards p unless a punch towards p runs or
// retryParallel punches run; it reports whether it started one.
func (s *Service) startRetry(p peer.ID, self nat.Info) bool {
	s.mu.Lock()
	if s.closed || s.tries[p] != nil || len(s.tries) >= retryParallel {
		s.mu.Unlock()
		return false
	}
	t := &try{done: make(chan struct{})}
	s.tries[p] = t
	s.mu.Unlock()
	if !s.spawn(func() {
		defer s.endTry(p, t)
		s.retry(p, t, self)
	}) {
		s.endTry(p, t)
		return false
	}
	return true
}

// retry punches again towards p, which is still relayed.
func (s *Service) retry(p peer.ID, t *try, self nat.Info) {
	ctx, cancel := context.WithTimeout(s.ctx, punchVerifyWait+punchStreamTimeout+retryDialTimeout)
	defer cancel()
	if !s.verified(ctx, p) || s.directConn(p) {
		return
	}
	s.retries.Add(1)
	s.log.Debug("punch: still relayed; trying a direct path again", "peer", p, "type", self.Type)
	if s.punch(ctx, p, self, true) {
		t.decide(true)
		s.log.Info("punch: direct path on a retry", "peer", p)
	}
}
