package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/propagation"

	wire "github.com/macula-io/macula/api"
	"github.com/macula-io/macula/rpc"
	"github.com/macula-io/macula/tracing"
)

// Limits of webhook advertisements.
const (
	// MinLease is the shortest lease of an advertisement.
	MinLease = time.Second
	// MaxLease is the longest lease of an advertisement.
	MaxLease = time.Hour
	// DefaultAdvertiseTimeout bounds the wait for the DHT announcement of a
	// new advertisement. The advertisement stands once the handler is
	// registered (connected peers know it at once); an announcement that is
	// not done by then goes on in the background, retried until it is, and
	// the answer says so (Advertisement.Announced false).
	DefaultAdvertiseTimeout = 2 * time.Second
	// maxWebhookErrorBody bounds the error answer read from a webhook.
	maxWebhookErrorBody = 64 << 10
	// maxWebhookMessage bounds the message of a webhook's error, and the
	// part of a non-JSON error body kept as the message.
	maxWebhookMessage = 1 << 10
)

// Headers of a webhook request.
const (
	HeaderProcedure  = "Macula-Procedure"
	HeaderCallerDID  = "Macula-Caller-DID"
	HeaderCallerPeer = "Macula-Caller-Peer"
	HeaderDeadline   = "Macula-Deadline" // RFC 3339 with nanoseconds, UTC
	// HeaderCallerGrant is the caller's grant in a secure realm: one
	// "COMMAND on PATTERN" per value ("/macula/call on io.acme.orders.*"),
	// absent in an open realm. The node has checked the call; a webhook
	// may check one more thing against it.
	HeaderCallerGrant = "Macula-Caller-Grant"
	// headerProcess names the registry process a process webhook's
	// message is for (gateway/registry.go).
	headerProcess = "Macula-Process"
)

// Codes of the remote errors a webhook-advertised procedure answers with
// when its webhook does not answer 2xx with a body. A non-2xx answer
// whose body is not an API error body gets "webhook_<status>".
const (
	CodeWebhookUnreachable = "webhook_unreachable" // the webhook could not be reached
	CodeWebhookTimeout     = "webhook_timeout"     // the webhook did not answer within its timeout
	CodeWebhookTooLarge    = "webhook_too_large"   // the webhook answered more than the payload limit
	CodeWebhookClosed      = "unavailable"         // the gateway stopped while the webhook worked
)

// webhooks holds the procedures advertised through the API, each served by
// POSTing its calls to a URL. Lock order: opMu before mu.
type webhooks struct {
	a *api
	// policy says where webhooks may point; set before serving, read-only
	// after.
	policy *targetPolicy
	// The clients of the webhooks of the node's own user and of other
	// registrants, each with its transport, whose dialer applies policy
	// (so that a connection to a loopback webhook is never reused for
	// another registrant's). Set in newWebhooks, read-only after.
	local, other *http.Client
	ctx          context.Context // lifetime: cancelled by close, which aborts webhook requests
	cancel       context.CancelFunc
	// wg counts the webhook requests in flight and the armed lease timers.
	wg sync.WaitGroup

	// opMu serialises the changes to the node's advertisements (advertise,
	// unadvertise, lease expiry), so that an expiring lease and a new
	// advertisement of the same procedure never interleave. A renewal
	// changes only an entry and takes mu alone.
	opMu sync.Mutex

	// mu guards the fields below it.
	mu      sync.Mutex
	entries map[string]*webhook // by procedure
	closed  bool
}

// webhook is one procedure served by a URL. url and timeout are set before
// it is shared, read-only after; the lease fields are guarded by
// webhooks.mu.
type webhook struct {
	proc    string
	url     string
	local   bool          // registered by the node's own user (see api.isLocal)
	timeout time.Duration // 0: the call's deadline alone
	lease   time.Duration // 0: no lease
	expires time.Time     // zero without a lease
	timer   *time.Timer   // the armed lease timer; nil when none
}

func newWebhooks(a *api, policy *targetPolicy) *webhooks {
	w := &webhooks{a: a, policy: policy, entries: make(map[string]*webhook)}
	w.local, w.other = w.newClient(true), w.newClient(false)
	w.ctx, w.cancel = context.WithCancel(context.Background())
	return w
}

