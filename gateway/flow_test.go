package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	wire "github.com/macula-io/macula/api"
	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/node"
)

// TestPublishWait: POST /v1/publish/{topic}?wait=true waits for room in a
// full subscription instead of dropping (every message arrives, in order),
// answers 503 no_room with Retry-After and what it delivered when its
// timeout ends first, and refuses bad parameters with 400; without wait a
// full subscription drops.
func TestPublishWait(t *testing.T) {
	n := startNode(t, testRealm, "wait")
	g := startGateway(t, n, nil)
	c := clientFor(t, g, "http")
	ctx := ctxFor(t, 60*time.Second)
	topic := testRealm + ".flow"
	sub, ch, err := n.PubSub().SubscribeChan(topic, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()

	// The channel holds one message; the second waits, and times out.
	if err := c.PublishWait(ctx, topic, []byte(`0`), wire.ContentTypeJSON, time.Second); err != nil {
		t.Fatal(err)
	}
	err = c.PublishWait(ctx, topic, []byte(`1`), wire.ContentTypeJSON, 200*time.Millisecond)
	wantAPIError(t, err, http.StatusServiceUnavailable, wire.CodeNoRoom)
	var ae *wire.APIError
	if errors.As(err, &ae) && (ae.Partial == nil || *ae.Partial != wire.PartialDelivery{Queued: 0, Missed: 1}) {
		t.Fatalf("no_room answer %+v, partial %+v; want queued 0, missed 1", ae, ae.Partial)
	}
	t.Log(err)
	st, retry, code, err := post(ctx, g, "/v1/publish/"+topic+"?wait=1&timeout=100ms", "2")
	if err != nil || st != http.StatusServiceUnavailable || code != wire.CodeNoRoom || retry != "1" {
		t.Fatalf("POST ?wait=1: %d %q Retry-After %q %v; want 503 no_room Retry-After 1", st, code, retry, err)
	}
	// Without wait, the full channel drops at once.
	if err := c.Publish(ctx, topic, []byte(`3`), wire.ContentTypeJSON); err != nil {
		t.Fatal(err)
	}
	if d := sub.Dropped(); d != 3 {
		t.Fatalf("the subscription dropped %d, want 3 (two timed out, one shed)", d)
	}
	<-ch // the first

	// A slow reader: every waiting publish arrives, in order.
	const total = 200
	got := make(chan error, 1)
	go func() {
		for i := 0; i < total; i++ {
			m := <-ch
			if want := fmt.Sprint(i); string(m.Payload) != want {
				got <- fmt.Errorf("message %d = %q, want %q", i, m.Payload, want)
				return
			}
			time.Sleep(time.Millisecond)
		}
		got <- nil
	}()
	for i := 0; i < total; i++ {
		if err := c.PublishWait(ctx, topic, fmt.Append(nil, i), wire.ContentTypeJSON, 10*time.Second); err != nil {
			t.Fatalf("PublishWait %d: %v", i, err)
		}
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if d := sub.Dropped(); d != 3 {
		t.Fatalf("the subscription dropped %d, want still 3", d)
	}

	published := n.PubSub().Stats().Published
	for _, path := range []string{"?wait=maybe", "?wait=", "?wait=true&timeout=-1s", "?wait=true&timeout=soon", "?timeout=0"} {
		err := c.raw(ctx, http.MethodPost, "/v1/publish/"+topic+path, http.Header{"Content-Type": {wire.ContentTypeRaw}}, []byte("x"))
		wantAPIError(t, err, http.StatusBadRequest, wire.CodeBadRequest)
	}
	err = c.raw(ctx, http.MethodPost, "/v1/publish/"+topic+"?wait=true", http.Header{wire.TimeoutHeader: {"1 minute"}}, []byte("x"))
	wantAPIError(t, err, http.StatusBadRequest, wire.CodeBadRequest)
	if st := n.PubSub().Stats(); st.Published != published {
		t.Fatalf("stats %+v: bad requests published", st)
	}
}

// Sizes of the flow-control tests across nodes: flowTotal messages of
// flowSize bytes (29 MB), about twice what every buffer between a
// publisher's API and a subscriber's event stream can hold (the
// publisher's send queue of flowPeerQueue messages, the stream's QUIC
// window of up to 10 MiB, the subscription's flowBuffer, the event
// stream's socket buffers, pump's 64 events), so that a publisher that is
// not slowed down outruns a reader that stops.
const (
	flowSize      = 48 << 10
	flowTotal     = 600
	flowPeerQueue = 32
	flowBuffer    = 16
)

// flowPayload is message i of a flow test: a JSON string of flowSize
// bytes that starts with i.
func flowPayload(i int) []byte {
	p := bytes.Repeat([]byte{'x'}, flowSize)
	p[0], p[len(p)-1] = '"', '"'
	copy(p[1:], fmt.Sprintf("%08d", i))
	return p
}

// flowIndex is i of an event of flowPayload(i), or -1.
func flowIndex(ev *wire.SubscribeEvent) int {
	if len(ev.Payload) != flowSize {
		return -1
	}
	i, err := strconv.Atoi(string(ev.Payload[1:9]))
	if err != nil {
		return -1
	}
	return i
}

// flowPair starts a publisher node with a send queue of flowPeerQueue
// messages and its gateway, and a subscriber node whose subscriptions
// hold flowBuffer messages; it returns both nodes and a client of the
// publisher's gateway.
func flowPair(t *testing.T, name string) (pub, sub *node.Node, cp *testClient) {
	t.Helper()
	pub, sub = connectedPairWith(t,
		func(c *node.Config) { c.PubSub.PeerQueue = flowPeerQueue },
		func(c *node.Config) { c.PubSub.SubscriptionBuffer = flowBuffer },
		name+"-pub", name+"-sub")
	return pub, sub, clientFor(t, startGateway(t, pub, nil), "http")
}

// flowPublisher publishes the flowTotal messages of a flow test through a
// gateway with ?wait=true, one after the other, from a goroutine that
// ends when the test's cleanup cancels its context at the latest.
type flowPublisher struct {
	published atomic.Int64
	finished  chan struct{} // closed when the goroutine ends
	err       error         // why it ended early; read after finished
}

func startFlowPublisher(t *testing.T, cp *testClient, topic string) *flowPublisher {
	t.Helper()
	p := &flowPublisher{finished: make(chan struct{})}
	ctx := ctxFor(t, 2*time.Minute)
	go func() {
		defer close(p.finished)
		for i := range flowTotal {
			if err := cp.PublishWait(ctx, topic, flowPayload(i), wire.ContentTypeJSON, 30*time.Second); err != nil {
				p.err = fmt.Errorf("PublishWait %d: %w", i, err)
				return
			}
			p.published.Add(1)
		}
	}()
	return p
}

// stalled waits until the publisher has published everything (false) or
// has made no progress for a second (true: it waits for room).
func (p *flowPublisher) stalled(t *testing.T) bool {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	last, since := p.published.Load(), time.Now()
	for time.Now().Before(deadline) {
		select {
		case <-p.finished:
			if p.err != nil {
				t.Fatal(p.err)
			}
			return false
		case <-time.After(50 * time.Millisecond):
		}
		if n := p.published.Load(); n != last {
			last, since = n, time.Now()
		} else if time.Since(since) > time.Second {
			return true
		}
	}
	t.Fatalf("the publisher neither finished nor stalled in a minute (%d published)", p.published.Load())
	return false
}

// wait waits up to d for the publisher to publish everything.
func (p *flowPublisher) wait(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-p.finished:
		if p.err != nil {
			t.Fatal(p.err)
		}
	case <-time.After(d):
		t.Fatalf("the publisher still waits after %v (%d published)", d, p.published.Load())
	}
}

// TestSubscribeBackpressure: a publisher publishes with ?wait=true through
// one node's API to a subscriber of another node's event stream that stops
// reading, then catches up. With ?backpressure=true the publisher is held
// up while the reader stops, and every message arrives, in order, none
// dropped on either node. Without it, the same publisher is not held up
// and the subscriber's node drops (counts, and tells the client): the
// parameter is what carries the reader's pace to the publisher. A client
// that goes away while it holds the publisher up ends its subscription,
// which releases the publisher (and goleak checks that nothing is left).
func TestSubscribeBackpressure(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  []wire.SubscribeOption
		leave bool // the client closes the stream instead of catching up
	}{
		{name: "shed"},
		{name: "backpressure", opts: []wire.SubscribeOption{wire.Backpressure()}},
		{name: "client gone", opts: []wire.SubscribeOption{wire.Backpressure()}, leave: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			backpressure := len(tc.opts) > 0
			pubNode, subNode, cp := flowPair(t, "bp")
			cs := clientFor(t, startGateway(t, subNode, nil), "http")
			topic := testRealm + ".flow.api"
			sub, err := cs.Subscribe(ctxFor(t, 2*time.Minute), topic, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			evs, errc := pump(t, sub)
			warmUp(t, cp, topic, evs, errc)
			pub0, sub0 := pubNode.PubSub().Stats(), subNode.PubSub().Stats()

			// Nobody takes from evs: the stream is not read.
			p := startFlowPublisher(t, cp, topic)
			stalled := p.stalled(t)
			t.Logf("%s: the publisher stalled %v after %d of %d messages", tc.name, stalled, p.published.Load(), flowTotal)
			if backpressure && !stalled {
				t.Fatalf("the publisher was not held up by a stream nobody reads")
			}
			if tc.leave {
				sub.Close()
				waitSubscriptions(t, subNode, 0)
				p.wait(t, 30*time.Second)
				return
			}

			// Catching up: every message is received or dropped, and those
			// received come in order.
			next, received := 0, 0
			testnet.Eventually(t, time.Minute, func() error {
			drain:
				for {
					select {
					case ev := <-evs:
						i := flowIndex(ev)
						if i < next || backpressure && i != next {
							t.Fatalf("message %d after %d (event %.60q)", i, next-1, ev.Payload)
						}
						next, received = i+1, received+1
					case err := <-errc:
						t.Fatalf("the subscription ended after %d messages: %v", received, err)
					default:
						break drain
					}
				}
				ds := pubNode.PubSub().Stats().DroppedSend - pub0.DroppedSend
				dl := subNode.PubSub().Stats().DroppedLocal - sub0.DroppedLocal
				if got := uint64(received) + ds + dl; got != flowTotal {
					return fmt.Errorf("received %d + dropped %d at the publisher + %d at the subscriber, want %d", received, ds, dl, flowTotal)
				}
				return nil
			})
			p.wait(t, 30*time.Second)
			ds := pubNode.PubSub().Stats().DroppedSend - pub0.DroppedSend
			dl := subNode.PubSub().Stats().DroppedLocal - sub0.DroppedLocal
			t.Logf("%s: received %d, dropped %d at the publisher and %d at the subscriber", tc.name, received, ds, dl)
			switch {
			case ds != 0:
				t.Fatalf("a waiting publisher dropped %d at its send queue", ds)
			case backpressure && (dl != 0 || sub.Dropped() != 0):
				t.Fatalf("with backpressure the subscriber's node dropped %d (the client was told %d)", dl, sub.Dropped())
			case !backpressure && dl == 0:
				t.Fatalf("without backpressure nothing was dropped: the test did not outrun the reader")
			case !backpressure:
				// The drops are reported in the stream, at most every
				// DropReportInterval.
				testnet.Eventually(t, 10*time.Second, func() error {
					if got := sub.Dropped(); got != dl {
						return fmt.Errorf("the client was told of %d drops, want %d", got, dl)
					}
					return nil
				})
			}
		})
	}
}

