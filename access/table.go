package access

import (
	"sync"
	"sync/atomic"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/macula-io/macula/ucan"
)

// Table is a Policy kept by its owner: the node sets a peer's verdict when
// the peer's handshake validates and deletes it when the peer leaves. It is
// safe for concurrent use; lookups take a read lock.
type Table struct {
	self atomic.Pointer[ucan.Verdict]

	mu    sync.RWMutex
	peers map[peer.ID]*ucan.Verdict
}

var _ Policy = (*Table)(nil)

// NewTable returns a table whose own verdict is self and that knows no peer.
func NewTable(self *ucan.Verdict) *Table {
	t := &Table{peers: make(map[peer.ID]*ucan.Verdict)}
	t.self.Store(self)
	return t
}

// Peer implements Policy.
func (t *Table) Peer(p peer.ID) *ucan.Verdict {
	t.mu.RLock()
	vd := t.peers[p]
	t.mu.RUnlock()
	return vd
}

// Self implements Policy.
func (t *Table) Self() *ucan.Verdict { return t.self.Load() }

// SetSelf replaces the node's own verdict (its chains changed).
func (t *Table) SetSelf(vd *ucan.Verdict) { t.self.Store(vd) }

// Set records p's verdict, replacing any earlier one.
func (t *Table) Set(p peer.ID, vd *ucan.Verdict) {
	t.mu.Lock()
	t.peers[p] = vd
	t.mu.Unlock()
}

// Delete forgets p.
func (t *Table) Delete(p peer.ID) {
	t.mu.Lock()
	delete(t.peers, p)
	t.mu.Unlock()
}

// Peers returns the peers with a verdict and their verdicts, a copy.
func (t *Table) Peers() map[peer.ID]*ucan.Verdict {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make(map[peer.ID]*ucan.Verdict, len(t.peers))
	for p, vd := range t.peers {
		out[p] = vd
	}
	return out
}
