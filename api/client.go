package api

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
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go/http3"
)

// MaxTimeout caps the ?timeout= of any request but a call: the node counts
// a longer one as this.
const MaxTimeout = 60 * time.Second

// BearerScheme is the scheme of the Authorization header that carries a
// UCAN invocation: "Authorization: Bearer <chain>", where <chain> is the
// text (ucan.Chain.String) of the invocation's proofs, root first, followed
// by the invocation itself.
const BearerScheme = "Bearer"

// The UCAN commands a request's token must be for (TokenRequest.Command):
// the command paths of package ucan (ucan.All, ucan.Call, ...), spelt out
// here so that the client does not link go-ucan.
const (
	// CommandAll is the root command, asked by the routes about the node
	// itself (identity, peers, DHT, NAT, logs, counters, revocations).
	CommandAll       = "/macula"
	CommandCall      = "/macula/call"
	CommandPublish   = "/macula/publish"
	CommandSubscribe = "/macula/subscribe"
	CommandAdvertise = "/macula/advertise"
)

// maxResponseBytes bounds an answer the client reads.
const maxResponseBytes = 16 << 20

// Client talks to a node's API. Its methods are safe for concurrent use.
type Client struct {
	// Token, when set, gives the bearer token of each request (see package
	// gateway, Authentication): a secure realm's API asks one of requests
	// from off loopback, and checks one wherever it comes from. It is
	// called once per request, concurrently when requests are, and must
	// return a new invocation each time (an invocation is accepted once);
	// ucantoken.InvocationTokens makes such a function. Set it before the
	// first request and leave it after. nil, or "" returned: no token.
	Token TokenFunc
	// Credential is the node's local credential (ReadLocalCredential):
	// sent as "Authorization: Macula-Local <Credential>" with every request
	// that has no bearer token, it makes a secure realm's API on loopback
	// act as the node. Set it only for the address it is For (ForHTTP3
	// for a client of NewHTTP3Client).
	Credential string
	// Local lets the client find the credential itself: when the node
	// answers 401 naming its credential file (on loopback, in a secure
	// realm), the client reads it, if it can (it must run as the node's
	// user) and the file is For the client's address, and sends the request
	// again with it, and every later one.
	Local bool

	found atomic.Pointer[string] // the credential learnt from a 401 (Local)
	base  string                 // "http://host:port" or "https://host:port"
	http3 bool                   // over HTTP/3 (UDP); set by NewHTTP3Client
	hc    *http.Client
	close func() error
	// realm is the node's realm, learnt by the registry methods the first
	// time they need a token (see regScope).
	realm atomic.Pointer[string]
}

// TokenRequest is what one request of a Client needs a bearer token for.
type TokenRequest struct {
	// Method and Path are the request's, such as POST and
	// /v1/call/io.acme.orders.place.
	Method, Path string
	// Command is the UCAN command the invocation must be for (one of the
	// Command constants), and Resource the name it must carry as its
	// "resource" argument: the procedure, the topic, the subscription
	// pattern; "" with CommandAll for the routes about the node itself.
	Command  string
	Resource string
}

// TokenFunc returns the bearer token of a request: the text of an
// invocation's proofs (root first) followed by the invocation. An error
// fails the request before it is sent.
type TokenFunc func(ctx context.Context, req TokenRequest) (string, error)

// scope is what a request's token must grant: a command on a resource.
type scope struct {
	cmd string
	res string
}

// adminScope is the scope of the routes about the node itself.
var adminScope = scope{cmd: CommandAll}

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
		http3: true,
		hc:    &http.Client{Transport: tr},
		close: tr.Close,
	}
}

// Close releases the client's connections (and, for HTTP/3, its UDP
// socket). The client must not be used after.
func (c *Client) Close() error { return c.close() }

func durationString(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	return d.String()
}

// setTimeout sets the TimeoutHeader of a request to d, or, when d is 0, to
// a tenth inside ctx's deadline if it has one.
func setTimeout(ctx context.Context, h http.Header, d time.Duration) {
	if d > 0 {
		h.Set(TimeoutHeader, d.String())
	} else if tq := timeoutQuery(ctx, nil); tq != nil {
		h.Set(TimeoutHeader, tq.Get("timeout"))
	}
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
			return fmt.Errorf("api: %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return fmt.Errorf("api: %s %s: %w", method, path, err)
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if err := c.authorize(ctx, req, sc); err != nil {
		return err
	}
	resp, err := c.send(req)
	if err != nil {
		return fmt.Errorf("api: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return fmt.Errorf("api: %s %s: reading the answer: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return apiErrorOf(resp.StatusCode, raw)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("api: %s %s: decoding the answer: %w", method, path, err)
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
		return nil, fmt.Errorf("api: %s %s: %w", method, path, err)
	}
	maps.Copy(req.Header, h)
	if err := c.authorize(ctx, req, sc); err != nil {
		return nil, err
	}
	resp, err := c.send(req)
	if err != nil {
		return nil, fmt.Errorf("api: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return nil, fmt.Errorf("api: %s %s: reading the answer: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, apiErrorOf(resp.StatusCode, raw)
	}
	return raw, nil
}

// authorize sets the request's bearer token, when the client has a Token,
// or else its local credential, when it has one.
func (c *Client) authorize(ctx context.Context, req *http.Request, sc scope) error {
	if c.Token != nil {
		tok, err := c.Token(ctx, TokenRequest{Method: req.Method, Path: req.URL.Path, Command: sc.cmd, Resource: sc.res})
		if err != nil {
			return fmt.Errorf("api: %s %s: token: %w", req.Method, req.URL.Path, err)
		}
		if tok != "" {
			req.Header.Set("Authorization", BearerScheme+" "+tok)
			return nil
		}
	}
	if cred := c.credential(); cred != "" {
		req.Header.Set("Authorization", LocalScheme+" "+cred)
	}
	return nil
}

// apiErrorOf decodes an error answer; one that is not an API error body
// (a proxy's page, say) keeps its first line as the message.
func apiErrorOf(status int, raw []byte) *APIError {
	var eb ErrorBody
	if err := json.Unmarshal(raw, &eb); err == nil && eb.Error.Code != "" {
		return &APIError{Status: status, Code: eb.Error.Code, Message: eb.Error.Message, Remote: eb.Error.Remote, Partial: eb.Error.Partial}
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
