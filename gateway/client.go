package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/quic-go/quic-go/http3"

	"github.com/macula-io/macula/dht"
	"github.com/macula-io/macula/nat"
	"github.com/macula-io/macula/node"
)

// maxResponseBytes bounds an answer the client reads.
const maxResponseBytes = 16 << 20

// Client talks to a node's API. Its methods are safe for concurrent use.
type Client struct {
	base  string // "http://host:port" or "https://host:port"
	hc    *http.Client
	close func() error
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
	if err := c.do(ctx, http.MethodGet, "/v1/node", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Peers returns the connected peers of the node's realm.
func (c *Client) Peers(ctx context.Context) ([]Peer, error) {
	var out []Peer
	if err := c.do(ctx, http.MethodGet, "/v1/peers", nil, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// NAT returns what the node knows of its NAT.
func (c *Client) NAT(ctx context.Context) (*nat.Info, error) {
	var out nat.Info
	if err := c.do(ctx, http.MethodGet, "/v1/nat", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Resolve resolves a did:key or a did:macula alias of the node's realm. If
// ctx has a deadline, the server's own timeout is set a little inside it.
func (c *Client) Resolve(ctx context.Context, did string) (*node.Resolution, error) {
	var out node.Resolution
	if err := c.do(ctx, http.MethodGet, "/v1/resolve/"+url.PathEscape(did), timeoutQuery(ctx, nil), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DHTStats returns the node's DHT statistics.
func (c *Client) DHTStats(ctx context.Context) (*dht.Stats, error) {
	var out dht.Stats
	if err := c.do(ctx, http.MethodGet, "/v1/dht/stats", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DHTLookup returns the providers of key that the node finds. If ctx has a
// deadline, the server searches until a little before it; otherwise for
// DefaultLookupTimeout.
func (c *Client) DHTLookup(ctx context.Context, key string) (*LookupResult, error) {
	var out LookupResult
	if err := c.do(ctx, http.MethodGet, "/v1/dht/lookup", timeoutQuery(ctx, url.Values{"key": {key}}), nil, &out); err != nil {
		return nil, err
	}
	if out.Providers == nil {
		out.Providers = []Provider{}
	}
	return &out, nil
}

// DHTProvide makes the node provide key from now on.
func (c *Client) DHTProvide(ctx context.Context, key string) error {
	return c.do(ctx, http.MethodPost, "/v1/dht/provide", timeoutQuery(ctx, url.Values{"key": {key}}), nil, nil)
}

// LogLevel returns the node's log level: "debug", "info", "warn" or "error".
func (c *Client) LogLevel(ctx context.Context) (string, error) {
	var out LogLevel
	if err := c.do(ctx, http.MethodGet, "/v1/log/level", nil, nil, &out); err != nil {
		return "", err
	}
	return out.Level, nil
}

// SetLogLevel sets the node's log level: "debug", "info", "warn" or "error".
func (c *Client) SetLogLevel(ctx context.Context, level string) error {
	return c.do(ctx, http.MethodPut, "/v1/log/level", nil, LogLevel{Level: level}, nil)
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
	return c.doRaw(ctx, http.MethodPost, path, q, h, payload)
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
	if err := c.do(ctx, http.MethodPost, "/v1/advertise/"+url.PathEscape(procedure), nil, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Unadvertise withdraws a procedure advertised through the API.
func (c *Client) Unadvertise(ctx context.Context, procedure string) error {
	return c.do(ctx, http.MethodDelete, "/v1/advertise/"+url.PathEscape(procedure), nil, nil, nil)
}

// Advertised returns the procedures advertised on the node, with the
// webhook of those advertised through the API.
func (c *Client) Advertised(ctx context.Context) ([]Advertisement, error) {
	var out []Advertisement
	if err := c.do(ctx, http.MethodGet, "/v1/advertise", nil, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
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
func (c *Client) do(ctx context.Context, method, path string, q url.Values, in, out any) error {
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
func (c *Client) doRaw(ctx context.Context, method, path string, q url.Values, h http.Header, body []byte) ([]byte, error) {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("gateway client: %s %s: %w", method, path, err)
	}
	maps.Copy(req.Header, h)
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