func (w *webhooks) newClient(local bool) *http.Client {
	tr := &http.Transport{
		Proxy:               nil, // never through a proxy: the node dials the target itself, after checking it
		DialContext:         func(ctx context.Context, n, addr string) (net.Conn, error) { return w.policy.dial(ctx, local, n, addr) },
		MaxIdleConnsPerHost: 64, // calls run concurrently; keep their connections
		IdleConnTimeout:     30 * time.Second,
	}
	return &http.Client{
		Transport: tr,
		// A redirect is an answer like any other non-2xx: never followed,
		// so it cannot lead the node anywhere the policy did not check.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// close withdraws every webhook advertisement, aborts the webhook requests
// in flight, and waits for them and for the lease timers.
func (w *webhooks) close() {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.closed = true
	for _, e := range w.entries {
		w.stopTimerLocked(e)
	}
	w.mu.Unlock()
	// Abort first: a webhook request holds no lock, but its call's
	// caller should learn now that nobody will answer.
	w.cancel()
	w.opMu.Lock()
	w.mu.Lock()
	entries := w.entries
	w.entries = map[string]*webhook{}
	w.mu.Unlock()
	for proc := range entries {
		w.unadvertise(proc, "gateway closing")
	}
	w.opMu.Unlock()
	w.wg.Wait()
	w.local.CloseIdleConnections()
	w.other.CloseIdleConnections()
}

func (w *webhooks) stopTimerLocked(e *webhook) {
	if e.timer != nil && e.timer.Stop() {
		w.wg.Done() // its function will not run
	}
	e.timer = nil
}

// armLocked starts e's lease timer for d; the timer's function is counted
// in wg until it has run or been stopped.
func (w *webhooks) armLocked(e *webhook, d time.Duration) {
	w.wg.Add(1)
	e.timer = time.AfterFunc(d, func() { w.expire(e) })
}

// expire ends e's advertisement if its lease has run out; a lease renewed
// since the timer was set re-arms it for the time left.
func (w *webhooks) expire(e *webhook) {
	defer w.wg.Done()
	w.opMu.Lock()
	defer w.opMu.Unlock()
	w.mu.Lock()
	if w.closed || w.entries[e.proc] != e {
		w.mu.Unlock()
		return
	}
	e.timer = nil
	if e.lease == 0 {
		w.mu.Unlock()
		return // renewed without a lease since the timer fired
	}
	if left := time.Until(e.expires); left > 0 {
		w.armLocked(e, left)
		w.mu.Unlock()
		return
	}
	delete(w.entries, e.proc)
	w.mu.Unlock()
	w.unadvertise(e.proc, "lease expired")
}

// unadvertise withdraws proc from the node. Callers hold opMu.
func (w *webhooks) unadvertise(proc, why string) {
	if err := w.a.n.RPC().Unadvertise(proc); err != nil {
		w.a.log.Debug("webhook procedure already withdrawn", "procedure", proc, "reason", why, "err", err)
		return
	}
	w.a.log.Info("webhook procedure unadvertised", "procedure", proc, "reason", why)
}

// advertiseResult says whether advertise made a new advertisement or
// renewed one.
type advertiseResult int

const (
	advertisedNew advertiseResult = iota
	advertisedRenewed
)

// advertise advertises proc served by the webhook, or renews the lease of
// the same webhook's advertisement.
func (w *webhooks) advertise(ctx context.Context, e *webhook) (wire.Advertisement, advertiseResult, error) {
	if ad, ok, err := w.renew(e); ok || err != nil {
		return ad, advertisedRenewed, err
	}
	w.opMu.Lock()
	defer w.opMu.Unlock()
	// Another request may have advertised it while we waited for opMu.
	if ad, ok, err := w.renew(e); ok || err != nil {
		return ad, advertisedRenewed, err
	}
	actx, cancel := context.WithTimeout(ctx, DefaultAdvertiseTimeout)
	defer cancel()
	if err := w.a.n.RPC().Advertise(actx, e.proc, w.handler(e)); err != nil {
		if errors.Is(err, rpc.ErrAlreadyAdvertised) {
			return wire.Advertisement{}, 0, newAPIError(http.StatusConflict, wire.CodeConflict,
				fmt.Sprintf("%s is already advertised on this node otherwise (by the node's own code, or through another API handler)", e.proc))
		}
		return wire.Advertisement{}, 0, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		// Close ran while Advertise did: it did not see this entry.
		w.unadvertise(e.proc, "gateway closing")
		return wire.Advertisement{}, 0, newAPIError(http.StatusServiceUnavailable, wire.CodeUnavailable, "the gateway is closing")
	}
	if e.lease > 0 {
		e.expires = time.Now().Add(e.lease)
		w.armLocked(e, e.lease)
	}
	w.entries[e.proc] = e
	w.a.log.Info("webhook procedure advertised", "procedure", e.proc, "url", e.url, "lease", e.lease)
	return e.advertisement(), advertisedNew, nil
}

// renew extends the lease of proc's advertisement when it has the same URL
// (and takes the new timeout and lease). ok is false when there is none;
// another URL is a conflict.
func (w *webhooks) renew(e *webhook) (ad wire.Advertisement, ok bool, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ad, false, newAPIError(http.StatusServiceUnavailable, wire.CodeUnavailable, "the gateway is closing")
	}
	cur := w.entries[e.proc]
	if cur == nil {
		return ad, false, nil
	}
	if cur.url != e.url {
		return ad, false, newAPIError(http.StatusConflict, wire.CodeConflict,
			fmt.Sprintf("%s is already advertised here with the webhook %s; unadvertise it first", e.proc, cur.url))
	}
	cur.timeout = e.timeout // read by the handler under mu
	cur.lease = e.lease
	if e.lease > 0 {
		cur.expires = time.Now().Add(e.lease)
		if cur.timer == nil {
			w.armLocked(cur, e.lease)
		}
		// An armed timer that fires early re-arms itself for the rest.
	} else {
		cur.expires = time.Time{}
		w.stopTimerLocked(cur)
	}
	return cur.advertisement(), true, nil
}

// remove withdraws proc if it was advertised through the API.
func (w *webhooks) remove(proc string) (wire.Advertisement, error) {
	w.opMu.Lock()
	defer w.opMu.Unlock()
	w.mu.Lock()
	e := w.entries[proc]
	if e != nil {
		w.stopTimerLocked(e)
		delete(w.entries, proc)
	}
	w.mu.Unlock()
	if e == nil {
		if slices.Contains(w.a.n.RPC().Advertised(), proc) {
			return wire.Advertisement{}, newAPIError(http.StatusConflict, wire.CodeConflict,
				fmt.Sprintf("%s is advertised on this node by its own code, not through the API", proc))
		}
		return wire.Advertisement{}, newAPIError(http.StatusNotFound, wire.CodeNotFound, fmt.Sprintf("%s is not advertised on this node", proc))
	}
	w.unadvertise(proc, "unadvertised through the API")
	return e.advertisement(), nil
}

// list returns every procedure advertised on the node, with the webhook of
// those advertised through the API, sorted by name.
func (w *webhooks) list() []wire.Advertisement {
	procs := w.a.n.RPC().Advertised()
	slices.Sort(procs)
	out := make([]wire.Advertisement, 0, len(procs))
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range procs {
		ad := wire.Advertisement{Procedure: p}
		if e := w.entries[p]; e != nil {
			ad = e.advertisement()
		}
		ad.Announced = w.a.n.RPC().Announced(p)
		out = append(out, ad)
	}
	return out
}

// advertisement describes e; the caller holds mu or owns e alone.
func (e *webhook) advertisement() wire.Advertisement {
	ad := wire.Advertisement{Procedure: e.proc, URL: e.url}
	if e.timeout > 0 {
		ad.Timeout = e.timeout.String()
	}
	if e.lease > 0 {
		ad.Lease = e.lease.String()
		exp := e.expires.UTC()
		ad.Expires = &exp
	}
	return ad
}

// handler is the rpc handler of e: it POSTs each call's payload to the
// webhook and answers with the webhook's answer.
func (w *webhooks) handler(e *webhook) rpc.Handler {
	return func(ctx context.Context, req *rpc.Request) ([]byte, error) {
		w.mu.Lock()
		if w.closed {
			w.mu.Unlock()
			return nil, &rpc.RemoteError{Code: CodeWebhookClosed, Message: "the node's API is closing"}
		}
		timeout := e.timeout
		w.wg.Add(1)
		w.mu.Unlock()
		defer w.wg.Done()
		return w.forward(ctx, e, timeout, req)
	}
}

// clientFor returns the client of the webhooks of the node's own user
// (local) or of other registrants.
func (w *webhooks) clientFor(local bool) *http.Client {
	if local {
		return w.local
	}
	return w.other
}

func (w *webhooks) forward(ctx context.Context, e *webhook, timeout time.Duration, req *rpc.Request) ([]byte, error) {
	target, client := e.url, w.clientFor(e.local)
	// The call's context bounds the request, and so do the webhook's own
	// timeout and the gateway's life.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(w.ctx, cancel)
	defer stop()
	if timeout > 0 {
		var tcancel context.CancelFunc
		rctx, tcancel = context.WithTimeout(rctx, timeout)
		defer tcancel()
	}
	hr, err := http.NewRequestWithContext(rctx, http.MethodPost, target, bytes.NewReader(req.Payload))
	if err != nil {
		return nil, &rpc.RemoteError{Code: CodeWebhookUnreachable, Message: err.Error()}
	}
	hr.Header.Set("Content-Type", contentTypeOf(req.Codec))
	hr.Header.Set(HeaderProcedure, req.Procedure)
	hr.Header.Set(HeaderCallerDID, req.Caller.DID)
	hr.Header.Set(HeaderCallerPeer, req.Caller.PeerID.String())
	if req.Verdict != nil {
		if g := req.Verdict.Grant(); !g.Open {
			for _, c := range g.Capabilities {
				hr.Header.Add(HeaderCallerGrant, string(c.Command)+" on "+c.Resource)
			}
		}
	}
	if dl, ok := ctx.Deadline(); ok {
		hr.Header.Set(HeaderDeadline, dl.UTC().Format(time.RFC3339Nano))
	}
	// The caller's trace goes on to the webhook (traceparent, tracestate).
	tracing.Propagator.Inject(ctx, propagation.HeaderCarrier(hr.Header))
	resp, err := client.Do(hr)
	if err != nil {
		return nil, w.failed(ctx, rctx, target, timeout, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		raw, err := io.ReadAll(io.LimitReader(resp.Body, maxWebhookErrorBody))
		if err != nil && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, webhookError(resp.StatusCode, raw)
	}
	limit := w.a.maxPayload
	reply, err := io.ReadAll(io.LimitReader(resp.Body, int64(limit)+1))
	if err != nil {
		return nil, w.failed(ctx, rctx, target, timeout, err)
	}
	if len(reply) > limit {
		return nil, &rpc.RemoteError{Code: CodeWebhookTooLarge, Message: fmt.Sprintf("the webhook answered more than %d bytes", limit)}
	}
	return reply, nil
}

// failed explains a webhook request that got no answer. The call's own end
// (deadline, cancel) is returned as it is, for rpc to report as such.
func (w *webhooks) failed(ctx, rctx context.Context, target string, timeout time.Duration, err error) error {
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case w.ctx.Err() != nil:
		return &rpc.RemoteError{Code: CodeWebhookClosed, Message: "the node's API is closing"}
	case errors.Is(rctx.Err(), context.DeadlineExceeded):
		return &rpc.RemoteError{Code: CodeWebhookTimeout, Message: fmt.Sprintf("the webhook did not answer within %v", timeout)}
	}
	msg := err.Error()
	var ue *url.Error
	if errors.As(err, &ue) {
		msg = ue.Err.Error()
	}
	return &rpc.RemoteError{Code: CodeWebhookUnreachable, Message: fmt.Sprintf("POST %s: %s", target, msg)}
}

// webhookError turns a webhook's non-2xx answer into the call's remote
// error: an API error body {"error":{"code","message"[,"data"]}} is taken
// as it is; anything else becomes webhook_<status> with the body (cut to
// 1 KiB) as the message.
func webhookError(status int, raw []byte) *rpc.RemoteError {
	var body struct {
		Error *struct {
			Code    string          `json:"code"`
			Message string          `json:"message"`
			Data    json.RawMessage `json:"data"`
		} `json:"error"`
	}
	if err := json.Unmarshal(raw, &body); err == nil && body.Error != nil && body.Error.Code != "" {
		re := &rpc.RemoteError{Code: cut(body.Error.Code, 255), Message: cut(body.Error.Message, maxWebhookMessage)}
		if len(body.Error.Data) > 0 && string(body.Error.Data) != "null" {
			re.Data = body.Error.Data
		}
		return re
	}
	msg := strings.TrimSpace(string(raw))
	if msg == "" {
		msg = http.StatusText(status)
	}
	return &rpc.RemoteError{Code: fmt.Sprintf("webhook_%d", status), Message: cut(msg, maxWebhookMessage)}
}

// cut shortens s to at most n bytes, on a UTF-8 boundary.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// refuseWebhookRequest refuses a request that a Macula node made to a
// webhook: aimed at a Macula API, it would act there with whatever that API
// grants its caller (on loopback in an open realm: the node's own rights),
// not the rights of whoever registered the webhook. Every webhook request
// carries Macula-Procedure and Macula-Caller-DID, and a registry process's
// Macula-Process; a program using the API has no reason to send any.
func refuseWebhookRequest(r *http.Request) error {
	if r.Header.Get(HeaderProcedure) == "" && r.Header.Get(HeaderCallerDID) == "" && r.Header.Get(headerProcess) == "" {
		return nil
	}
	return newAPIError(http.StatusForbidden, wire.CodeUnauthorized,
		"a Macula node's webhook request (it carries "+HeaderProcedure+") is never served by a Macula API: it would act with this API's rights, not its sender's")
}

// durationField reads an optional duration of a JSON body ("" is 0).
func durationField(name, s string, lo, hi time.Duration) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 || (d > 0 && (d < lo || d > hi)) {
		return 0, badRequest("%s %q: want 0 or a duration from %v to %v, such as 15s", name, s, lo, hi)
	}
	return d, nil
}

