package pubsub

import (
	"context"
	"testing"
	"time"

	"github.com/macula-io/macula/event"
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
			connect(b, sub.h, pub.h)
			_, ch, err := sub.ps.SubscribeChan("io.acme.orders.*", 1<<16)
			if err != nil {
				b.Fatal(err)
			}
			go func() {
				for range ch {
				}
			}()
			waitFor(b, 10*time.Second, "link", func() bool { return pub.ps.routablePeers() == 1 })
			payload := make([]byte, 128)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := pub.ps.Publish(ctx, "io.acme.orders.placed", payload); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
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
