package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"
)

// Event types of GET /v1/subscribe.
const (
	EventMessage = "message"
	EventDropped = "dropped"
	// EventEnded is the last event of a stream whose grant ended (revoked,
	// expired) in a secure realm: {"reason": "..."}; the stream closes.
	EventEnded = "ended"
)

// PublishResult is the answer of POST /v1/publish/{topic}.
type PublishResult struct {
	Topic string `json:"topic"`
}

// SubscribeEvent is one message of a subscription: the data of an "event:
// message" of GET /v1/subscribe.
type SubscribeEvent struct {
	// Topic is the concrete topic the message was published to.
	Topic string `json:"topic"`
	// Payload is the message's payload. It is the JSON value itself when
	// the payload is valid JSON in UTF-8 (PayloadEncoding empty): the
	// bytes as published, or compacted if they held line breaks.
	// Otherwise it is a JSON string holding the bytes in standard base64
	// (PayloadEncoding "base64"). Bytes decodes either.
	Payload         json.RawMessage `json:"payload"`
	PayloadEncoding string          `json:"payload_encoding,omitempty"`
	// Publisher is the did:key of the publishing node.
	Publisher string `json:"publisher"`
	// Time is when it was published, on the publisher's clock.
	Time time.Time `json:"time"`
	// Seq is the publishing node's sequence number of the message: it
	// grows with every message that node publishes, on any topic.
	Seq uint64 `json:"seq"`
}

// PayloadBase64 is the SubscribeEvent.PayloadEncoding of a payload that
// is not JSON.
const PayloadBase64 = "base64"

// Bytes returns the payload as it was published: the JSON text, or the
// decoded base64.
func (e *SubscribeEvent) Bytes() ([]byte, error) {
	if e.PayloadEncoding != PayloadBase64 {
		return []byte(e.Payload), nil
	}
	var s string
	if err := json.Unmarshal(e.Payload, &s); err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	return base64.StdEncoding.DecodeString(s)
}

// SubscribeDropped is the data of an "event: dropped" of GET
// /v1/subscribe: the node dropped messages of this subscription because the
// client did not read them fast enough.
type SubscribeDropped struct {
	// Dropped is the number dropped since the previous report.
	Dropped uint64 `json:"dropped"`
	// Total is the number dropped since the subscription began.
	Total uint64 `json:"total"`
}

// PubSubStats is the answer of GET /v1/pubsub/stats: the counters of the
// node's pubsub service.
type PubSubStats struct {
	// Published counts publishes that were not refused, including
	// waiting ones that timed out (code no_room; their misses are in
	// Dropped).
	Published uint64 `json:"published"`
	// Sent counts message frames written to peers' streams.
	Sent uint64 `json:"sent"`
	// Delivered counts messages handed to local subscriptions.
	Delivered uint64 `json:"delivered"`
	// Dropped is DroppedSend + DroppedLocal.
	Dropped uint64 `json:"dropped"`
	// DroppedSend counts messages for a peer that were not sent: its send
	// queue was full, the message was over its limit, or its stream closed.
	DroppedSend uint64 `json:"dropped_send"`
	// DroppedLocal counts messages not delivered to a local subscription
	// because its queue was full.
	DroppedLocal uint64 `json:"dropped_local"`
	// Queued is the number of messages waiting in the send queues to
	// peers now.
	Queued int `json:"queued"`
	// FramesReceived counts message frames received from peers, whether
	// or not a local subscription wanted them.
	FramesReceived uint64 `json:"frames_received"`
	// DroppedUnauthorized counts message frames received from peers that
	// may not publish to their topic (secure realm): they were dropped.
	DroppedUnauthorized uint64 `json:"dropped_unauthorized"`
	// WithheldUnauthorized counts messages not sent to a subscriber node
	// that may not subscribe to their topic, and messages not given to
	// this node's own subscriptions once its own subscribe right no longer
	// covers them (secure realm).
	WithheldUnauthorized uint64 `json:"withheld_unauthorized"`
	// Subscriptions is the number of live local subscriptions.
	Subscriptions int `json:"subscriptions"`
	// InterestedPeers is the number of peers that announced at least one
	// pattern to this node.
	InterestedPeers int `json:"interested_peers"`
}

