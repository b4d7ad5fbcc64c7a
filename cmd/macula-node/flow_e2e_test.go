package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/macula-io/macula/api"
	"github.com/macula-io/macula/internal/testnet"
)

// TestFlowControlEndToEnd: flow control across real processes. A publisher
// publishes with ?wait=true through the API of one macula-node run process
// to a subscriber of another's (GET /v1/subscribe?backpressure=true) that
// stops reading its event stream. The publisher is held up once the queues
// in between are full (the event stream's TCP connection, the subscriber
// node's subscription, the QUIC stream between the nodes, the publisher
// node's send queue: some 85 MB of these messages with the defaults) and
// its next publish ends with no_room after its wait; nothing is dropped
// until then. Once the subscriber reads again it gets every message that
// was accepted, in order, the publisher goes on at its pace, and neither
// node dropped anything but the one message the publisher was told had no
// room. (The subscriber is the test's API client, not a `macula-node
// subscribe` process: that would print the 85 MB; the CLI's flag is
// TestSubscribeBackpressureFlag's.)
func TestFlowControlEndToEnd(t *testing.T) {
	t.Parallel()
	const (
		realmName = "io.e2e.flow"
		topic     = realmName + ".orders.placed"
		size      = 16 << 10 // the queues in between hold about 5,300 (the send queue's 64 MiB most of it)
		most      = 20000    // far more than they hold: the publisher must stall before
		after     = 200      // published once the subscriber goes on again
		wait      = 2 * time.Second
	)
	p := startRunNode(t, realmName, "p")
	p.waitReady(t)
	s := startRunNode(t, realmName, "s", p.st.Addrs[0])
	s.waitReady(t)
	cp, cs := apiClient(t, p), apiClient(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	sub, err := cs.Subscribe(ctx, topic, api.Backpressure())
	if err != nil {
		t.Fatal(err)
	}
	readerDone := make(chan struct{})
	defer func() {
		sub.Close()
		cancel()
		<-readerDone
	}()
	// The reader hands over each message's index; while the test takes
	// none, it reads nothing more: the event stream is not read.
	got := make(chan int)
	readErr := make(chan error, 1)
	go func() {
		defer close(readerDone)
		for {
			ev, err := sub.Next()
			if err != nil {
				readErr <- err
				return
			}
			b, err := ev.Bytes()
			i, aerr := strconv.Atoi(string(b[:min(8, len(b))]))
			if err != nil || aerr != nil {
				readErr <- fmt.Errorf("event %.40q: not a message of this test", ev.Payload)
				return
			}
			select {
			case got <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	next := func(within time.Duration) (int, error) {
		select {
		case i := <-got:
			return i, nil
		case err := <-readErr:
			return 0, fmt.Errorf("the subscription ended: %w", err)
		case <-time.After(within):
			return 0, errors.New("no message")
		}
	}

	payload := func(i int) []byte {
		b := []byte(strings.Repeat("x", size))
		copy(b, fmt.Sprintf("%08d", i))
		return b
	}
	// Warm-up: until p knows s's interest, a message reaches nobody.
	// Warm-up messages are numbered below 0.
	warm := -1
	testnet.Eventually(t, 30*time.Second, func() error {
		if err := cp.Publish(ctx, topic, payload(warm), api.ContentTypeRaw); err != nil {
			t.Fatalf("warm-up publish: %v", err)
		}
		warm--
		if _, err := next(200 * time.Millisecond); err != nil {
			return fmt.Errorf("the subscriber got no warm-up message: %w", err)
		}
		return nil
	})
	// Until the warm-up messages in flight have arrived.
	for {
		if _, err := next(time.Second); err != nil {
			break
		}
	}
	ps0, ss0 := pubsubStats(t, p), pubsubStats(t, s)

	// Nobody takes from got now: the subscriber reads nothing.
	var accepted []int
	var noRoom *api.APIError
	start := time.Now()
	for i := 0; i < most && noRoom == nil; i++ {
		err := cp.PublishWait(ctx, topic, payload(i), api.ContentTypeRaw, wait)
		switch {
		case err == nil:
			accepted = append(accepted, i)
		case errors.As(err, &noRoom) && noRoom.Code == api.CodeNoRoom:
		default:
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	held := time.Since(start)
	if noRoom == nil {
		t.Fatalf("%d messages of %d bytes published in %v to a stopped subscriber: the publisher was never held up", most, size, held)
	}
	t.Logf("held up after %d messages (%v): %v", len(accepted), held.Round(time.Millisecond), noRoom)
	if noRoom.Partial == nil || noRoom.Partial.Missed != 1 {
		t.Fatalf("no_room answer %+v: want one subscriber missed", noRoom.Partial)
	}

	// The subscriber reads again: every accepted message arrives, in
	// order, and nothing else; the publisher goes on at the reader's pace.
	want := accepted
	received := 0
	check := func(i int) {
		if received >= len(want) || i != want[received] {
			exp := "nothing"
			if received < len(want) {
				exp = strconv.Itoa(want[received])
			}
			t.Fatalf("message %d received is %d, want %s", received, i, exp)
		}
		received++
	}
	published := make(chan error, 1)
	last := want[len(want)-1] + 1 // the one that had no room
	extra := make([]int, 0, after)
	for i := range after {
		extra = append(extra, last+1+i)
	}
	want = append(want, extra...)
	go func() {
		for _, n := range extra {
			if err := cp.PublishWait(ctx, topic, payload(n), api.ContentTypeRaw, 10*time.Second); err != nil {
				published <- fmt.Errorf("publish %d once the subscriber reads again: %w", n, err)
				return
			}
		}
		published <- nil
	}()
	for received < len(want) {
		i, err := next(30 * time.Second)
		if err != nil {
			t.Fatalf("after %d of %d messages: %v", received, len(want), err)
		}
		check(i)
	}
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	if i, err := next(time.Second); err == nil {
		t.Fatalf("message %d received after the %d accepted", i, len(want))
	}
	ps, ss := pubsubStats(t, p), pubsubStats(t, s)
	if d := ss.DroppedLocal - ss0.DroppedLocal; d != 0 {
		t.Errorf("the subscriber's node dropped %d messages", d)
	}
	if d := ps.DroppedSend - ps0.DroppedSend; d != 1 {
		t.Errorf("the publisher's node dropped %d messages at its send queue, want 1 (the one without room)", d)
	}
	if sub.Dropped() != 0 {
		t.Errorf("the subscriber was told of %d drops", sub.Dropped())
	}
}
