package gateway

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	wire "github.com/macula-io/macula/api"
	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/node"
	"github.com/macula-io/macula/pubsub"
)

// pump reads sub's messages onto a channel until Next fails, and then sends
// the error on errc. The test's cleanup closes sub and waits for it.
func pump(t *testing.T, sub *wire.Subscription) (<-chan *wire.SubscribeEvent, <-chan error) {
	t.Helper()
	evs := make(chan *wire.SubscribeEvent, 64)
	errc := make(chan error, 1)
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			ev, err := sub.Next()
			if err != nil {
				errc <- err
				return
			}
			select {
			case evs <- ev:
			case <-stop:
				return
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		sub.Close()
		<-done
	})
	return evs, errc
}

// nextEvent waits for the next event of a pump.
func nextEvent(t *testing.T, evs <-chan *wire.SubscribeEvent, errc <-chan error, d time.Duration) *wire.SubscribeEvent {
	t.Helper()
	select {
	case ev := <-evs:
		return ev
	case err := <-errc:
		t.Fatalf("the subscription ended: %v", err)
	case <-time.After(d):
		t.Fatalf("no event within %v", d)
	}
	return nil
}

// warmUp publishes through pub to topic until the subscription gets one of
// those messages: then the publisher's node routes to the subscriber's. It
// drains the warm-up messages that follow, up to a marker.
func warmUp(t *testing.T, pub *testClient, topic string, evs <-chan *wire.SubscribeEvent, errc <-chan error) {
	t.Helper()
	const payload = `{"warmup":true}`
	// Waiting for the subscriber to get a message on topic.
	testnet.Eventually(t, 15*time.Second, func() error {
		if err := pub.Publish(ctxFor(t, 5*time.Second), topic, []byte(payload), wire.ContentTypeJSON); err != nil {
			return err
		}
		select {
		case ev := <-evs:
			if ev.Topic != topic || string(ev.Payload) != payload {
				t.Fatalf("warm-up got %+v", ev)
			}
			return nil
		case err := <-errc:
			t.Fatalf("the subscription ended: %v", err)
		case <-time.After(200 * time.Millisecond):
		}
		return errors.New("nothing yet")
	})
	// Warm-ups still in flight come before a marker, in publish order.
	marker := `{"warmup":"done"}`
	if err := pub.Publish(ctxFor(t, 5*time.Second), topic, []byte(marker), wire.ContentTypeJSON); err != nil {
		t.Fatal(err)
	}
	for {
		ev := nextEvent(t, evs, errc, 10*time.Second)
		if string(ev.Payload) == marker {
			return
		}
		if string(ev.Payload) != payload {
			t.Fatalf("during the warm-up: %+v", ev)
		}
	}
}