// Publish publishes payload to topic, a concrete topic of the node's realm,
// through the node. contentType application/json marks a JSON payload (the
// node checks that it is JSON); anything else, or "", is raw bytes. It
// returns once the node has queued the message for its subscribers:
// delivery is at most once, and a subscriber whose queue is full misses it
// (the node sheds; see PublishWait). A refused publish is an *APIError:
// CodeInvalidName, CodeTooLarge, CodeBadRequest (not JSON).
func (c *Client) Publish(ctx context.Context, topic string, payload []byte, contentType string) error {
	return c.publish(ctx, topic, payload, contentType, nil, http.Header{})
}

// PublishWait is Publish with flow control (POST ?wait=true): the node
// waits for room in every full subscriber queue instead of dropping the
// message there, for at most timeout (0: a tenth inside ctx's deadline if
// it has one, else the node's default of 10s; the node caps it at
// MaxTimeout). Subscribers on other nodes are waited for only if they
// subscribed with backpressure (Subscribe with Backpressure, or package
// pubsub's; see package pubsub, "Flow control").
// When the timeout ends first the error is an *APIError with CodeNoRoom,
// whose Partial says for how many subscribers the message was queued and
// for how many it was dropped.
func (c *Client) PublishWait(ctx context.Context, topic string, payload []byte, contentType string, timeout time.Duration) error {
	h := http.Header{}
	setTimeout(ctx, h, timeout)
	return c.publish(ctx, topic, payload, contentType, url.Values{"wait": {"true"}}, h)
}

// publish sends POST /v1/publish/{topic} with the query q and the headers
// h, to which it adds the content type.
func (c *Client) publish(ctx context.Context, topic string, payload []byte, contentType string, q url.Values, h http.Header) error {
	if contentType == "" {
		contentType = ContentTypeRaw
	}
	h.Set("Content-Type", contentType)
	h.Set("Accept", "application/json")
	_, err := c.doRaw(ctx, scope{cmd: CommandPublish, res: topic}, http.MethodPost, "/v1/publish/"+url.PathEscape(topic), q, h, payload)
	return err
}

