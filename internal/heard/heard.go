// Package heard tells whether a peer's packets still arrive: the evidence
// of life that QUIC has before any protocol answers. A process that is
// stopped, dead or cut off sends nothing; one that is only slow (its
// handlers wait for a core on a loaded machine) still acknowledges what it
// receives. Liveness checks ask it before they call a silent peer gone.
package heard

import (
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/quic-go/quic-go"
)

// Packets returns how many packets h received from p over its direct QUIC
// connections, and whether it has any: over a relay the counts are the
// relay's, not p's.
func Packets(h host.Host, p peer.ID) (n uint64, direct bool) {
	for _, c := range h.Network().ConnsToPeer(p) {
		if qc := directQUIC(c); qc != nil {
			n += qc.ConnectionStats().PacketsReceived
			direct = true
		}
	}
	return n, direct
}

// Direct reports whether c is a direct QUIC connection, whose packets are
// the peer's own (not a relay's).
func Direct(c network.Conn) bool { return directQUIC(c) != nil }

// directQUIC returns the QUIC connection under c, nil when c is relayed
// (limited) or not QUIC.
func directQUIC(c network.Conn) *quic.Conn {
	if c == nil || c.Stat().Limited {
		return nil
	}
	var qc *quic.Conn
	if !c.As(&qc) {
		return nil
	}
	return qc
}
