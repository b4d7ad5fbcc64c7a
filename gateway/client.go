package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go/http3"

	"github.com/macula-io/macula/dht"
	"github.com/macula-io/macula/node"
	"github.com/macula-io/macula/pubsub"
	"github.com/macula-io/macula/ucan"
)

// maxResponseBytes bounds an answer the client reads.
const maxResponseBytes = 16 << 20

// Client talks to a node's API. Its methods are safe for concurrent use.
type Client struct {
	// Token, when set, gives the bearer token of each request (see the
	// package doc, Authentication): a secure realm's API asks one of
	// requests from off loopback, and checks one wherever it comes from.
	// It is called once per request, concurrently when requests are, and
	// must return a new invocation each time (an invocation is accepted
	// once); InvocationTokens makes such a function. Set it before the
	// first request and leave it after. nil, or "" returned: no token.
	Token TokenFunc

	base  string // "http://host:port" or "https://host:port"
	hc    *http.Client
	close func() error
}

// TokenRequest is what one request of a Client needs a bearer token for.
type TokenRequest struct {
	// Method and Path are the request's, such as POST and
	// /v1/call/io.acme.orders.place.
	Method, Path string
	// Command is the command the invocation must be for, and Resource the
	// name it must carry as its "resource" argument: the procedure, the
	// topic, the subscription pattern; "" with ucan.All for the routes
	// about the node itself.
	Command  ucan.Command
	Resource string
}

// TokenFunc returns the bearer token of a request: ucan.Chain.String of
// an invocation's proofs (root first) followed by the invocation. An
// error fails the request before it is sent.
type TokenFunc func(ctx context.Context, req TokenRequest) (string, error)

// InvocationTokens returns a TokenFunc that signs a new invocation with key
// for every request, addressed to the node whose did:key is executor,
// proven by proof (the chain granting key's DID what it invokes, root
// first; empty only for the realm authority's own key) and valid for ttl
// (0: one minute; nodes refuse more than their MaxInvocationTTL, 5 minutes
// by default). The executor must be known beforehand (macula-node id on
// the node's host): GET /v1/node itself needs a token from off loopback.
func InvocationTokens(key ed25519.PrivateKey, executor string, proof ucan.Chain, ttl time.Duration) TokenFunc {
	if ttl <= 0 {
		ttl = time.Minute
	}
	return func(_ context.Context, req TokenRequest) (string, error) {
		inv, err := ucan.Invoke(key, ucan.InvokeOptions{
			Executor: executor, Command: req.Command, Resource: req.Resource,
			Proof: proof, Expires: time.Now().Add(ttl),
		})
		if err != nil {
			return "", err
		}
		c := make(ucan.Chain, 0, len(proof)+1)
		return append(append(c, proof...), inv).String(), nil
	}
}

// APIError is an error answer of the API (a status other than 2xx). Network
// failures are not APIErrors but wrapped errors of the transport.
type APIError struct {
	// Status is the HTTP status.
	Status int
	// Code is the API's error code (one of the Code constants), or
	// "http_<status>" when the answer was not an API error body.
	Code    string
	Message string
	// Remote is the handler's own error when Code is CodeRemoteError (a
	// call answered 422); nil otherwise.
	Remote *RemoteDetail
}

// Error returns "CODE: MESSAGE (HTTP status)".
func (e *APIError) Error() string {
	return fmt.Sprintf("%s: %s (HTTP %d)", e.Code, e.Message, e.Status)
}

// Is makes an answer with code unauthenticated match ErrUnauthenticated,
// and one with code unauthorized ErrUnauthorized.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrUnauthenticated:
		return e.Code == CodeUnauthenticated
	case ErrUnauthorized:
		return e.Code == CodeUnauthorized
	}
	return false
}

