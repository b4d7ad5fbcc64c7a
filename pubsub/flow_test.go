package pubsub

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/macula-io/macula/internal/testnet"
)

// waitRoutablePeers waits until pub can route to n subscriber nodes.
func waitRoutablePeers(t testing.TB, pub *testNode, n int) {
	t.Helper()
	testnet.Eventually(t, 10*time.Second, func() error {
		if got := pub.ps.routablePeers(); got != n {
			return fmt.Errorf("the publisher's routable peers: have %v, want %v", got, n)
		}
		return nil
	})
}

// seqPayload is a payload of size bytes that starts with i.
func seqPayload(size, i int) []byte {
	p := bytes.Repeat([]byte{'x'}, size)
	copy(p, fmt.Sprintf("%08d", i))
	return p
}

// TestFlowControlAcrossNodes: a publisher outruns a slow subscriber on
// another node by far more than every queue between them can hold (send
// queue, the stream's QUIC window, the subscription's queue). Shedding, the
// default, loses messages and counts every one; a waiting publisher and a
// Backpressure subscription lose none, in order, and the publisher is
// slowed to the subscriber's pace; a waiting publisher alone is not enough,
// since the subscriber node still sheds.
func TestFlowControlAcrossNodes(t *testing.T) {
	const (
		queue, buffer = 32, 16
		size          = 32 << 10 // 320 messages fill libp2p's 10 MiB stream window
		total         = 2000     // 64 MB: several times everything in between
		delay         = 500 * time.Microsecond
	)
	for _, tc := range []struct {
		name         string
		pubOpts      []PublishOption
		subOpts      []SubscribeOption
		lossless     bool
		droppedLocal bool // the subscriber node drops (and the publisher does not)
	}{
		{name: "shed"},
		{name: "wait", pubOpts: []PublishOption{WaitForRoom()}, subOpts: []SubscribeOption{Backpressure()}, lossless: true},
		{name: "wait, subscriber sheds", pubOpts: []PublishOption{WaitForRoom()}, droppedLocal: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pub := newNode(t, func(c *Config) { c.PeerQueue = queue })
			sub := newNode(t, func(c *Config) { c.SubscriptionBuffer = buffer })
			connect(t, sub.h, pub.h)
			c := &collector{}
			s, err := sub.ps.Subscribe("io.acme.orders.>", func(m Message) {
				time.Sleep(delay)
				c.handle(m)
			}, tc.subOpts...)
			if err != nil {
				t.Fatal(err)
			}
			waitRoutablePeers(t, pub, 1)

			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			start := time.Now()
			for i := 0; i < total; i++ {
				if err := pub.ps.Publish(ctx, "io.acme.orders.placed", seqPayload(size, i), tc.pubOpts...); err != nil {
					t.Fatalf("Publish %d: %v", i, err)
				}
			}
			took := time.Since(start)
			handledAtEnd := c.len() // what the handler had taken when the last Publish returned
			// Every message is accounted for: received, dropped by the
			// publisher, or dropped by the subscriber node.
			testnet.Eventually(t, 30*time.Second, func() error {
				got, ds, dl := c.len(), pub.ps.Stats().DroppedSend, sub.ps.Stats().DroppedLocal
				if uint64(got)+ds+dl != total {
					return fmt.Errorf("received %d + dropped %d at the publisher + %d at the subscriber, want %d", got, ds, dl, total)
				}
				return nil
			})
			pst, sst := pub.ps.Stats(), sub.ps.Stats()
			t.Logf("%s: published %d in %v, received %d, dropped %d at the publisher and %d at the subscriber",
				tc.name, total, took.Round(time.Millisecond), c.len(), pst.DroppedSend, sst.DroppedLocal)
			if s.Dropped() != sst.DroppedLocal {
				t.Fatalf("the subscription dropped %d, its node %d", s.Dropped(), sst.DroppedLocal)
			}
			switch {
			case tc.lossless:
				if pst.DroppedSend != 0 || sst.DroppedLocal != 0 {
					t.Fatalf("lost messages: publisher %+v, subscriber %+v", pst, sst)
				}
				for i, m := range c.all() {
					if want := fmt.Sprintf("%08d", i); string(m.Payload[:8]) != want {
						t.Fatalf("message %d = %q, want %q", i, m.Payload[:8], want)
					}
				}
				// Slowed down: when the last Publish returned, at most
				// what the queues in between hold (about 400 messages)
				// had not reached the handler yet.
				if handledAtEnd < total-500 {
					t.Fatalf("the last Publish returned when the handler had taken %d of %d: the publisher was not held to its pace", handledAtEnd, total)
				}
			case tc.droppedLocal:
				if pst.DroppedSend != 0 || sst.DroppedLocal == 0 {
					t.Fatalf("publisher %+v, subscriber %+v: want drops at the subscriber only", pst, sst)
				}
			default:
				if pst.DroppedSend+sst.DroppedLocal == 0 {
					t.Fatalf("nothing dropped: publisher %+v, subscriber %+v", pst, sst)
				}
			}
		})
	}
}

