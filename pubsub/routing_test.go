package pubsub

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/realm"
)

type published struct {
	topic   string
	payload string
}

// TestRoutingByPattern: one publisher, three subscriber nodes with an exact,
// a "*" and a ">" pattern, and a node whose subscription matches none of
// the traffic. Each gets exactly what its pattern matches, in publish order,
// and the fourth gets no message frame at all until the sentinel it asked
// for.
func TestRoutingByPattern(t *testing.T) {
	pub := newNode(t, nil)
	subs := []struct {
		pattern string
		n       *testNode
		c       *collector
	}{
		{pattern: "io.acme.orders.placed"},
		{pattern: "io.acme.orders.*"},
		{pattern: "io.acme.orders.eu.>"},
		{pattern: "io.acme.orders.archive.*.closed"},
	}
	for i := range subs {
		subs[i].n = newNode(t, nil)
		connect(t, subs[i].n.h, pub.h)
	}
	for i := range subs {
		_, subs[i].c = subscribe(t, subs[i].n.ps, subs[i].pattern)
	}
	// The quiet node also waits for a sentinel, published last.
	const sentinel = "io.acme.orders.archive.sentinel.closed"
	testnet.Eventually(t, 10*time.Second, func() error {
		if n := pub.ps.routablePeers(); n != len(subs) {
			return fmt.Errorf("the publisher has %d routable peers, want every subscriber (%d)", n, len(subs))
		}
		return nil
	})

	topics := []string{
		"io.acme.orders.placed",
		"io.acme.orders.shipped",
		"io.acme.orders.eu.placed",
		"io.acme.orders.eu.de.berlin",
		"io.acme.orders.us",
		"io.acme.orders.placed.late",
		"io.acme.orders.archive.x",
	}
	var sent []published
	for i := 0; i < 700; i++ {
		p := published{topic: topics[i%len(topics)], payload: fmt.Sprintf("m%d", i)}
		publish(t, pub.ps, p.topic, []byte(p.payload))
		sent = append(sent, p)
	}
	publish(t, pub.ps, sentinel, []byte("end"))
	sent = append(sent, published{sentinel, "end"})

	for _, s := range subs {
		var want []published
		for _, p := range sent {
			if realm.Match(s.pattern, p.topic) {
				want = append(want, p)
			}
		}
		testnet.Eventually(t, 10*time.Second, func() error {
			if n := s.c.len(); n < len(want) {
				return fmt.Errorf("%d messages for %s, want %d", n, s.pattern, len(want))
			}
			return nil
		})
		got := s.c.all()
		if len(got) != len(want) {
			t.Fatalf("%s: got %d messages, want %d", s.pattern, len(got), len(want))
		}
		var lastSeq uint64
		for i, m := range got {
			if m.Topic != want[i].topic || string(m.Payload) != want[i].payload {
				t.Fatalf("%s: message %d = %s %q, want %s %q", s.pattern, i, m.Topic, m.Payload, want[i].topic, want[i].payload)
			}
			if m.Seq <= lastSeq {
				t.Fatalf("%s: seq %d after %d", s.pattern, m.Seq, lastSeq)
			}
			lastSeq = m.Seq
			if m.PublisherPeer != pub.h.ID() || m.Publisher != pub.ps.did || m.Publisher == "" || m.Time.IsZero() {
				t.Fatalf("%s: publisher %s %s time %v", s.pattern, m.PublisherPeer, m.Publisher, m.Time)
			}
		}
		st := s.n.ps.Stats()
		if st.FramesReceived != uint64(len(want)) {
			t.Errorf("%s: %d message frames received, want %d (one per matching message)", s.pattern, st.FramesReceived, len(want))
		}
		if st.Delivered != uint64(len(want)) || st.Dropped != 0 {
			t.Errorf("%s: stats %+v", s.pattern, st)
		}
	}
	quiet := subs[3]
	if st := quiet.n.ps.Stats(); st.FramesReceived != 1 {
		t.Errorf("the node with a non-matching subscription got %d message frames, want 1 (the sentinel)", st.FramesReceived)
	}
	st := pub.ps.Stats()
	if st.Published != uint64(len(sent)) || st.InterestedPeers != len(subs) || st.DroppedSend != 0 {
		t.Errorf("publisher stats %+v", st)
	}
	var frames uint64
	for _, s := range subs {
		frames += s.n.ps.Stats().FramesReceived
	}
	testnet.Eventually(t, 5*time.Second, func() error {
		if got := pub.ps.Stats().Sent; got != frames {
			return fmt.Errorf("frames sent: have %v, want %v (the frames received)", got, frames)
		}
		return nil
	})
}

// TestLocalAndChannel: a publisher's own subscriptions get its messages;
// a channel subscription closes on Unsubscribe and on Close.
func TestLocalAndChannel(t *testing.T) {
	n := newNode(t, nil)
	_, c := subscribe(t, n.ps, "io.acme.orders.>")
	s1, ch1, err := n.ps.SubscribeChan("io.acme.orders.local", 4)
	if err != nil {
		t.Fatal(err)
	}
	_, ch2, err := n.ps.SubscribeChan("io.acme.orders.*", 0)
	if err != nil {
		t.Fatal(err)
	}
	payload := []byte("hello")
	publish(t, n.ps, "io.acme.orders.local", payload)
	payload[0] = 'j' // the caller may reuse its buffer
	publish(t, n.ps, "io.acme.orders.local", nil)
	for _, ch := range []<-chan Message{ch1, ch2} {
		m := <-ch
		if m.Topic != "io.acme.orders.local" || string(m.Payload) != "hello" || m.Seq != 1 || m.Publisher != n.ps.did {
			t.Fatalf("got %+v", m)
		}
		if m := <-ch; m.Payload == nil || len(m.Payload) != 0 || m.Seq != 2 {
			t.Fatalf("empty message = %+v", m)
		}
	}
	c.waitLen(t, 5*time.Second, 2)
	s1.Unsubscribe()
	s1.Unsubscribe()
	if _, ok := <-ch1; ok {
		t.Fatal("channel open after Unsubscribe")
	}
	if s1.Pattern() != "io.acme.orders.local" {
		t.Fatalf("Pattern = %q", s1.Pattern())
	}
	if st := n.ps.Stats(); st.Subscriptions != 2 || st.Published != 2 || st.Delivered != 6 || st.Sent != 0 {
		t.Fatalf("stats %+v", st)
	}
	if err := n.ps.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-ch2; ok {
		t.Fatal("channel open after Close")
	}
	if !slices.Equal([]string{string(Protocol(testRealm))}, []string{"/macula/io.acme.orders/pubsub/1.0.0"}) {
		t.Fatalf("Protocol = %s", Protocol(testRealm))
	}
}