// PubSubStats returns the counters of the node's pubsub service.
func (c *Client) PubSubStats(ctx context.Context) (*PubSubStats, error) {
	var out PubSubStats
	if err := c.do(ctx, adminScope, http.MethodGet, "/v1/pubsub/stats", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// maxEventBytes bounds one line of an event stream the client reads: a
// message of pubsub's largest payload (64 MiB) in base64, with room for
// the rest of the event.
const maxEventBytes = 96 << 20

// Subscription is a subscription made through the API: the event stream of
// GET /v1/subscribe, read with Next. It is not safe for concurrent use,
// except Close and Dropped, which may be called while Next waits.
type Subscription struct {
	pattern string
	body    io.ReadCloser
	ctx     context.Context // the request's: ends with Subscribe's ctx, or Close
	cancel  context.CancelFunc
	sc      *bufio.Scanner // owned by Next
	dropped atomic.Uint64
	closed  atomic.Bool
}

// SubscribeOption changes how the node treats a subscription's full queue.
// The zero value changes nothing.
type SubscribeOption struct{ backpressure bool }

// Backpressure asks the node to subscribe with backpressure
// (?backpressure=true, pubsub.Backpressure): when the subscription's
// queue is full because Next is not called fast enough, messages from
// other nodes wait for room instead of being dropped, which slows down
// their publishers that wait (PublishWait) to the pace of this reader. The
// cost is on the node: while the queue is full, the whole stream from each
// such publisher node to it waits (every topic, every subscription), and
// a publisher that does not wait loses its messages at its own full send
// queue instead. A reader that stops calling Next until a write of the
// node's to it has waited 30s is cut off (Next returns an error once it
// has read what was sent), which releases them.
func Backpressure() SubscribeOption { return SubscribeOption{backpressure: true} }

// Subscribe subscribes the node to pattern (an exact topic of its realm,
// or one with "*" and a final ">") and returns once the node has made the
// subscription, so that messages published from then on reach it (once
// the publishers' nodes learnt of it: see package pubsub). Read the
// messages with Next, and Close the subscription when done; ending ctx
// ends it too. By default the node drops messages that Next is too slow
// for (see Dropped); with Backpressure it slows their publishers down
// instead. A refused pattern is an *APIError with CodeInvalidName.
func (c *Client) Subscribe(ctx context.Context, pattern string, opts ...SubscribeOption) (*Subscription, error) {
	const path = "/v1/subscribe"
	ctx, cancel := context.WithCancel(ctx)
	q := url.Values{"pattern": {pattern}}
	for _, o := range opts {
		if o.backpressure {
			q.Set("backpressure", "true")
		}
	}
	u := c.base + path + "?" + q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("api: GET %s: %w", path, err)
	}
	req.Header.Set("Accept", "text/event-stream")
	if err := c.authorize(ctx, req, scope{cmd: CommandSubscribe, res: pattern}); err != nil {
		cancel()
		return nil, err
	}
	resp, err := c.send(req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("api: GET %s: %w", path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
		resp.Body.Close()
		cancel()
		return nil, apiErrorOf(resp.StatusCode, raw)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/event-stream" {
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("api: GET %s: answer of type %q, want text/event-stream", path, resp.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 4096), maxEventBytes)
	return &Subscription{pattern: pattern, body: resp.Body, ctx: ctx, cancel: cancel, sc: sc}, nil
}

// Pattern returns the subscription's pattern.
func (s *Subscription) Pattern() string { return s.pattern }

// Dropped returns how many messages the node dropped for this subscription
// because they were not read fast enough, as of its last report in the
// stream (reports come at most every second, before the messages that
// follow them).
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Next waits for the next message and returns it. It returns io.EOF when
// the node ended the stream (its pubsub or API stopped), net.ErrClosed
// (wrapped) after Close, an error matching ErrUnauthorized when the node
// ended it because its grant no longer holds, and the error of ctx
// (wrapped) when the context given to Subscribe ended. Messages come in the
// order the node received them: in publish order per publisher.
func (s *Subscription) Next() (*SubscribeEvent, error) {
	var typ string
	var data []byte
	hasData := false
	for s.sc.Scan() {
		line := s.sc.Bytes()
		if len(line) == 0 { // the end of an event: dispatch it
			ev, err := s.dispatch(typ, data, hasData)
			if ev != nil || err != nil {
				return ev, err
			}
			typ, data, hasData = "", data[:0], false
			continue
		}
		if line[0] == ':' { // a comment: heartbeat
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "event":
			typ = string(value)
		case "data":
			if hasData {
				data = append(data, '\n')
			}
			data, hasData = append(data, value...), true
		}
	}
	err := s.sc.Err()
	switch {
	case s.closed.Load():
		return nil, fmt.Errorf("api: subscription %s: %w", s.pattern, net.ErrClosed)
	case s.ctx.Err() != nil:
		// The transport's own error for a cancelled request differs
		// between HTTP/1.1 and HTTP/3; the context's is the same.
		return nil, fmt.Errorf("api: subscription %s: %w", s.pattern, s.ctx.Err())
	case err == nil:
		return nil, io.EOF
	}
	return nil, fmt.Errorf("api: subscription %s: %w", s.pattern, err)
}

// dispatch handles one event: a message is returned, a drop report
// recorded, an event of another type ignored (later versions may add
// some).
func (s *Subscription) dispatch(typ string, data []byte, hasData bool) (*SubscribeEvent, error) {
	if !hasData {
		return nil, nil
	}
	switch typ {
	case EventMessage, "":
		var ev SubscribeEvent
		if err := json.Unmarshal(data, &ev); err != nil {
			return nil, fmt.Errorf("api: subscription %s: decoding an event: %w", s.pattern, err)
		}
		return &ev, nil
	case EventDropped:
		var d SubscribeDropped
		if err := json.Unmarshal(data, &d); err == nil {
			s.dropped.Store(d.Total)
		}
	case EventEnded:
		var e struct {
			Reason string `json:"reason"`
		}
		_ = json.Unmarshal(data, &e)
		return nil, fmt.Errorf("api: subscription %s: %w: the node ended it: %s", s.pattern, ErrUnauthorized, e.Reason)
	}
	return nil, nil
}

// Close ends the subscription: the node unsubscribes when it sees the
// stream closed. It is safe to call more than once, and while Next waits
// (Next then returns an error wrapping net.ErrClosed).
func (s *Subscription) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.cancel()
	return s.body.Close()
}