// TestPubSub publishes through one node's API and receives through another
// node's event stream, over HTTP/1.1 and HTTP/3: JSON payloads stay JSON
// (byte for byte), others come in base64, in publish order, and nothing
// that does not match arrives.
func TestPubSub(t *testing.T) {
	pubNode, subNode := connectedPair(t, "pub", "sub")
	gp, gs := startGateway(t, pubNode, nil), startGateway(t, subNode, nil)

	for _, proto := range []string{"http", "http3"} {
		t.Run(proto, func(t *testing.T) {
			cp, cs := clientFor(t, gp, proto), clientFor(t, gs, proto)
			base := testRealm + ".events." + proto
			sub, err := cs.Subscribe(ctxFor(t, time.Minute), base+".*")
			if err != nil {
				t.Fatal(err)
			}
			if sub.Pattern() != base+".*" {
				t.Errorf("Pattern() = %q", sub.Pattern())
			}
			evs, errc := pump(t, sub)
			warmUp(t, cp, base+".warmup", evs, errc)

			type msg struct {
				topic, ct string
				payload   []byte
				// wantJSON is the payload field wanted ("" for base64).
				wantJSON string
			}
			msgs := []msg{
				{base + ".placed", wire.ContentTypeJSON, []byte(`{"id": 42, "name": "x"}`), `{"id": 42, "name": "x"}`},
				{base + ".raw", wire.ContentTypeRaw, []byte{0, 1, 0xff, '\n'}, ""},
				{base + ".deep.nomatch", wire.ContentTypeJSON, []byte(`{"id":1}`), "-"}, // two segments: no match
				{base + ".multiline", wire.ContentTypeJSON, []byte("{\n  \"a\": [1, 2],\r\n  \"b\": \"x y\"\n}\n"), `{"a":[1,2],"b":"x y"}`},
				{base + ".text", "", []byte("hello"), ""},
				{base + ".number", "", []byte("123"), "123"}, // raw, but JSON: comes as JSON
				{base + ".empty", "", nil, ""},
				{base + ".latin1", wire.ContentTypeRaw, []byte("\"caf\xe9\""), ""}, // JSON syntax, not UTF-8
				{base + ".end", wire.ContentTypeJSON, []byte(`"end"`), `"end"`},
			}
			for _, m := range msgs {
				if err := cp.Publish(ctxFor(t, 5*time.Second), m.topic, m.payload, m.ct); err != nil {
					t.Fatalf("publish %s: %v", m.topic, err)
				}
			}
			var lastSeq uint64
			for _, m := range msgs {
				if m.wantJSON == "-" {
					continue
				}
				ev := nextEvent(t, evs, errc, 10*time.Second)
				if ev.Topic != m.topic {
					t.Fatalf("got topic %s, want %s (event %+v)", ev.Topic, m.topic, ev)
				}
				got, err := ev.Bytes()
				switch {
				case m.wantJSON != "":
					if ev.PayloadEncoding != "" || string(ev.Payload) != m.wantJSON {
						t.Errorf("%s: payload %s (encoding %q), want the JSON %s", m.topic, ev.Payload, ev.PayloadEncoding, m.wantJSON)
					}
				default:
					if ev.PayloadEncoding != wire.PayloadBase64 || err != nil || !bytes.Equal(got, m.payload) {
						t.Errorf("%s: payload %s (encoding %q) = %q, %v; want base64 of %q", m.topic, ev.Payload, ev.PayloadEncoding, got, err, m.payload)
					}
				}
				if ev.Publisher != pubNode.DID() || ev.Seq <= lastSeq || time.Since(ev.Time) > time.Minute || ev.Time.After(time.Now()) {
					t.Errorf("%s: publisher %s, seq %d (previous %d), time %v", m.topic, ev.Publisher, ev.Seq, lastSeq, ev.Time)
				}
				lastSeq = ev.Seq
			}
			select {
			case ev := <-evs:
				t.Errorf("an event after the last: %+v", ev)
			default:
			}

			st, err := cs.PubSubStats(ctxFor(t, 5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			if st.Subscriptions != 1 || st.FramesReceived == 0 || st.Delivered == 0 {
				t.Errorf("subscriber's stats = %+v", st)
			}
			st, err = cp.PubSubStats(ctxFor(t, 5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			if st.Published < uint64(len(msgs)) || st.InterestedPeers != 1 || st.Sent == 0 {
				t.Errorf("publisher's stats = %+v", st)
			}
		})
	}

	t.Run("wire format", func(t *testing.T) {
		// The stream as any SSE client sees it, over plain net/http.
		topic := testRealm + ".events.wire.placed"
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+gs.Addr()+"/v1/subscribe?pattern="+topic, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" || resp.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("answer %d, headers %v", resp.StatusCode, resp.Header)
		}
		lines := make(chan string, 100)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				lines <- sc.Text()
			}
		}()
		if l := <-lines; l != ": subscribed to "+topic {
			t.Fatalf("first line %q", l)
		}
		cp := clientFor(t, gp, "http")
		re := regexp.MustCompile(`^data: \{"topic":"` + regexp.QuoteMeta(topic) + `","payload":\{"id": 7\},"publisher":"` +
			regexp.QuoteMeta(pubNode.DID()) + `","time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z","seq":\d+\}$`)
		// Waiting for a message on the raw stream.
		testnet.Eventually(t, 15*time.Second, func() error {
			if err := cp.Publish(ctxFor(t, 5*time.Second), topic, []byte(`{"id": 7}`), wire.ContentTypeJSON); err != nil {
				return err
			}
			for {
				select {
				case l := <-lines:
					switch {
					case l == "event: message" || l == "":
						continue
					case re.MatchString(l):
						return nil
					}
					t.Fatalf("unexpected line %q", l)
				case <-time.After(200 * time.Millisecond):
					return errors.New("nothing yet")
				}
			}
		})
		cancel()
		for range lines {
		}
	})
}

// TestPubSubBadInput checks the answers to bad topics, patterns and
// payloads, and that the node serves on after each.
func TestPubSubBadInput(t *testing.T) {
	n := startNode(t, testRealm, "bad")
	g := startGateway(t, n, nil)
	for _, proto := range []string{"http", "http3"} {
		t.Run(proto, func(t *testing.T) {
			c := clientFor(t, g, proto)
			ctx := ctxFor(t, 30*time.Second)
			for _, topic := range []string{
				testRealm + ".*", testRealm + ".>", testRealm + ".a.*.b", testRealm + "..x", testRealm + ".x.",
				"io.other.realm.x", testRealm, "io.acme", testRealm + ".-upper", strings.ToUpper(testRealm) + ".x", testRealm + "." + strings.Repeat("x", 300),
			} {
				err := c.Publish(ctx, topic, []byte(`{}`), wire.ContentTypeJSON)
				wantAPIError(t, err, http.StatusBadRequest, wire.CodeInvalidName)
			}
			for _, pattern := range []string{
				"io.other.>", "io.acme.*", testRealm, testRealm + "..*", testRealm + ".>.x", testRealm + ".a>", "", ">.x",
			} {
				_, err := c.Subscribe(ctx, pattern)
				wantAPIError(t, err, http.StatusBadRequest, wire.CodeInvalidName)
			}
			err := c.raw(ctx, http.MethodGet, "/v1/subscribe", nil, nil)
			wantAPIError(t, err, http.StatusBadRequest, wire.CodeBadRequest)

			topic := testRealm + ".bad." + proto
			for _, body := range []string{``, `{`, `{"a":1} x`, "\xff"} {
				err := c.Publish(ctx, topic, []byte(body), wire.ContentTypeJSON)
				wantAPIError(t, err, http.StatusBadRequest, wire.CodeBadRequest)
			}
			err = c.Publish(ctx, topic, make([]byte, pubsub.DefaultMaxMessageSize+1), wire.ContentTypeRaw)
			wantAPIError(t, err, http.StatusRequestEntityTooLarge, wire.CodeTooLarge)
			if err := c.Publish(ctx, topic, make([]byte, pubsub.DefaultMaxMessageSize), ""); err != nil {
				t.Errorf("a payload of exactly the limit: %v", err)
			}
			err = c.raw(ctx, http.MethodGet, "/v1/publish/"+topic, nil, nil)
			wantAPIError(t, err, http.StatusMethodNotAllowed, wire.CodeMethodNotAllowed)

			// The node serves on: a subscription gets a local publish.
			sub, err := c.Subscribe(ctx, topic)
			if err != nil {
				t.Fatal(err)
			}
			evs, errc := pump(t, sub)
			if err := c.Publish(ctx, topic, []byte(`"still here"`), wire.ContentTypeJSON); err != nil {
				t.Fatal(err)
			}
			if ev := nextEvent(t, evs, errc, 10*time.Second); string(ev.Payload) != `"still here"` {
				t.Errorf("after bad input: %+v", ev)
			}
		})
	}
	st, err := clientFor(t, g, "http").PubSubStats(ctxFor(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	// The two payloads of exactly the limit and the two "still here".
	if st.Published != 4 {
		t.Errorf("published %d after bad input, want 4: %+v", st.Published, st)
	}
}

// subscriptions polls the node's count of live subscriptions until it is
// want.
func waitSubscriptions(t *testing.T, n *node.Node, want int) {
	t.Helper()
	testnet.Eventually(t, 10*time.Second, func() error {
		if got := n.PubSub().Stats().Subscriptions; got != want {
			return fmt.Errorf("%d subscriptions on the node, want %d", got, want)
		}
		return nil
	})
}

// TestSubscribeEnds checks that an event stream's handler ends, and its
// subscription with it, when the client closes it, when the client's
// context ends, and when the gateway closes (goleak checks the goroutines
// at the end of the package).
func TestSubscribeEnds(t *testing.T) {
	n := startNode(t, testRealm, "ends")
	pattern := testRealm + ".ends.>"
	for _, proto := range []string{"http", "http3"} {
		t.Run(proto, func(t *testing.T) {
			g := startGateway(t, n, nil)
			c := clientFor(t, g, proto)

			sub, err := c.Subscribe(ctxFor(t, time.Minute), pattern)
			if err != nil {
				t.Fatal(err)
			}
			waitSubscriptions(t, n, 1)
			if err := sub.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if _, err := sub.Next(); !errors.Is(err, net.ErrClosed) {
				t.Errorf("Next after Close: %v, want net.ErrClosed", err)
			}
			waitSubscriptions(t, n, 0)

			ctx, cancel := context.WithCancel(context.Background())
			sub, err = c.Subscribe(ctx, pattern)
			if err != nil {
				t.Fatal(err)
			}
			waitSubscriptions(t, n, 1)
			cancel()
			if _, err := sub.Next(); !errors.Is(err, context.Canceled) {
				t.Errorf("Next after the context ended: %v, want context.Canceled", err)
			}
			sub.Close()
			waitSubscriptions(t, n, 0)

			// Two streams open when the gateway closes: Close ends their
			// handlers (it waits for them), so the node has no subscription
			// left when it returns, and the clients see the end.
			var subs []*wire.Subscription
			for range 2 {
				sub, err := c.Subscribe(ctxFor(t, time.Minute), pattern)
				if err != nil {
					t.Fatal(err)
				}
				subs = append(subs, sub)
			}
			waitSubscriptions(t, n, 2)
			nexts := make(chan error, len(subs))
			for _, sub := range subs {
				go func() {
					_, err := sub.Next()
					nexts <- err
				}()
			}
			start := time.Now()
			if err := g.Close(); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("Close took %v with two streams open", d)
			}
			if got := n.PubSub().Stats().Subscriptions; got != 0 {
				t.Errorf("%d subscriptions left after the gateway closed", got)
			}
			for range subs {
				select {
				case err := <-nexts:
					if err == nil {
						t.Errorf("Next returned a message after the gateway closed")
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("Next still waits 5s after the gateway closed")
				}
			}
			for _, sub := range subs {
				sub.Close()
			}
		})
	}
}

// gateWriter is a ResponseWriter whose writes wait until open is closed: a
// client that does not read.
type gateWriter struct {
	open   chan struct{}
	header http.Header
	mu     sync.Mutex
	buf    bytes.Buffer
}

func (w *gateWriter) Header() http.Header { return w.header }
func (w *gateWriter) WriteHeader(int)     {}
func (w *gateWriter) Flush()              {}
func (w *gateWriter) Write(p []byte) (int, error) {
	<-w.open
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *gateWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// TestEventStreamSlowClient holds an event stream's writes while 1500
// messages are published: the subscription keeps the first 1024 (its
// channel), drops the newest 476 and says so in an "event: dropped"; an
// idle stream gets heartbeats.
func TestEventStreamSlowClient(t *testing.T) {
	n := startNode(t, testRealm, "slow")
	a := newAPI(n, nil, testnet.QuietLogger(), wire.APIAddrs{})
	a.heartbeat = 50 * time.Millisecond
	const total, kept = 1500, pubsub.DefaultSubscriptionBuffer
	topic := testRealm + ".slow.x"

	w := &gateWriter{open: make(chan struct{}), header: http.Header{}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := httptest.NewRequest(http.MethodGet, "/v1/subscribe?pattern="+testRealm+".slow.*", nil).WithContext(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.ServeHTTP(w, r)
	}()
	waitSubscriptions(t, n, 1) // the handler now waits in its first write
	for i := range total {
		if err := n.PubSub().Publish(ctx, topic, fmt.Appendf(nil, `{"i":%d}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	close(w.open)
	// Waiting for the stream to catch up and beat.
	testnet.Eventually(t, 10*time.Second, func() error {
		out := w.String()
		if c := strings.Count(out, "event: message\n"); c != kept || !strings.Contains(out, "event: dropped\n") ||
			!strings.Contains(out, "\n\n:\n\n") {
			return fmt.Errorf("%d messages, dropped event %v, heartbeat %v",
				c, strings.Contains(out, "event: dropped"), strings.Contains(out, "\n\n:\n\n"))
		}
		return nil
	})
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler did not end with its request's context")
	}
	waitSubscriptions(t, n, 0)
	out := w.String()
	if ct := w.header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type %q", ct)
	}
	if !strings.Contains(out, "event: dropped\ndata: {\"dropped\":476,\"total\":476}\n\n") {
		t.Errorf("no report of 476 drops in %.300q...", out[strings.Index(out, "event: dropped"):])
	}

	// The client's parser on the same stream: the first 1024 messages in
	// order, and the drops.
	replay := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, out)
	}))
	defer replay.Close()
	rc := wire.NewClient(replay.URL)
	defer rc.Close()
	s, err := rc.Subscribe(ctxFor(t, 10*time.Second), "p")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range kept {
		ev, err := s.Next()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if ev.Topic != topic || string(ev.Payload) != fmt.Sprintf(`{"i":%d}`, i) || ev.Publisher != n.DID() {
			t.Fatalf("message %d = %+v", i, ev)
		}
	}
	if _, err := s.Next(); err != io.EOF {
		t.Errorf("after the messages: %v, want io.EOF", err)
	}
	if s.Dropped() != 476 {
		t.Errorf("Dropped() = %d, want 476", s.Dropped())
	}
}

// TestSubscribeStuckClient closes the gateway while an event stream's
// handler is blocked writing to a client that reads nothing (its socket
// buffers and flow control windows full of 1 MiB messages): Close must not
// wait for the client.
func TestSubscribeStuckClient(t *testing.T) {
	n := startNode(t, testRealm, "stuck")
	topic := testRealm + ".stuck.x"
	payload := bytes.Repeat([]byte{0xff}, pubsub.DefaultMaxMessageSize) // base64: 1.4 MB an event
	for _, proto := range []string{"http", "http3"} {
		t.Run(proto, func(t *testing.T) {
			g := startGateway(t, n, nil)
			sub, err := clientFor(t, g, proto).Subscribe(ctxFor(t, time.Minute), topic)
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			waitSubscriptions(t, n, 1)
			for range 40 { // 56 MB of events, never read
				if err := n.PubSub().Publish(context.Background(), topic, payload); err != nil {
					t.Fatal(err)
				}
			}
			start := time.Now()
			if err := g.Close(); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("Close took %v with a stuck client", d)
			}
			if got := n.PubSub().Stats().Subscriptions; got != 0 {
				t.Errorf("%d subscriptions left after the gateway closed", got)
			}
		})
	}
}
