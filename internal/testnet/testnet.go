// Package testnet holds what the tests of several packages share: the
// goroutine-leak check (VerifyTestMain), loopback libp2p hosts (Host,
// Connect), waiting for a condition (Eventually), a logger that discards
// (QuietLogger) and a realm authority that issues grants (Authority). It is
// for tests only.
package testnet

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pquic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"go.uber.org/goleak"
)

// VerifyTestMain runs the package's tests and fails if goroutines are left
// running. It ignores the workers that go-log, quicreuse and opencensus
// start once per process and never stop: they are not ours.
func VerifyTestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/ipfs/go-log/v2/writer.(*MirrorWriter).logRoutine"),
		goleak.IgnoreTopFunction("github.com/libp2p/go-libp2p/p2p/transport/quicreuse.(*reuse).gc"),
		goleak.IgnoreAnyFunction("go.opencensus.io/stats/view.(*worker).start"),
	)
}

// Host starts a libp2p host with QUIC only on 127.0.0.1 and closes it when
// the test ends.
func Host(t testing.TB) host.Host {
	t.Helper()
	return HostWith(t, libp2p.DisableRelay())
}

// HostWith is Host with more options (relays: Host has no circuit
// transport).
func HostWith(t testing.TB, opts ...libp2p.Option) host.Host {
	t.Helper()
	h, err := libp2p.New(append([]libp2p.Option{
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/udp/0/quic-v1"),
		libp2p.Transport(libp2pquic.NewTransport),
		libp2p.DisableMetrics(),
	}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// Connect connects a to b.
func Connect(t testing.TB, a, b host.Host) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err != nil {
		t.Fatal(err)
	}
}
