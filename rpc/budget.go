package rpc

import (
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"
)

// budget bounds what the handlers running for remote callers hold: calls
// per caller, counted across all of its streams (a caller that opens many
// streams gets no more), and request payload bytes per caller and in all (a
// caller that sends calls at the size limit to a slow handler pins at most
// its share, not MaxConcurrentPerPeer times MaxPayload).
type budget struct {
	maxCalls, maxPeerBytes, maxBytes int

	mu    sync.Mutex
	peers map[peer.ID]*load
	bytes int
}

type load struct{ calls, bytes int }

func newBudget(cfg Config) *budget {
	return &budget{maxCalls: cfg.MaxConcurrentPerPeer, maxPeerBytes: cfg.MaxServingBytesPerPeer,
		maxBytes: cfg.MaxServingBytes, peers: make(map[peer.ID]*load)}
}

// take reserves a call of n payload bytes for p; false: over a bound, and
// nothing was reserved.
func (b *budget) take(p peer.ID, n int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	l := b.peers[p]
	if l == nil {
		l = &load{}
	}
	if l.calls >= b.maxCalls || l.bytes+n > b.maxPeerBytes || b.bytes+n > b.maxBytes {
		return false
	}
	if l.calls == 0 {
		b.peers[p] = l
	}
	l.calls++
	l.bytes += n
	b.bytes += n
	return true
}

// give returns what take reserved.
func (b *budget) give(p peer.ID, n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	l := b.peers[p]
	if l == nil {
		return
	}
	l.calls--
	l.bytes -= n
	b.bytes -= n
	if l.calls == 0 {
		delete(b.peers, p)
	}
}

// held returns the payload bytes reserved in all.
func (b *budget) held() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.bytes
}
