package pubsub

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/macula-io/macula/event"
	"github.com/macula-io/macula/internal/testnet"
)

// TestUnsubscribeStopsDelivery: after Unsubscribe the handler gets nothing,
// and once the publisher has heard of it, the node gets no frames for that
// pattern either.
func TestUnsubscribeStopsDelivery(t *testing.T) {
	pub, sub := newNode(t, nil), newNode(t, nil)
	connect(t, sub.h, pub.h)
	events := sub.bus.Subscribe(16, event.Subscribe)
	s, c := subscribe(t, sub.ps, "io.acme.orders.placed")
	_, sentinel := subscribe(t, sub.ps, "io.acme.orders.sentinel")
	testnet.Eventually(t, 10*time.Second, func() error {
		if ps, n := pub.ps.peerPatterns(sub.h.ID()), pub.ps.routablePeers(); len(ps) != 2 || n != 1 {
			return fmt.Errorf("the publisher knows the patterns %v of the subscriber and %d routable peers, want 2 and 1", ps, n)
		}
		return nil
	})
	publish(t, pub.ps, "io.acme.orders.placed", []byte("before"))
	c.waitLen(t, 5*time.Second, 1)

	s.Unsubscribe()
	s.Unsubscribe() // idempotent
	testnet.Eventually(t, 5*time.Second, func() error {
		if ps := pub.ps.peerPatterns(sub.h.ID()); !slices.Equal(ps, []string{"io.acme.orders.sentinel"}) {
			return fmt.Errorf("the publisher knows the patterns %v of the subscriber, want the sentinel's alone", ps)
		}
		return nil
	})
	framesBefore := sub.ps.Stats().FramesReceived
	for i := 0; i < 100; i++ {
		publish(t, pub.ps, "io.acme.orders.placed", []byte("after"))
	}
	publish(t, pub.ps, "io.acme.orders.sentinel", []byte("end"))
	sentinel.waitLen(t, 5*time.Second, 1)
	if n := c.len(); n != 1 {
		t.Fatalf("handler called %d times, want 1", n)
	}
	if got := sub.ps.Stats().FramesReceived - framesBefore; got != 1 {
		t.Fatalf("%d frames after the unsubscribe, want 1 (the sentinel)", got)
	}
	var outcomes []string
	for len(events.C) > 0 {
		e := <-events.C
		outcomes = append(outcomes, e.Topic+" "+e.Outcome)
	}
	want := []string{"io.acme.orders.placed subscribed", "io.acme.orders.sentinel subscribed", "io.acme.orders.placed unsubscribed"}
	if !slices.Equal(outcomes, want) {
		t.Fatalf("subscribe events = %q, want %q", outcomes, want)
	}
}

// keepPublishing publishes to topic every few milliseconds until stop is
// closed or a bound is reached, and returns a func that waits for it.
func keepPublishing(t *testing.T, ps *PubSub, topic string, stop chan struct{}) func() {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		deadline := time.Now().Add(30 * time.Second)
		for i := 0; i < 10000 && time.Now().Before(deadline); i++ {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
			if err := ps.Publish(context.Background(), topic, []byte(fmt.Sprint(i))); err != nil {
				t.Errorf("Publish: %v", err)
				return
			}
		}
	}()
	return wg.Wait
}

// TestLateSubscriber: a node that subscribes while a publisher is already
// publishing starts receiving within a bounded time, whether it is
// connected to the publisher or only to a third node of the DHT.
func TestLateSubscriber(t *testing.T) {
	for _, tc := range []struct {
		name   string
		direct bool
	}{{"connected to the publisher", true}, {"found by DHT lookup", false}} {
		t.Run(tc.name, func(t *testing.T) {
			// The default refresh, to measure what a user gets.
			refresh := func(c *Config) { c.InterestRefresh = DefaultInterestRefresh }
			pub, mid, sub := newNode(t, refresh), newNode(t, refresh), newNode(t, refresh)
			connect(t, pub.h, mid.h)
			if tc.direct {
				connect(t, sub.h, pub.h)
			} else {
				// The subscriber announces its interest only in the DHT.
				sub.ps.lookupOnly()
				connect(t, sub.h, mid.h)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_ = pub.d.RefreshRoutingTable(ctx)
				_ = sub.d.RefreshRoutingTable(ctx)
				cancel()
			}
			stop := make(chan struct{})
			wait := keepPublishing(t, pub.ps, "io.acme.orders.placed", stop)
			defer wait()
			defer close(stop)
			testnet.Eventually(t, 10*time.Second, func() error {
				if pub.ps.Stats().Published == 0 {
					return errors.New("the publisher has published nothing yet")
				}
				return nil
			})

			start := time.Now()
			_, c := subscribe(t, sub.ps, "io.acme.orders.*")
			// The bound: a refresh period plus a lookup and a dial, with
			// room for a loaded CI machine.
			testnet.Eventually(t, 3*DefaultInterestRefresh+5*time.Second, func() error {
				if got := c.len(); got <= 0 {
					return fmt.Errorf("the first message: have %v, want more than 0", got)
				}
				return nil
			})
			t.Logf("late subscriber (%s) got its first message after %v", tc.name, time.Since(start).Round(time.Millisecond))
			if tc.direct {
				return
			}
			if pub.ps.Stats().InterestedPeers != 1 {
				t.Fatalf("publisher stats %+v", pub.ps.Stats())
			}
		})
	}
}

