package pubsub

import "github.com/libp2p/go-libp2p/core/peer"

// routablePeers counts the peers a Publish can reach now: they announced
// interest and we have a stream to them.
func (ps *PubSub) routablePeers() int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	n := 0
	for _, r := range ps.remotes {
		if r.out != nil && len(r.patterns) > 0 {
			n++
		}
	}
	return n
}

// peerPatterns returns the patterns p announced to ps.
func (ps *PubSub) peerPatterns(p peer.ID) []string {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	var out []string
	if r := ps.remotes[p]; r != nil {
		for pat := range r.patterns {
			out = append(out, pat)
		}
	}
	return out
}

// lookupOnly makes ps announce its interest only in the DHT and to peers
// that link to it, so a publisher must find it by lookup.
func (ps *PubSub) lookupOnly() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.noEager = true
}