// NewClient returns a client of the HTTP/1.1 API at addr, "127.0.0.1:7401"
// or "http://127.0.0.1:7401".
func NewClient(addr string) *Client {
	base := strings.TrimRight(addr, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	tr := &http.Transport{
		Proxy:               nil, // the API is local; never send it through a proxy
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 64, // concurrent Calls each hold a connection; keep them for the next
		IdleConnTimeout:     time.Minute,
	}
	return &Client{
		base:  base,
		hc:    &http.Client{Transport: tr},
		close: func() error { tr.CloseIdleConnections(); return nil },
	}
}

// NewHTTP3Client returns a client of the HTTP/3 API at the UDP address addr
// ("127.0.0.1:7401" or "https://127.0.0.1:7401"). tlsConf says which
// certificate to trust, typically a pool holding the gateway's CertPEM; nil
// means the system roots.
func NewHTTP3Client(addr string, tlsConf *tls.Config) *Client {
	base := strings.TrimRight(addr, "/")
	base = strings.TrimPrefix(base, "https://")
	tr := &http3.Transport{TLSClientConfig: tlsConf}
	return &Client{
		base:  "https://" + base,
		hc:    &http.Client{Transport: tr},
		close: tr.Close,
	}
}

// Close releases the client's connections (and, for HTTP/3, its UDP
// socket). The client must not be used after.
func (c *Client) Close() error { return c.close() }

// Node returns the node's identity and state.
func (c *Client) Node(ctx context.Context) (*NodeInfo, error) {
	var out NodeInfo
	if err := c.do(ctx, scope{cmd: ucan.All}, http.MethodGet, "/v1/node", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Peers returns the connected peers of the node's realm.
func (c *Client) Peers(ctx context.Context) ([]Peer, error) {
	var out []Peer
	if err := c.do(ctx, scope{cmd: ucan.All}, http.MethodGet, "/v1/peers", nil, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// NAT returns what the node knows of its NAT, and its realm's security.
func (c *Client) NAT(ctx context.Context) (*NATInfo, error) {
	var out NATInfo
	if err := c.do(ctx, scope{cmd: ucan.All}, http.MethodGet, "/v1/nat", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Resolve resolves a did:key or a did:macula alias of the node's realm. If
// ctx has a deadline, the server's own timeout is set a little inside it.
func (c *Client) Resolve(ctx context.Context, did string) (*node.Resolution, error) {
	var out node.Resolution
	if err := c.do(ctx, scope{cmd: ucan.All}, http.MethodGet, "/v1/resolve/"+url.PathEscape(did), timeoutQuery(ctx, nil), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DHTStats returns the node's DHT statistics.
func (c *Client) DHTStats(ctx context.Context) (*dht.Stats, error) {
	var out dht.Stats
	if err := c.do(ctx, scope{cmd: ucan.All}, http.MethodGet, "/v1/dht/stats", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DHTLookup returns the providers of key that the node finds. If ctx has a
// deadline, the server searches until a little before it; otherwise for
// DefaultLookupTimeout.
func (c *Client) DHTLookup(ctx context.Context, key string) (*LookupResult, error) {
	var out LookupResult
	if err := c.do(ctx, scope{cmd: ucan.All}, http.MethodGet, "/v1/dht/lookup", timeoutQuery(ctx, url.Values{"key": {key}}), nil, &out); err != nil {
		return nil, err
	}
	if out.Providers == nil {
		out.Providers = []Provider{}
	}
	return &out, nil
}

// DHTProvide makes the node provide key from now on.
func (c *Client) DHTProvide(ctx context.Context, key string) error {
	return c.do(ctx, scope{cmd: ucan.All}, http.MethodPost, "/v1/dht/provide", timeoutQuery(ctx, url.Values{"key": {key}}), nil, nil)
}

// LogLevel returns the node's log level: "debug", "info", "warn" or "error".
func (c *Client) LogLevel(ctx context.Context) (string, error) {
	var out LogLevel
	if err := c.do(ctx, scope{cmd: ucan.All}, http.MethodGet, "/v1/log/level", nil, nil, &out); err != nil {
		return "", err
	}
	return out.Level, nil
}

// SetLogLevel sets the node's log level: "debug", "info", "warn" or "error".
func (c *Client) SetLogLevel(ctx context.Context, level string) error {
	return c.do(ctx, scope{cmd: ucan.All}, http.MethodPut, "/v1/log/level", nil, LogLevel{Level: level}, nil)
}

// CallOptions tune one Call.
type CallOptions struct {
	// Timeout bounds the call on the node (the Macula-Timeout header),
	// capped there to MaxCallTimeout. 0: a tenth inside ctx's deadline if
	// it has one, else the node's DefaultCallTimeout.
	Timeout time.Duration
	// ContentType is the payload's media type, which picks its codec:
	// application/json, application/cbor, anything else raw bytes. The
	// reply comes in the same codec. "": raw bytes.
	ContentType string
	// Idempotent lets the node retry the call on another provider when the
	// connection is lost after it was sent (it may then run twice).
	Idempotent bool
}

// Call calls procedure through the node with payload and returns the
// reply. A failed call is an *APIError whose Code says why: CodeNotFound,
// CodeTimeout, CodeDisconnected, CodeRemoteError (with Remote set),
// CodeUnauthorized, CodeInvalidName, CodeTooLarge.
func (c *Client) Call(ctx context.Context, procedure string, payload []byte, opts CallOptions) ([]byte, error) {
	path := "/v1/call/" + url.PathEscape(procedure)
	var q url.Values
	if opts.Idempotent {
		q = url.Values{"idempotent": {"true"}}
	}
	h := http.Header{}
	if opts.ContentType != "" {
		h.Set("Content-Type", opts.ContentType)
	} else {
		h.Set("Content-Type", ContentTypeRaw)
	}
	if opts.Timeout > 0 {
		h.Set(TimeoutHeader, opts.Timeout.String())
	} else if tq := timeoutQuery(ctx, nil); tq != nil {
		h.Set(TimeoutHeader, tq.Get("timeout"))
	}
	return c.doRaw(ctx, scope{cmd: ucan.Call, res: procedure}, http.MethodPost, path, q, h, payload)
}

// Advertise advertises procedure on the node, served by POSTing each call
// to the webhook url (see the package doc for the webhook's contract). With
// a lease, the advertisement ends unless Advertise is called again with the
// same url within the lease; 0 means no lease. Calling it again with the
// same url renews it; another url is a CodeConflict error.
func (c *Client) Advertise(ctx context.Context, procedure, url string, lease time.Duration) error {
	_, err := c.AdvertiseWebhook(ctx, procedure, AdvertiseRequest{URL: url, Lease: durationString(lease)})
	return err
}

// AdvertiseWebhook is Advertise with every field of the request; it
// returns the advertisement as the node holds it.
func (c *Client) AdvertiseWebhook(ctx context.Context, procedure string, req AdvertiseRequest) (*Advertisement, error) {
	var out Advertisement
	if err := c.do(ctx, scope{cmd: ucan.Advertise, res: procedure}, http.MethodPost, "/v1/advertise/"+url.PathEscape(procedure), nil, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Unadvertise withdraws a procedure advertised through the API.
func (c *Client) Unadvertise(ctx context.Context, procedure string) error {
	return c.do(ctx, scope{cmd: ucan.Advertise, res: procedure}, http.MethodDelete, "/v1/advertise/"+url.PathEscape(procedure), nil, nil, nil)
}

// Advertised returns the procedures advertised on the node, with the
// webhook of those advertised through the API.
func (c *Client) Advertised(ctx context.Context) ([]Advertisement, error) {
	var out []Advertisement
	if err := c.do(ctx, scope{cmd: ucan.All}, http.MethodGet, "/v1/advertise", nil, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Publish publishes payload to topic, a concrete topic of the node's realm,
// through the node. contentType application/json marks a JSON payload (the
// node checks that it is JSON); anything else, or "", is raw bytes. It
// returns once the node has queued the message for its subscribers:
// delivery is at most once. A refused publish is an *APIError:
// CodeInvalidName, CodeTooLarge, CodeBadRequest (not JSON).
func (c *Client) Publish(ctx context.Context, topic string, payload []byte, contentType string) error {
	if contentType == "" {
		contentType = ContentTypeRaw
	}
	h := http.Header{"Content-Type": {contentType}, "Accept": {"application/json"}}
	_, err := c.doRaw(ctx, scope{cmd: ucan.Publish, res: topic}, http.MethodPost, "/v1/publish/"+url.PathEscape(topic), nil, h, payload)
	return err
}

// Revoke hands a revocation record (ucan.Revoke, signed by the realm
// authority) to the node, which enforces it at once and passes it on to the
// realm. An open realm answers CodeOpenRealm; a record that is not the
// authority's, CodeBadRequest.
func (c *Client) Revoke(ctx context.Context, record []byte) error {
	h := http.Header{"Content-Type": {ContentTypeRaw}, "Accept": {"application/json"}}
	_, err := c.doRaw(ctx, scope{cmd: ucan.All}, http.MethodPost, "/v1/ucan/revocations", nil, h, record)
	return err
}

// Revocations returns the revocation records in force on the node (none in
// an open realm).
func (c *Client) Revocations(ctx context.Context) ([][]byte, error) {
	var texts []string
	if err := c.do(ctx, scope{cmd: ucan.All}, http.MethodGet, "/v1/ucan/revocations", nil, nil, &texts); err != nil {
		return nil, err
	}
	out := make([][]byte, 0, len(texts))
	for _, t := range texts {
		b, err := base64.RawURLEncoding.DecodeString(t)
		if err != nil {
			return nil, fmt.Errorf("gateway client: GET /v1/ucan/revocations: a record that is not base64url: %w", err)
		}
		out = append(out, b)
	}
	return out, nil
}

// PubSubStats returns the counters of the node's pubsub service.
func (c *Client) PubSubStats(ctx context.Context) (*pubsub.Stats, error) {
	var out pubsub.Stats
	if err := c.do(ctx, scope{cmd: ucan.All}, http.MethodGet, "/v1/pubsub/stats", nil, nil, &out); err != nil {
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

// Subscribe subscribes the node to pattern (an exact topic of its realm,
// or one with "*" and a final ">") and returns once the node has made the
// subscription, so that messages published from then on reach it (once
// the publishers' nodes learnt of it: see package pubsub). Read the
// messages with Next, and Close the subscription when done; ending ctx
// ends it too. A refused pattern is an *APIError with CodeInvalidName.
func (c *Client) Subscribe(ctx context.Context, pattern string) (*Subscription, error) {
	const path = "/v1/subscribe"
	ctx, cancel := context.WithCancel(ctx)
	u := c.base + path + "?" + url.Values{"pattern": {pattern}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("gateway client: GET %s: %w", path, err)
	}
	req.Header.Set("Accept", "text/event-stream")
	if err := c.authorize(ctx, req, scope{cmd: ucan.Subscribe, res: pattern, pattern: true}); err != nil {
		cancel()
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("gateway client: GET %s: %w", path, err)
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
		return nil, fmt.Errorf("gateway client: GET %s: answer of type %q, want text/event-stream", path, resp.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 4096), maxEventBytes)
	return &Subscription{pattern: pattern, body: resp.Body, ctx: ctx, cancel: cancel, sc: sc}, nil
}

// Pattern returns the subscription's pattern.
func (s *Subscription) Pattern() string { return s.pattern }

// Dropped returns how many messages the node dropped for this subscription
// because they were not read fast enough, as of its last report in the
// stream (reports come at most every DropReportInterval, before the
// messages that follow them).
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Next waits for the next message and returns it. It returns io.EOF when
// the node ended the stream (its pubsub or API stopped), net.ErrClosed
// (wrapped) after Close, and the error of ctx (wrapped) when the context
// given to Subscribe ended. Messages come in the order the node received
// them: in publish order per publisher.
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
		return nil, fmt.Errorf("gateway client: subscription %s: %w", s.pattern, net.ErrClosed)
	case s.ctx.Err() != nil:
		// The transport's own error for a cancelled request differs
		// between HTTP/1.1 and HTTP/3; the context's is the same.
		return nil, fmt.Errorf("gateway client: subscription %s: %w", s.pattern, s.ctx.Err())
	case err == nil:
		return nil, io.EOF
	}
	return nil, fmt.Errorf("gateway client: subscription %s: %w", s.pattern, err)
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
			return nil, fmt.Errorf("gateway client: subscription %s: decoding an event: %w", s.pattern, err)
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
		return nil, fmt.Errorf("gateway client: subscription %s: %w: the node ended it: %s", s.pattern, ErrUnauthorized, e.Reason)
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

func durationString(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	return d.String()
}

// timeoutQuery adds ?timeout= a tenth inside ctx's deadline, so that the
// server answers (with what it found) before the caller gives up.
func timeoutQuery(ctx context.Context, q url.Values) url.Values {
	dl, ok := ctx.Deadline()
	if !ok {
		return q
	}
	left := time.Until(dl)
	if left < 100*time.Millisecond {
		return q
	}
	if q == nil {
		q = url.Values{}
	}
	q.Set("timeout", min(left-left/10, MaxTimeout).Truncate(time.Millisecond).String())
	return q
}

// do sends one request and decodes a 2xx answer into out (if not nil) or an
// error answer into an *APIError.
func (c *Client) do(ctx context.Context, sc scope, method, path string, q url.Values, in, out any) error {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("gateway client: %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return fmt.Errorf("gateway client: %s %s: %w", method, path, err)
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if err := c.authorize(ctx, req, sc); err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("gateway client: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return fmt.Errorf("gateway client: %s %s: reading the answer: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return apiErrorOf(resp.StatusCode, raw)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("gateway client: %s %s: decoding the answer: %w", method, path, err)
	}
	return nil
}

// doRaw sends body as it is with the headers h and returns a 2xx answer's
// body as it is, or the error answer as an *APIError.
func (c *Client) doRaw(ctx context.Context, sc scope, method, path string, q url.Values, h http.Header, body []byte) ([]byte, error) {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("gateway client: %s %s: %w", method, path, err)
	}
	maps.Copy(req.Header, h)
	if err := c.authorize(ctx, req, sc); err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("gateway client: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return nil, fmt.Errorf("gateway client: %s %s: reading the answer: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, apiErrorOf(resp.StatusCode, raw)
	}
	return raw, nil
}

// authorize sets the request's bearer token, when the client has a Token.
func (c *Client) authorize(ctx context.Context, req *http.Request, sc scope) error {
	if c.Token == nil {
		return nil
	}
	tok, err := c.Token(ctx, TokenRequest{Method: req.Method, Path: req.URL.Path, Command: sc.cmd, Resource: sc.res})
	if err != nil {
		return fmt.Errorf("gateway client: %s %s: token: %w", req.Method, req.URL.Path, err)
	}
	if tok != "" {
		req.Header.Set("Authorization", BearerScheme+" "+tok)
	}
	return nil
}

// apiErrorOf decodes an error answer; one that is not an API error body
// (a proxy's page, say) keeps its first line as the message.
func apiErrorOf(status int, raw []byte) *APIError {
	var eb errorBody
	if err := json.Unmarshal(raw, &eb); err == nil && eb.Error.Code != "" {
		return &APIError{Status: status, Code: eb.Error.Code, Message: eb.Error.Message, Remote: eb.Error.Remote}
	}
	msg := strings.TrimSpace(string(raw))
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	if len(msg) > 200 {
		msg = msg[:200]
	}
	if msg == "" {
		msg = http.StatusText(status)
	}
	return &APIError{Status: status, Code: fmt.Sprintf("http_%d", status), Message: msg}
}
