package gateway

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	wire "github.com/macula-io/macula/api"
	"github.com/macula-io/macula/node"
	"github.com/macula-io/macula/pubsub"
	"github.com/macula-io/macula/realm"
	"github.com/macula-io/macula/rpc"
	"github.com/macula-io/macula/ucan"
)

// Timing and limits of the pub/sub routes.
const (
	// HeartbeatInterval is how long an event stream may stay silent: when
	// nothing was sent for this long, the stream gets a comment line, so
	// that the client (and any proxy) sees it is alive and a client that
	// went away is noticed.
	HeartbeatInterval = 15 * time.Second
	// DropReportInterval is the shortest time between two "dropped"
	// events of one stream: drops are reported at most this often, and at
	// the latest this long after they happened.
	DropReportInterval = time.Second
	// eventWriteTimeout bounds the write of one batch of events to a
	// stream's client. A client that does not take a batch in this long is
	// stuck, not slow; its stream is ended (and its subscription with it).
	// For a ?backpressure=true stream it is also the longest a client that
	// stopped reading (but keeps its connection) holds up the streams of
	// the publisher nodes, once its socket buffers and queue are full.
	eventWriteTimeout = 30 * time.Second
	// maxEventBatch is the size, in bytes, after which a stream stops
	// gathering the messages already waiting and writes them with one
	// flush: batching is what keeps a busy stream from costing a flush per
	// message, the bound keeps a batch's latency and memory small.
	maxEventBatch = 64 << 10
)

const publishPattern = "POST /v1/publish/{topic}"

// maxMessageSizeOf returns the payload limit of n's pubsub service. pubsub
// does not export its Config; a service that says its limit
// (MaxMessageSize() int) is believed, else pubsub's default is assumed. A
// smaller limit configured in pubsub is still enforced by Publish itself
// (ErrTooLarge, 413 as well).
func maxMessageSizeOf(n *node.Node) int {
	if n == nil || n.PubSub() == nil {
		return pubsub.DefaultMaxMessageSize
	}
	var ps any = n.PubSub()
	if mm, ok := ps.(interface{ MaxMessageSize() int }); ok && mm.MaxMessageSize() > 0 {
		return mm.MaxMessageSize()
	}
	return pubsub.DefaultMaxMessageSize
}

// Limits of the publish route.
const (
	// DefaultPublishWait bounds a publish with ?wait=true that names no
	// timeout.
	DefaultPublishWait = 10 * time.Second
)

// postPublish publishes the request body to the topic. Publish only queues
// the message for the subscriber nodes (delivery is at most once), so the
// answer is 202 Accepted. With ?wait=true it waits, for at most the
// request's timeout, for room in full subscriber queues rather than drop
// the message there (pubsub.WaitForRoom); when the timeout ends first the
// answer is 503 no_room with Retry-After and what was delivered.
func (a *api) postPublish(r *http.Request) (int, any, error) {
	topic := r.PathValue("topic")
	if err := realm.ValidateTopic(a.n.Realm(), topic); err != nil {
		return 0, nil, newAPIError(http.StatusBadRequest, wire.CodeInvalidName, err.Error())
	}
	wait, err := boolParam(r, "wait")
	if err != nil {
		return 0, nil, err
	}
	// Read (and so checked) even without wait, which alone uses it.
	timeout, err := requestTimeout(r, DefaultPublishWait, wire.MaxTimeout)
	if err != nil {
		return 0, nil, err
	}
	payload, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return 0, nil, newAPIError(http.StatusRequestEntityTooLarge, wire.CodeTooLarge,
				fmt.Sprintf("payload over the limit of %d bytes", a.maxMessage))
		}
		return 0, nil, badRequest("reading the payload: %v", err)
	}
	if codecOf(r.Header.Get("Content-Type")) == rpc.JSON && !json.Valid(payload) {
		return 0, nil, badRequest("the payload is not valid JSON (Content-Type %s); send other payloads as %s", wire.ContentTypeJSON, wire.ContentTypeRaw)
	}
	release, err := a.admit("publishes")
	if err != nil {
		return 0, nil, err
	}
	defer release()
	ctx := r.Context()
	var opts []pubsub.PublishOption
	if wait {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
		opts = append(opts, pubsub.WaitForRoom())
	}
	if err := a.n.PubSub().Publish(ctx, topic, payload, opts...); err != nil {
		var nr *pubsub.NoRoomError
		if errors.As(err, &nr) {
			return 0, nil, &apiError{status: http.StatusServiceUnavailable, code: wire.CodeNoRoom,
				message: fmt.Sprintf("%s: the queues of %d of %d subscribers stayed full for %v; the message was queued for the other %d",
					topic, nr.Missed, nr.Queued+nr.Missed, timeout, nr.Queued),
				partial: &wire.PartialDelivery{Queued: nr.Queued, Missed: nr.Missed}}
		}
		return 0, nil, pubsubError(err)
	}
	return http.StatusAccepted, wire.PublishResult{Topic: topic}, nil
}