// TestWaitForRoomDeadline: a waiting Publish whose context ends while a
// local subscription is still full returns a *NoRoomError that matches
// ErrNoRoom and the deadline, and says the message was queued for the
// subscription that had room and dropped (and counted) for the full one.
func TestWaitForRoomDeadline(t *testing.T) {
	const limit = 4
	n := newNode(t, func(c *Config) { c.SubscriptionBuffer = limit })
	release := make(chan struct{})
	t.Cleanup(func() { close(release) }) // before Close, which waits for handlers
	stuck, err := n.ps.Subscribe("io.acme.orders.*", func(Message) { <-release })
	if err != nil {
		t.Fatal(err)
	}
	_, ch, err := n.ps.SubscribeChan("io.acme.orders.*", 100)
	if err != nil {
		t.Fatal(err)
	}
	// The stuck subscription holds limit messages, the one its handler is
	// stuck on included: these go in without waiting.
	for i := 0; i < limit; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := n.ps.Publish(ctx, "io.acme.orders.placed", []byte("fits"), WaitForRoom())
		cancel()
		if err != nil {
			t.Fatalf("Publish %d: %v", i, err)
		}
	}
	const timeout = 100 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err = n.ps.Publish(ctx, "io.acme.orders.placed", []byte("no room"), WaitForRoom())
	var nr *NoRoomError
	if !errors.Is(err, ErrNoRoom) || !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &nr) {
		t.Fatalf("Publish: %v, want a *NoRoomError matching ErrNoRoom and the deadline", err)
	}
	if nr.Queued != 1 || nr.Missed != 1 || nr.Topic != "io.acme.orders.placed" {
		t.Fatalf("NoRoomError %+v, want queued for 1 and missed by 1", nr)
	}
	t.Log(err)
	if got := len(ch); got != limit+1 {
		t.Fatalf("the channel subscription holds %d messages, want %d", got, limit+1)
	}
	if st := n.ps.Stats(); stuck.Dropped() != 1 || st.DroppedLocal != 1 || st.Published != limit+1 {
		t.Fatalf("stuck subscription dropped %d; stats %+v", stuck.Dropped(), st)
	}
	// An ended context is refused before anything is sent.
	if err := n.ps.Publish(ctx, "io.acme.orders.placed", nil, WaitForRoom()); !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrNoRoom) {
		t.Fatalf("Publish with an ended context: %v", err)
	}
}

