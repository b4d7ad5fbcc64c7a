// Package rtt tells a peer's round-trip time as fresh as the node knows it,
// for the waits that are bounded by it (a DHT request, a liveness probe).
//
// The peerstore's LatencyEWMA averages what pings and DHT requests measured,
// handler time included, and moves only when they run: a peer pinged every
// 30 s while the machine was busy starting keeps a round-trip time of
// 100 ms long after it answers in 1 ms, and a wait of ten of those is a
// second. QUIC measures the round-trip time of each connection from its
// acknowledgements (RFC 9002), on every packet exchanged, keep-alives
// included, without any handler's time; but on a loaded machine its
// smoothed estimate jumps too (300 ms and more under the race detector,
// with a mean deviation as large), while the average stays low. Each is
// wrong high in its own case, and a bound that is too low costs little
// (a request, and the peer's place in queries until it answers a ping),
// so the lower of the two counts.
package rtt

import (
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/quic-go/quic-go"
)

// Of returns p's round-trip time: the lower of QUIC's smoothed RTT of a
// direct connection to p (the lowest, if there are several) and the
// peerstore's LatencyEWMA. 0 means not measured.
func Of(h host.Host, p peer.ID) time.Duration {
	best := h.Peerstore().LatencyEWMA(p)
	for _, c := range h.Network().ConnsToPeer(p) {
		if v := Conn(c); v > 0 && (best <= 0 || v < best) {
			best = v
		}
	}
	return best
}

// Conn returns the smoothed round-trip time that QUIC measured on c, or 0
// when c is not a direct QUIC connection or has no sample yet.
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
	return st.SmoothedRTT
}