// pubsubError turns an error of Publish or Subscribe into an API error
// whose message does not repeat the package name; classify picks the
// status of those it leaves.
func pubsubError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "pubsub: ")
	switch {
	case errors.Is(err, realm.ErrInvalid):
		return newAPIError(http.StatusBadRequest, wire.CodeInvalidName, strings.TrimPrefix(msg, "subscribe: "))
	case errors.Is(err, pubsub.ErrTooLarge):
		return newAPIError(http.StatusRequestEntityTooLarge, wire.CodeTooLarge, msg)
	case errors.Is(err, pubsub.ErrUnauthorized):
		return newAPIError(http.StatusForbidden, wire.CodeUnauthorized, msg)
	case errors.Is(err, pubsub.ErrClosed):
		return newAPIError(http.StatusServiceUnavailable, wire.CodeUnavailable, "the node is stopping")
	case errors.Is(err, pubsub.ErrTooManyPatterns):
		return newAPIError(http.StatusServiceUnavailable, wire.CodeUnavailable, msg)
	}
	return err
}

func (a *api) getPubSubStats(_ *http.Request) (int, any, error) {
	return http.StatusOK, pubsubStatsOf(a.n.PubSub().Stats()), nil
}

// getSubscribe subscribes to ?pattern= and streams the messages as
// server-sent events until the client goes away, the gateway closes (both
// end the request's context), the node's pubsub closes (which closes the
// subscription's channel) or a batch's write takes longer than the
// stream's write timeout. A bad pattern or ?backpressure= is an error
// answer, before anything is subscribed; once the stream has started,
// errors only end it.
func (a *api) getSubscribe(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if !q.Has("pattern") {
		return badRequest("missing query parameter pattern")
	}
	pattern := q.Get("pattern")
	backpressure, err := boolParam(r, "backpressure")
	if err != nil {
		return err
	}
	// The subscription's channel is the stream's bounded queue: by default
	// pubsub drops what does not fit (newest first) and counts it, so a
	// client that reads slowly loses messages and slows down nobody else.
	// With ?backpressure=true the node's stream readers wait for room
	// instead, which slows down waiting publishers on other nodes (and
	// holds up everything else their nodes send this one) at the pace of
	// this client. Whatever ends the stream, the deferred Unsubscribe
	// releases those readers; the write deadline of each batch (in flush)
	// bounds how long a client that stopped reading can hold them.
	var opts []pubsub.SubscribeOption
	if backpressure {
		opts = append(opts, pubsub.Backpressure())
	}
	sub, ch, err := a.n.PubSub().SubscribeChan(pattern, 0, opts...)
	if err != nil {
		return pubsubError(err)
	}
	defer sub.Unsubscribe()
	s := &eventStream{
		w:            w,
		rc:           http.NewResponseController(w),
		sub:          sub,
		ch:           ch,
		heartbeat:    a.heartbeat,
		writeTimeout: a.eventWriteTimeout,
	}
	// In a secure realm the grant is checked again on every message: a
	// subscription outlives no revocation or expiry of what allowed it.
	s.vd, _ = r.Context().Value(verdictKey{}).(*ucan.Verdict)
	if backpressure {
		// The write deadline ends a stuck write, but a ResponseWriter
		// may not support one (NewHandler behind a wrapper that hides
		// it): then this timer still ends the subscription, and so
		// releases the publisher nodes' streams, while the write waits.
		s.stuck = time.AfterFunc(time.Hour, sub.Unsubscribe)
		s.stuck.Stop()
		defer s.stuck.Stop()
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no") // proxies that buffer by default: do not
	w.WriteHeader(http.StatusOK)
	a.log.Debug("subscription stream started", "pattern", pattern, "backpressure", backpressure, "remote", r.RemoteAddr)
	err = s.run(r.Context(), pattern)
	a.log.Debug("subscription stream ended", "pattern", pattern, "remote", r.RemoteAddr,
		"events", s.sent, "dropped", sub.Dropped(), "err", err)
	return nil
}

// eventStream writes the messages of one subscription to one client. It
// lives on the request's goroutine, which alone touches it.
type eventStream struct {
	w         http.ResponseWriter
	rc        *http.ResponseController
	sub       *pubsub.Subscription
	ch        <-chan pubsub.Message
	heartbeat time.Duration
	// writeTimeout bounds the write of one batch (eventWriteTimeout).
	writeTimeout time.Duration
	// stuck unsubscribes when a write takes longer than writeTimeout;
	// nil without backpressure.
	stuck *time.Timer
	vd    *ucan.Verdict // nil: an open realm, nothing to check

	buf        []byte       // the batch being written
	scratch    bytes.Buffer // for compacting a JSON payload
	sent       uint64       // message events put in batches
	reported   uint64       // drops reported so far
	lastReport time.Time    // of the last "dropped" event
	lastWrite  time.Time
}

// run streams until ctx ends, the subscription's channel is closed, or a
// write fails; it returns why it stopped (nil for a closed channel).
func (s *eventStream) run(ctx context.Context, pattern string) error {
	// Clear the write deadline of the batches for whatever the connection
	// serves next.
	defer func() { _ = s.rc.SetWriteDeadline(time.Time{}) }()
	s.buf = append(s.buf[:0], ": subscribed to "...)
	s.buf = append(s.buf, pattern...)
	s.buf = append(s.buf, "\n\n"...)
	if err := s.flush(time.Now()); err != nil {
		return err
	}
	tick := time.NewTicker(min(s.heartbeat, DropReportInterval))
	defer tick.Stop()
	for {
		s.buf = s.buf[:0]
		closed := false
		var now time.Time
		select {
		case <-ctx.Done():
			return ctx.Err()
		case m, ok := <-s.ch:
			if !ok {
				return nil
			}
			if err := s.allowed(m); err != nil {
				return s.end(err)
			}
			s.appendMessage(m)
			// Take what is already waiting, so that a busy stream writes
			// and flushes in batches rather than once per message.
		gather:
			for len(s.buf) < maxEventBatch {
				select {
				case m, ok := <-s.ch:
					if !ok {
						closed = true
						break gather
					}
					if err := s.allowed(m); err != nil {
						if ferr := s.flush(time.Now()); ferr != nil {
							return ferr
						}
						s.buf = s.buf[:0]
						return s.end(err)
					}
					s.appendMessage(m)
				default:
					break gather
				}
			}
			now = time.Now()
		case now = <-tick.C:
			dropsDue := s.sub.Dropped() > s.reported && now.Sub(s.lastReport) >= DropReportInterval
			if !dropsDue && now.Sub(s.lastWrite) < s.heartbeat {
				continue
			}
		}
		if d := s.sub.Dropped(); d > s.reported && now.Sub(s.lastReport) >= DropReportInterval {
			s.buf = fmt.Appendf(s.buf, "event: %s\ndata: {\"dropped\":%d,\"total\":%d}\n\n", wire.EventDropped, d-s.reported, d)
			s.reported, s.lastReport = d, now
		}
		if len(s.buf) == 0 {
			s.buf = append(s.buf, ":\n\n"...) // heartbeat
		}
		if err := s.flush(now); err != nil {
			return err
		}
		if closed {
			return nil
		}
	}
}

// allowed checks the stream's grant for m's topic (nil in an open realm).
func (s *eventStream) allowed(m pubsub.Message) error {
	if s.vd == nil {
		return nil
	}
	return ucan.Check(s.vd, ucan.Subscribe, m.Topic)
}

// end writes the last event, saying why the grant no longer holds, and
// reports it.
func (s *eventStream) end(why error) error {
	s.buf = append(s.buf, "event: "+wire.EventEnded+"\ndata: {\"reason\":"...)
	s.buf = appendJSONString(s.buf, ucan.Reason(why))
	s.buf = append(s.buf, "}\n\n"...)
	if err := s.flush(time.Now()); err != nil {
		return err
	}
	return why
}

// flush writes the batch and flushes it to the client, within
// writeTimeout.
func (s *eventStream) flush(now time.Time) error {
	if err := s.rc.SetWriteDeadline(now.Add(s.writeTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	if s.stuck != nil {
		s.stuck.Reset(s.writeTimeout)
		defer s.stuck.Stop()
	}
	if _, err := s.w.Write(s.buf); err != nil {
		return err
	}
	if err := s.rc.Flush(); err != nil {
		return err
	}
	s.lastWrite = now
	return nil
}

// appendMessage appends one message event:
//
//	event: message
//	data: {"topic":T,"payload":P,"publisher":D,"time":RFC3339Nano,"seq":N}
//
// The data is built by hand so that a JSON payload is embedded as it was
// published, byte for byte (json.Marshal would compact and escape a
// json.RawMessage). An SSE data line cannot hold a line break, so a JSON
// payload that has some (between tokens: JSON strings cannot hold raw
// ones) is compacted first; a payload that is not JSON, or not UTF-8, is
// a base64 string with "payload_encoding":"base64".
func (s *eventStream) appendMessage(m pubsub.Message) {
	b := append(s.buf, "event: "+wire.EventMessage+"\ndata: {\"topic\":"...)
	b = appendJSONString(b, m.Topic)
	b = append(b, `,"payload":`...)
	switch p := m.Payload; {
	case utf8.Valid(p) && json.Valid(p):
		if bytes.ContainsAny(p, "\r\n") {
			s.scratch.Reset()
			_ = json.Compact(&s.scratch, p) // valid: cannot fail
			p = s.scratch.Bytes()
		}
		b = append(b, p...)
	default:
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, p)
		b = append(b, `","payload_encoding":"`+wire.PayloadBase64+`"`...)
	}
	b = append(b, `,"publisher":`...)
	b = appendJSONString(b, m.Publisher)
	b = append(b, `,"time":"`...)
	b = m.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","seq":`...)
	b = strconv.AppendUint(b, m.Seq, 10)
	s.buf = append(b, "}\n\n"...)
	s.sent++
}

// appendJSONString appends s as a JSON string. Topics and DIDs need no
// escaping; anything else goes through encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
