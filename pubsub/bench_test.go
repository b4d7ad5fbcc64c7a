package pubsub

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/macula-io/macula/access"
	"github.com/macula-io/macula/event"
	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/peerdid"
	"github.com/macula-io/macula/ucan"
)

// BenchmarkPublishPath measures Publish to one remote subscriber node, whose
// stream is a real QUIC stream, and what emitting the publish event on the
// bus adds: with no bus, with a bus nobody listens to (the node's usual
// state), and with one listener (a dashboard) that is not reading.
func BenchmarkPublishPath(b *testing.B) {
	for _, tc := range []struct {
		name      string
		bus       bool
		listeners int
	}{{"no-bus", false, 0}, {"bus-idle", true, 0}, {"bus-1-listener", true, 1}} {
		b.Run(tc.name, func(b *testing.B) {
			pub := newNode(b, nil)
			if !tc.bus {
				pub.ps.bus = nil
			}
			for i := 0; i < tc.listeners; i++ {
				s := pub.bus.Subscribe(1024, event.Publish)
				b.Cleanup(s.Close)
			}
			sub := newNode(b, func(c *Config) { c.SubscriptionBuffer = 1 << 16 })
			benchPublish(b, pub, sub)
		})
	}
}

// benchPublish links sub to pub with a subscription to ordersPattern that
// is drained, and measures pub's Publish of 128 bytes to it.
func benchPublish(b *testing.B, pub, sub *testNode) {
	connect(b, sub.h, pub.h)
	_, ch, err := sub.ps.SubscribeChan(ordersPattern, 1<<16)
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		for range ch {
		}
	}()
	testnet.Eventually(b, 10*time.Second, func() error {
		if got := pub.ps.routablePeers(); got != 1 {
			return fmt.Errorf("routable peers: have %v, want 1", got)
		}
		return nil
	})
	payload := make([]byte, 128)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := pub.ps.Publish(ctx, "io.acme.orders.placed", payload); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
}

// BenchmarkEmit is the bus's own cost per event.
func BenchmarkEmit(b *testing.B) {
	bus := event.NewBus()
	defer bus.Close()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		bus.Emit(event.Event{Kind: event.Publish, Topic: "io.acme.orders.placed"})
	}
}

// BenchmarkPublishSecure is BenchmarkPublishPath without a bus, in an open
// realm and in a secure one: what the checks add to Publish (the node's own
// publish grant, and the subscriber node's subscribe grant looked up in the
// table).
func BenchmarkPublishSecure(b *testing.B) {
	for _, secure := range []bool{false, true} {
		name := "open"
		if secure {
			name = "secure"
		}
		b.Run(name, func(b *testing.B) {
			var pub, sub *testNode
			if secure {
				a := testnet.NewAuthority(b)
				var pubChain, subChain ucan.Chain
				sp := newSecureNode(b, a, func(p peer.ID) []ucan.Chain {
					pubChain = a.Grant(b, peerdid.Of(p), ucan.Publish, ordersPattern)
					return []ucan.Chain{pubChain}
				})
				ss := newSecureNode(b, a, func(p peer.ID) []ucan.Chain {
					subChain = a.Grant(b, peerdid.Of(p), ucan.Subscribe, ordersPattern)
					return []ucan.Chain{subChain}
				})
				sp.admit(b, ss.h.ID(), subChain)
				ss.admit(b, sp.h.ID(), pubChain)
				pub, sub = sp.testNode, ss.testNode
			} else {
				pub, sub = newNode(b, nil), newNode(b, nil)
			}
			pub.ps.bus = nil
			benchPublish(b, pub, sub)
			if st := pub.ps.Stats(); st.WithheldUnauthorized != 0 {
				b.Fatalf("%d withheld", st.WithheldUnauthorized)
			}
		})
	}
}

// BenchmarkReceiveCheck is the check a stream reader makes for every
// message in a secure realm: the sender's verdict looked up in a table of
// 1000 peers, and ucan.Check of publishing to the topic.
func BenchmarkReceiveCheck(b *testing.B) {
	a := testnet.NewAuthority(b)
	v, err := ucan.New(ucan.Config{Realm: testRealm, Authority: a.DID, Logger: testnet.QuietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	tab := access.NewTable(nil)
	var target peer.ID
	for i := 0; i < 1000; i++ {
		key, err := ucan.GenerateKey()
		if err != nil {
			b.Fatal(err)
		}
		sk, err := crypto.UnmarshalEd25519PrivateKey(key)
		if err != nil {
			b.Fatal(err)
		}
		p, err := peer.IDFromPrivateKey(sk)
		if err != nil {
			b.Fatal(err)
		}
		if i == 0 {
			target = p
		}
		tab.Set(p, validate(b, v, p, []ucan.Chain{a.Grant(b, peerdid.Of(p), ucan.Publish, ordersPattern)}))
	}
	var pol access.Policy = tab
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := ucan.Check(pol.Peer(target), ucan.Publish, "io.acme.orders.placed"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublishWait measures flow control end to end: a publisher that
// publishes 128-byte messages with WaitForRoom to one subscriber node whose
// Backpressure subscription keeps up (fast) or whose handler works for 100
// µs per message (slow: a busy wait, as a sleep that short lasts much
// longer on a loaded machine). The time runs until the subscriber has every
// message; none may be lost. msgs/s is the publisher's rate, which is the
// subscriber's.
func BenchmarkPublishWait(b *testing.B) {
	for _, tc := range []struct {
		name  string
		delay time.Duration
	}{{"fast", 0}, {"slow-100us", 100 * time.Microsecond}} {
		b.Run(tc.name, func(b *testing.B) {
			pub, sub := newNode(b, nil), newNode(b, nil)
			connect(b, sub.h, pub.h)
			var got atomic.Int64
			all := make(chan struct{})
			_, err := sub.ps.Subscribe(ordersPattern, func(Message) {
				for t0 := time.Now(); time.Since(t0) < tc.delay; {
				}
				if got.Add(1) == int64(b.N) {
					close(all)
				}
			}, Backpressure())
			if err != nil {
				b.Fatal(err)
			}
			waitRoutablePeers(b, pub, 1)
			payload := make([]byte, 128)
			ctx := context.Background()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := pub.ps.Publish(ctx, "io.acme.orders.placed", payload, WaitForRoom()); err != nil {
					b.Fatal(err)
				}
			}
			select {
			case <-all:
			case <-time.After(time.Minute):
				b.Fatalf("the subscriber got %d of %d messages", got.Load(), b.N)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			if d := pub.ps.Stats().Dropped + sub.ps.Stats().Dropped; d != 0 {
				b.Fatalf("%d messages dropped", d)
			}
		})
	}
}
