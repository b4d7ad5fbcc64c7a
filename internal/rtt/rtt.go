// Package rtt tells a peer's round-trip time as fresh as the node knows it,
// for the waits that are bounded by it (a DHT request, a liveness probe).
//
// The peerstore's LatencyEWMA averages what pings and DHT requests measured,
// handler time included, and moves only when they run: a peer pinged every
// 30 s while the machine was busy starting keeps a round-trip time of
// 100 ms long after it answers in 1 ms, and a wait of ten of those is a
// second. QUIC measures the round-trip time of each connection from its
// acknowledgements (RFC 9002), on every packet exchanged, keep-alives
// included, without any handler's time; so over a direct QUIC connection
// that is what counts, and the peerstore's average serves the rest
// (relayed connections, other transports).
package rtt

import (
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/quic-go/quic-go"
)

// Of returns p's round-trip time: over a direct QUIC connection to p, its
// smoothed RTT plus four mean deviations (QUIC's own retransmission
// bound, without the peer's ack delay); the lowest, if there are several.
// Otherwise the peerstore's LatencyEWMA. 0 means not measured.
func Of(h host.Host, p peer.ID) time.Duration {
	var best time.Duration
	for _, c := range h.Network().ConnsToPeer(p) {
		if v := Conn(c); v > 0 && (best == 0 || v < best) {
			best = v
		}
	}
	if best > 0 {
		return best
	}
	return h.Peerstore().LatencyEWMA(p)
}

// Conn returns the round-trip time that QUIC measured on c, or 0 when c
// is not a direct QUIC connection or has no sample yet.
func Conn(c network.Conn) time.Duration {
	if c.Stat().Limited {
		return 0 // a relayed connection: its stats are the relay's hop
	}
	var qc *quic.Conn
	if !c.As(&qc) || qc == nil {
		return 0
	}
	st := qc.ConnectionStats()
	if st.SmoothedRTT <= 0 {
		return 0
	}
	return st.SmoothedRTT + 4*st.MeanDeviation
}