// TestWaitForRoomUnsubscribe: a waiting Publish blocked on a full channel
// returns when the subscription ends (nothing delivered, nothing counted
// as dropped), and Unsubscribe does not wait for the publisher's deadline.
func TestWaitForRoomUnsubscribe(t *testing.T) {
	n := newNode(t, nil)
	s, ch, err := n.ps.SubscribeChan("io.acme.orders.*", 1)
	if err != nil {
		t.Fatal(err)
	}
	publish(t, n.ps, "io.acme.orders.placed", []byte("fills the channel"))
	done := waitingPublish(t, n.ps, 30*time.Second) // blocked on the full channel
	time.Sleep(20 * time.Millisecond)               // let it reach the send; either way the test holds
	s.Unsubscribe()
	// Not released, the Publish would wait out its 30 s and fail.
	if err := <-done; err != nil {
		t.Fatalf("Publish: %v", err)
	}
	var got []string
	for m := range ch { // closed by Unsubscribe
		got = append(got, string(m.Payload))
	}
	if len(got) > 2 || got[0] != "fills the channel" {
		t.Fatalf("channel held %q", got)
	}
	if st := n.ps.Stats(); st.DroppedLocal != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// A subscription that ends while a waiting Publish is at it is neither
// queued nor missed: the NoRoomError counts only the full queue that the
// deadline cut.
func TestWaitForRoomCountsOnlyFullQueues(t *testing.T) {
	n := newNode(t, nil)
	gone, _, err := n.ps.SubscribeChan("io.acme.orders.*", 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := n.ps.SubscribeChan("io.acme.orders.placed", 1); err != nil {
		t.Fatal(err)
	}
	publish(t, n.ps, "io.acme.orders.placed", []byte("fills both channels"))
	done := waitingPublish(t, n.ps, 2*time.Second)
	time.Sleep(20 * time.Millisecond) // let it reach the sends
	gone.Unsubscribe()
	var nr *NoRoomError
	if err := <-done; !errors.As(err, &nr) || nr.Queued != 0 || nr.Missed != 1 {
		t.Fatalf("Publish: %v (%+v), want a NoRoomError with 0 queued and 1 missed", err, nr)
	}
}

// TestWaitingDoesNotSlowShedding: a node with a stuck Backpressure
// subscription holds up its publisher's waiting Publish (which times out
// with a NoRoomError naming the node as missed), while the same publisher's
// shedding Publishes go on at full speed: the stuck node's full queue drops
// and counts them, and another subscriber node gets every one, in order.
func TestWaitingDoesNotSlowShedding(t *testing.T) {
	const queue, total = 64, 3000
	pub := newNode(t, func(c *Config) { c.PeerQueue = queue })
	slow := newNode(t, func(c *Config) { c.SubscriptionBuffer = 4 })
	fast := newNode(t, nil)
	connect(t, slow.h, pub.h)
	connect(t, fast.h, pub.h)
	release := make(chan struct{})
	var releaseOnce sync.Once
	free := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(free) // before Close, which waits for handlers
	if _, err := slow.ps.Subscribe("io.acme.orders.>", func(Message) { <-release }, Backpressure()); err != nil {
		t.Fatal(err)
	}
	_, c := subscribe(t, fast.ps, "io.acme.orders.fast")
	waitRoutablePeers(t, pub, 2)

	// Fill everything between the publisher and the stuck handler, until
	// a waiting Publish times out.
	payload := bytes.Repeat([]byte{'s'}, 32<<10)
	var nr *NoRoomError
	for i := 0; ; i++ {
		if i > 10000 {
			t.Fatal("a waiting Publish to the stuck node never timed out")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := pub.ps.Publish(ctx, "io.acme.orders.slow", payload, WaitForRoom())
		cancel()
		if err == nil {
			continue
		}
		if !errors.As(err, &nr) || nr.Missed != 1 || nr.Queued != 0 {
			t.Fatalf("waiting Publish %d: %v, want a NoRoomError for the stuck node alone", i, err)
		}
		t.Logf("the waiting publisher timed out after %d messages: %v", i, err)
		break
	}
	// One more waiting publisher stays blocked meanwhile.
	waitCtx, stopWaiting := context.WithCancel(context.Background())
	waiting := make(chan error, 1)
	go func() { waiting <- pub.ps.Publish(waitCtx, "io.acme.orders.slow", payload, WaitForRoom()) }()
	t.Cleanup(func() { stopWaiting(); <-waiting })

	before := pub.ps.Stats().DroppedSend
	var slowest time.Duration
	start := time.Now()
	for i := 0; i < total; i++ {
		t0 := time.Now()
		publish(t, pub.ps, "io.acme.orders.fast", seqPayload(100, i))
		slowest = max(slowest, time.Since(t0))
		if i%queue == queue-1 {
			c.waitLen(t, 10*time.Second, i+1) // pace to the fast node's queue
		}
	}
	c.waitLen(t, 10*time.Second, total)
	t.Logf("%d shedding publishes in %v (paced), the slowest %v", total, time.Since(start).Round(time.Millisecond), slowest)
	if slowest > time.Second {
		t.Fatalf("a shedding Publish took %v", slowest)
	}
	for i, m := range c.all() {
		if want := fmt.Sprintf("%08d", i); string(m.Payload[:8]) != want {
			t.Fatalf("fast node: message %d = %q, want %q", i, m.Payload[:8], want)
		}
	}
	if d := pub.ps.Stats().DroppedSend - before; d != total {
		t.Fatalf("the publisher dropped %d messages for the stuck node, want %d (all)", d, total)
	}
	select {
	case err := <-waiting:
		t.Fatalf("the waiting Publish returned while the node was stuck: %v", err)
	default:
	}
	// Freed, the stuck node takes what waits, and the waiting Publish ends.
	free()
	select {
	case err := <-waiting:
		waiting <- err // for the cleanup
		if err != nil {
			t.Fatalf("the waiting Publish: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the waiting Publish did not end after the node was freed")
	}
	if st := fast.ps.Stats(); st.Dropped != 0 {
		t.Fatalf("fast node stats %+v", st)
	}
}

// waitingPublish starts a Publish that waits for room (the second on
// io.acme.orders.placed, after one that filled the subscriptions' channels),
// with the given deadline, and returns once it has started; its error comes
// on the channel.
func waitingPublish(t *testing.T, ps *PubSub, timeout time.Duration) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		done <- ps.Publish(ctx, "io.acme.orders.placed", []byte("waits"), WaitForRoom())
	}()
	testnet.Eventually(t, 10*time.Second, func() error {
		if ps.Stats().Published != 2 {
			return errors.New("the second Publish has not started")
		}
		return nil
	})
	return done
}