// TestSlowHandler: a handler that blocks loses messages by the stated
// policy and the counters say how many; another subscription on the same
// node still gets every message, and the publisher is never blocked.
func TestSlowHandler(t *testing.T) {
	const limit, total = 64, 3000
	pub := newNode(t, nil)
	sub := newNode(t, func(c *Config) { c.SubscriptionBuffer = limit })
	connect(t, sub.h, pub.h)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) }) // before Close, which waits for handlers
	var entered atomic.Bool
	slow, err := sub.ps.Subscribe("io.acme.orders.*", func(Message) {
		entered.Store(true)
		<-release
	})
	if err != nil {
		t.Fatal(err)
	}
	_, fast := subscribe(t, sub.ps, "io.acme.orders.>")
	testnet.Eventually(t, 10*time.Second, func() error {
		if got := pub.ps.routablePeers(); got != 1 {
			return fmt.Errorf("the publisher's routable peers: have %v, want 1", got)
		}
		return nil
	})

	for i := 0; i < total; i++ {
		publish(t, pub.ps, "io.acme.orders.placed", []byte(fmt.Sprint(i)))
		if i%limit == limit-1 {
			// Pace the publisher to the fast subscriber's queue, so only
			// the slow one can drop.
			fast.waitLen(t, 5*time.Second, i+1)
		}
	}
	fast.waitLen(t, 5*time.Second, total)
	for i, m := range fast.all() {
		if string(m.Payload) != fmt.Sprint(i) {
			t.Fatalf("fast subscriber: message %d = %q", i, m.Payload)
		}
	}
	if !entered.Load() {
		t.Fatal("the slow handler was never called")
	}
	// The slow subscription holds exactly limit messages (the one its
	// handler is stuck on included); every other one was dropped.
	if d := slow.Dropped(); d != total-limit {
		t.Fatalf("slow subscription dropped %d, want %d", d, total-limit)
	}
	st := sub.ps.Stats()
	if st.DroppedLocal != total-limit || st.Dropped != total-limit || st.DroppedSend != 0 || st.FramesReceived != total {
		t.Fatalf("subscriber stats %+v", st)
	}
	if st := pub.ps.Stats(); st.DroppedSend != 0 || st.Published != total {
		t.Fatalf("publisher stats %+v", st)
	}
}

// rawPeer is a host that speaks the pubsub protocol by hand.
type rawPeer struct {
	n       *testNode // for its host only; it runs no PubSub
	streams chan network.Stream
}

// newRawPeer starts a host whose pubsub handler accepts streams and never
// reads them: a subscriber node that has stopped reading.
func newRawPeer(t *testing.T) *rawPeer {
	h := newHost(t)
	rp := &rawPeer{n: &testNode{h: h}, streams: make(chan network.Stream, 16)}
	done := make(chan struct{})
	h.SetStreamHandler(Protocol(testRealm), func(s network.Stream) {
		select {
		case rp.streams <- s:
		default:
			_ = s.Reset()
		}
	})
	t.Cleanup(func() {
		close(done)
		h.RemoveStreamHandler(Protocol(testRealm))
		for len(rp.streams) > 0 {
			_ = (<-rp.streams).Reset()
		}
	})
	return rp
}

// open opens a raw pubsub stream to target and writes b on it.
func (rp *rawPeer) open(t *testing.T, target *testNode, b []byte) network.Stream {
	t.Helper()
	connect(t, rp.n.h, target.h)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := rp.n.h.NewStream(ctx, target.h.ID(), Protocol(testRealm))
	if err != nil {
		t.Fatal(err)
	}
	// A write error is fine: the node may reset a bad stream before the
	// write completes, and callers check for the reset.
	_, _ = s.Write(b)
	return s
}