// TestSubscribeBackpressureStuckClient: a client that stops reading a
// ?backpressure=true stream but keeps its connection open holds the
// publisher up only until a write to it has waited the stream's write
// timeout (here 3s, longer than stalled takes to see the publisher held
// up; eventWriteTimeout in production): then the subscription ends and
// the publisher goes on.
func TestSubscribeBackpressureStuckClient(t *testing.T) {
	_, subNode, cp := flowPair(t, "stuck")
	a := newAPI(subNode, nil, testnet.QuietLogger(), wire.APIAddrs{})
	a.eventWriteTimeout = 3 * time.Second
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	cs := wire.NewClient(strings.TrimPrefix(srv.URL, "http://"))
	t.Cleanup(func() { cs.Close() })
	topic := testRealm + ".flow.stuck"
	sub, err := cs.Subscribe(ctxFor(t, 2*time.Minute), topic, wire.Backpressure())
	if err != nil {
		t.Fatal(err)
	}
	evs, errc := pump(t, sub)
	warmUp(t, cp, topic, evs, errc)

	p := startFlowPublisher(t, cp, topic) // nobody takes from evs again
	if !p.stalled(t) {
		t.Fatalf("the publisher was not held up by a stream nobody reads")
	}
	start := time.Now()
	waitSubscriptions(t, subNode, 0)
	t.Logf("the subscription ended %v after the publisher stalled (%d published)", time.Since(start), p.published.Load())
	p.wait(t, 30*time.Second)
}

