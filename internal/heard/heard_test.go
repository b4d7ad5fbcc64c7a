package heard_test

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"

	"github.com/macula-io/macula/internal/heard"
	"github.com/macula-io/macula/internal/testnet"
)

func TestMain(m *testing.M) { testnet.VerifyTestMain(m) }

// Without a connection nothing is heard; over a direct QUIC connection the
// count grows with what the peer sends.
func TestPacketsCounted(t *testing.T) {
	a, b := testnet.Host(t), testnet.Host(t)
	if n, direct := heard.Packets(a, b.ID()); n != 0 || direct {
		t.Fatalf("not connected: %d packets, direct %v", n, direct)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err != nil {
		t.Fatal(err)
	}
	before, direct := heard.Packets(a, b.ID())
	if !direct || before == 0 {
		t.Fatalf("connected: %d packets, direct %v", before, direct)
	}
	if res := <-ping.Ping(ctx, a, b.ID()); res.Error != nil {
		t.Fatal(res.Error)
	}
	if after, _ := heard.Packets(a, b.ID()); after <= before {
		t.Fatalf("a ping answered, and the count went from %d to %d", before, after)
	}
}