// postAdvertise advertises a procedure served by a webhook, or renews the
// lease of the same webhook's advertisement: 201 for a new one, 200 for a
// renewal.
func (a *api) postAdvertise(r *http.Request) (int, any, error) {
	procedure := r.PathValue("procedure")
	if err := a.checkProcedure(procedure); err != nil {
		return 0, nil, err
	}
	var body wire.AdvertiseRequest
	if err := decodeBody(r, &body, `{"url":"http://127.0.0.1:8080/path","timeout":"30s","lease":"15s"}`); err != nil {
		return 0, nil, err
	}
	local := a.isLocal(r)
	target, err := a.wh.policy.checkURL(r.Context(), body.URL, local)
	if err != nil {
		return 0, nil, err
	}
	timeout, err := durationField("timeout", body.Timeout, time.Millisecond, MaxCallTimeout)
	if err != nil {
		return 0, nil, err
	}
	lease, err := durationField("lease", body.Lease, MinLease, MaxLease)
	if err != nil {
		return 0, nil, err
	}
	ad, res, err := a.wh.advertise(r.Context(), &webhook{proc: procedure, url: target, local: local, timeout: timeout, lease: lease})
	if err != nil {
		return 0, nil, err
	}
	ad.Announced = a.n.RPC().Announced(procedure)
	if res == advertisedNew {
		return http.StatusCreated, ad, nil
	}
	return http.StatusOK, ad, nil
}

func (a *api) deleteAdvertise(r *http.Request) (int, any, error) {
	procedure := r.PathValue("procedure")
	if err := a.checkProcedure(procedure); err != nil {
		return 0, nil, err
	}
	ad, err := a.wh.remove(procedure)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, ad, nil
}

func (a *api) getAdvertised(_ *http.Request) (int, any, error) {
	return http.StatusOK, a.wh.list(), nil
}

// decodeBody decodes a request body of exactly one JSON object into v,
// refusing unknown fields; example shows the expected shape in errors.
func decodeBody(r *http.Request, v any, example string) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return newAPIError(http.StatusRequestEntityTooLarge, wire.CodeTooLarge, fmt.Sprintf("body over %d bytes", MaxBodyBytes))
		}
		return badRequest("body: want %s: %v", example, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("body: want one JSON object %s", example)
	}
	return nil
}