// TestSlowSubscriberNode: a subscriber node that stops reading fills its
// send queue on the publisher; the publisher drops its newest messages and
// counts them, never blocks, and another subscriber node gets everything.
func TestSlowSubscriberNode(t *testing.T) {
	const queue, total = 128, 40000
	pub := newNode(t, func(c *Config) { c.PeerQueue = queue })
	good := newNode(t, nil)
	connect(t, good.h, pub.h)
	_, c := subscribe(t, good.ps, "io.acme.orders.>")
	stuck := newRawPeer(t)
	s := stuck.open(t, pub, appendInterestSetFrames(nil, 1<<20, []string{"io.acme.orders.>"}))
	defer s.Reset()
	testnet.Eventually(t, 10*time.Second, func() error {
		if got := pub.ps.routablePeers(); got != 2 {
			return fmt.Errorf("the publisher's routable peers: have %v, want 2", got)
		}
		return nil
	})

	payload := bytes.Repeat([]byte{'x'}, 1000)
	for i := 0; i < total; i++ {
		copy(payload, fmt.Sprintf("%08d", i))
		publish(t, pub.ps, "io.acme.orders.placed", payload)
		if i%queue == queue-1 {
			c.waitLen(t, 10*time.Second, i+1)
		}
	}
	c.waitLen(t, 10*time.Second, total)
	for i, m := range c.all() {
		if string(m.Payload[:8]) != fmt.Sprintf("%08d", i) {
			t.Fatalf("message %d = %q", i, m.Payload[:8])
		}
	}
	st := pub.ps.Stats()
	// 40 MB do not fit in the stuck stream's flow-control window plus a
	// queue of 128, so most of its messages were dropped.
	if st.DroppedSend == 0 || st.DroppedSend > total || st.Published != total {
		t.Fatalf("publisher stats %+v", st)
	}
	t.Logf("publisher dropped %d of %d messages for the stuck node", st.DroppedSend, total)
	if st := good.ps.Stats(); st.Dropped != 0 {
		t.Fatalf("good subscriber stats %+v", st)
	}
}

// TestSubscriberLinkResetByPublisher: the publisher (no interest of its own)
// drops the subscriber's stream and opens a new one of its own, as its
// inbound side does when a newer stream of the peer replaces the live one
// and then fails (seen in the NAT lab while a pair moved from relayed to
// direct). The subscriber's link to it is dead but not written to; it must
// notice and link again, or the publisher never again learns its interest
// (messages stopped for good before).
func TestSubscriberLinkResetByPublisher(t *testing.T) {
	sub, pub := newNode(t, nil), newNode(t, nil)
	connect(t, sub.h, pub.h)
	_, c := subscribe(t, sub.ps, "io.acme.orders.reset")
	testnet.Eventually(t, 30*time.Second, func() error {
		publish(t, pub.ps, "io.acme.orders.reset", []byte("before"))
		if c.len() == 0 {
			return errors.New("nothing arrived yet")
		}
		return nil
	})
	// What the publisher's handleStream did: reset the subscriber's stream,
	// forget its interest, and open a new stream of its own.
	pub.ps.mu.Lock()
	r := pub.ps.remotes[sub.h.ID()]
	if r == nil || r.in == nil || r.out == nil {
		pub.ps.mu.Unlock()
		t.Fatal("no link both ways")
	}
	_ = r.in.s.Reset()
	pub.ps.dropInboundLocked(r)
	r.out.close()
	r.out = nil
	pub.ps.openOnLocked(r, nil, nil, true)
	pub.ps.mu.Unlock()
	n := c.len()
	testnet.Eventually(t, 30*time.Second, func() error {
		publish(t, pub.ps, "io.acme.orders.reset", []byte("after"))
		if c.len() <= n {
			return errors.New("no message since the reset")
		}
		return nil
	})
}

// A node that publishes nothing has no interest keys to look up and no
// routes to expire: its discovery loop sleeps until a publish wakes it, and
// sleeps again once the topic's route expired.
func TestDiscoverySleepsWhileIdle(t *testing.T) {
	const refresh = 20 * time.Millisecond
	n := newNode(t, func(c *Config) { c.InterestRefresh = refresh })
	time.Sleep(20 * refresh)
	if r := n.ps.discoveryRounds.Load(); r > 2 {
		t.Fatalf("an idle node's discovery loop ran %d rounds in 20 intervals", r)
	}
	before := n.ps.discoveryRounds.Load()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = n.ps.Publish(ctx, testRealm+".idle.topic", []byte("x")) // nobody subscribes: what counts is the route
	testnet.Eventually(t, 5*time.Second, func() error {
		if n.ps.discoveryRounds.Load() == before {
			return errors.New("the publish did not wake the discovery loop")
		}
		return nil
	})
	// The route expires after idleRefreshes unused intervals; then the
	// loop sleeps again.
	testnet.Eventually(t, 10*time.Second, func() error {
		r := n.ps.discoveryRounds.Load()
		time.Sleep(5 * refresh)
		if later := n.ps.discoveryRounds.Load(); later != r {
			return fmt.Errorf("the loop still runs (%d rounds in 5 intervals)", later-r)
		}
		return nil
	})
}