// TestSubscribeBackpressureWriteHangs: where the write deadline cannot be
// set (a ResponseWriter that does not support it), a ?backpressure=true
// stream whose write hangs still ends its subscription after the write
// timeout, without waiting for the write.
func TestSubscribeBackpressureWriteHangs(t *testing.T) {
	n := startNode(t, testRealm, "hangs")
	a := newAPI(n, nil, testnet.QuietLogger(), wire.APIAddrs{})
	a.eventWriteTimeout = 100 * time.Millisecond
	w := &gateWriter{open: make(chan struct{}), header: http.Header{}}
	r := httptest.NewRequest(http.MethodGet, "/v1/subscribe?backpressure=true&pattern="+testRealm+".hangs.*", nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.ServeHTTP(w, r)
	}()
	waitSubscriptions(t, n, 1) // the handler now waits in its first write
	waitSubscriptions(t, n, 0)
	close(w.open)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler did not end once its write returned")
	}
}

// TestSubscribeBackpressureBadValue: ?backpressure= takes what
// strconv.ParseBool takes; anything else is 400 bad_request, and nothing
// is subscribed.
func TestSubscribeBackpressureBadValue(t *testing.T) {
	n := startNode(t, testRealm, "bpbad")
	c := clientFor(t, startGateway(t, n, nil), "http")
	ctx := ctxFor(t, 30*time.Second)
	pattern := testRealm + ".bpbad.*"
	for _, q := range []string{"backpressure=maybe", "backpressure=", "backpressure=yes"} {
		err := c.raw(ctx, http.MethodGet, "/v1/subscribe?pattern="+pattern+"&"+q, nil, nil)
		wantAPIError(t, err, http.StatusBadRequest, wire.CodeBadRequest)
	}
	err := c.raw(ctx, http.MethodGet, "/v1/subscribe?pattern=io.other.*&backpressure=true", nil, nil)
	wantAPIError(t, err, http.StatusBadRequest, wire.CodeInvalidName)
	if st := n.PubSub().Stats(); st.Subscriptions != 0 {
		t.Fatalf("%d subscriptions after bad requests", st.Subscriptions)
	}
	sub, err := c.Subscribe(ctx, pattern, wire.Backpressure())
	if err != nil {
		t.Fatal(err)
	}
	waitSubscriptions(t, n, 1)
	sub.Close()
	waitSubscriptions(t, n, 0)
}
