package rtt_test

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"

	"github.com/macula-io/macula/internal/rtt"
	"github.com/macula-io/macula/internal/testnet"
)

func TestMain(m *testing.M) { testnet.VerifyTestMain(m) }

// Over a direct QUIC connection, QUIC's measurement counts when the
// peerstore's average is stale and high; without a connection, the average
// is all there is.
func TestQUICMeasurementOverStaleAverage(t *testing.T) {
	a, b := testnet.Host(t), testnet.Host(t)
	stale := 10 * time.Second
	a.Peerstore().RecordLatency(b.ID(), stale)
	if got := rtt.Of(a, b.ID()); got != stale {
		t.Fatalf("not connected: %v, want the peerstore's %v", got, stale)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err != nil {
		t.Fatal(err)
	}
	// A ping: round trips for QUIC to sample (it also feeds the average,
	// which stays far above it).
	if res := <-ping.Ping(ctx, a, b.ID()); res.Error != nil {
		t.Fatal(res.Error)
	}
	a.Peerstore().RecordLatency(b.ID(), stale)
	got := rtt.Of(a, b.ID())
	if got <= 0 || got >= a.Peerstore().LatencyEWMA(b.ID()) {
		t.Fatalf("connected: %v; the peerstore says %v", got, a.Peerstore().LatencyEWMA(b.ID()))
	}
	for _, c := range a.Network().ConnsToPeer(b.ID()) {
		if rtt.Conn(c) <= 0 {
			t.Fatalf("no QUIC measurement on %s", c.RemoteMultiaddr())
		}
	}
}
