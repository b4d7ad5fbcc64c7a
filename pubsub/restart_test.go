package pubsub

import (
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	libp2pquic "github.com/libp2p/go-libp2p/p2p/transport/quic"

	"github.com/macula-io/macula/dht"
	"github.com/macula-io/macula/event"
	"github.com/macula-io/macula/internal/testnet"
)

// startWithKey starts a node with a given identity, as a restarted
// macula-node would come back, and returns a func that stops it.
func startWithKey(t *testing.T, key crypto.PrivKey) (*testNode, func()) {
	t.Helper()
	h, err := libp2p.New(
		libp2p.Identity(key),
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/udp/0/quic-v1"),
		libp2p.Transport(libp2pquic.NewTransport),
		libp2p.DisableRelay(), libp2p.DisableMetrics(),
	)
	if err != nil {
		t.Fatal(err)
	}
	d, err := dht.New(h, dht.Config{Realm: testRealm, Logger: testnet.QuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ps, err := New(h, d, nil, Config{Realm: testRealm, Logger: testnet.QuietLogger(), InterestRefresh: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			ps.Close()
			d.Close()
			h.Close()
		}
	}
	t.Cleanup(stop)
	return &testNode{h: h, d: d, ps: ps}, stop
}

// TestRestartedSubscriber: a subscriber node that stops and comes back with
// the same identity receives again, while the publisher never stopped
// publishing.
func TestRestartedSubscriber(t *testing.T) {
	pub := newNode(t, nil)
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	wait := keepPublishing(t, pub.ps, "io.acme.orders.placed", stop)
	defer wait()
	defer close(stop)

	for round := 0; round < 2; round++ {
		sub, stopSub := startWithKey(t, key)
		connect(t, sub.h, pub.h)
		_, c := subscribe(t, sub.ps, "io.acme.orders.*")
		start := time.Now()
		testnet.Eventually(t, 10*time.Second, func() error {
			if got := c.len(); got < 5 {
				return fmt.Errorf("messages at the (re)started subscriber: have %v, want at least 5", got)
			}
			return nil
		})
		t.Logf("round %d: 5 messages after %v", round, time.Since(start).Round(time.Millisecond))
		var last uint64
		for _, m := range c.all() {
			if m.Seq <= last {
				t.Fatalf("seq %d after %d", m.Seq, last)
			}
			last = m.Seq
		}
		stopSub()
	}
}

// TestPublishEventsAreSampled: a burst of publishes to one topic makes one
// publish event, not one per message; another topic gets its own.
func TestPublishEventsAreSampled(t *testing.T) {
	n := newNode(t, nil)
	events := n.bus.Subscribe(1024, event.Publish)
	for i := 0; i < 200; i++ {
		publish(t, n.ps, "io.acme.orders.placed", nil)
	}
	publish(t, n.ps, "io.acme.orders.shipped", nil)
	topics := map[string]int{}
	for len(events.C) > 0 {
		e := <-events.C
		topics[e.Topic]++
	}
	if got := topics["io.acme.orders.placed"]; got < 1 || got > 20 {
		t.Fatalf("%d publish events for 200 publishes", got)
	}
	if topics["io.acme.orders.shipped"] != 1 {
		t.Fatalf("events %v", topics)
	}
}
