package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	wire "github.com/macula-io/macula/api"
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
	start := time.Now()
	err = c.PublishWait(ctx, topic, []byte(`1`), wire.ContentTypeJSON, 200*time.Millisecond)
	wantAPIError(t, err, http.StatusServiceUnavailable, wire.CodeNoRoom)
	var ae *wire.APIError
	if errors.As(err, &ae) && (ae.Partial == nil || *ae.Partial != wire.PartialDelivery{Queued: 0, Missed: 1}) {
		t.Fatalf("no_room answer %+v, partial %+v; want queued 0, missed 1", ae, ae.Partial)
	}
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Fatalf("no_room after %v, before the timeout", took)
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
