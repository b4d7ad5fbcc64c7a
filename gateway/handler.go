package gateway

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/macula-io/macula/actors"
	wire "github.com/macula-io/macula/api"
	"github.com/macula-io/macula/dht"
	"github.com/macula-io/macula/metrics"
	"github.com/macula-io/macula/node"
	"github.com/macula-io/macula/peerdid"
	"github.com/macula-io/macula/pubsub"
	"github.com/macula-io/macula/realm"
	"github.com/macula-io/macula/registry"
	"github.com/macula-io/macula/rpc"
	"github.com/macula-io/macula/ucan"
)

// Limits and timeouts of the API.
const (
	// MaxBodyBytes bounds a request body; a bigger one is answered 413.
	MaxBodyBytes = 64 << 10
	// DefaultResolveTimeout bounds GET /v1/resolve/{did}.
	DefaultResolveTimeout = 10 * time.Second
	// DefaultLookupTimeout bounds GET /v1/dht/lookup; the providers found by
	// then are the answer.
	DefaultLookupTimeout = 5 * time.Second
	// DefaultProvideTimeout bounds the wait for the announcement of POST
	// /v1/dht/provide; one not done by then goes on in the background,
	// retried until it is, and the answer says so (202, announced false).
	DefaultProvideTimeout = 2 * time.Second
	// DefaultLookupLimit is the number of providers a lookup stops at.
	DefaultLookupLimit = 20
	// MaxLookupLimit caps ?limit= of a lookup.
	MaxLookupLimit = 1000
	// statsTimeout bounds GET /v1/dht/stats, which only reads local state.
	statsTimeout = 10 * time.Second
)

// api is the node's HTTP API. Every request runs on the server's goroutine
// and ends with it; the only state that outlives a request is the webhook
// advertisements (wh), whose lease timers and webhook requests wh counts and
// close stops.
type api struct {
	n      *node.Node     // set at construction, read-only after
	levels *slog.LevelVar // nil: the log level endpoints answer 501
	log    *slog.Logger   // set at construction, read-only after
	addrs  wire.APIAddrs  // set at construction, read-only after
	mux    *http.ServeMux // the routes; read-only after construction
	routes []string       // the patterns, in order; read-only after construction
	// bodyLimits are the request body limits of routes that take more
	// than MaxBodyBytes, by pattern; read-only after construction.
	bodyLimits map[string]int64
	// maxPayload bounds a call's payload and a webhook's answer: the rpc
	// service's limit. Set at construction, read-only after.
	maxPayload int
	// maxMessage bounds a published payload: the pubsub service's limit.
	// Set at construction, read-only after.
	maxMessage int
	// heartbeat is how long an event stream stays silent before it gets a
	// comment line: HeartbeatInterval, or less in tests. Set at
	// construction, read-only after.
	heartbeat time.Duration
	// eventWriteTimeout bounds the write of one batch of events to an
	// event stream's client: eventWriteTimeout, or less in tests. Set at
	// construction, read-only after.
	eventWriteTimeout time.Duration
	// cred is the local credential (see Loopback in the package doc);
	// credFile the file a Gateway keeps it in, "" when none. Set before
	// serving, read-only after.
	cred, credFile string
	wh             *webhooks // webhook advertisements; set at construction
	// actors is the node's actor system (nil: the actor routes answer
	// not_enabled); set before serving, read-only after.
	actors *actors.System
	// reg is the node's registry (nil: the registry routes answer
	// not_enabled); set before serving, read-only after.
	reg *registry.Registry
	// procs are the processes made through the API; set at construction.
	procs *apiProcs
	// metrics are the node's metrics (nil: /metrics answers not_enabled
	// and the dashboard shows no per-procedure figures); set before
	// serving, read-only after.
	metrics *metrics.Metrics
	// meshes is the last realm picture (ops.go).
	meshes meshCache
	// inFlight holds a token per call or publish in flight (overload.go);
	// set at construction.
	inFlight chan struct{}
}

// NewHandler returns the node's API as one http.Handler, with the routes
// listed in the package doc. levels is the log level the API reads and sets;
// nil makes /v1/log/level answer 501. The handler logs through
// slog.Default(), and its NodeInfo has no API addresses. It has no Close:
// procedures advertised through it with a webhook stay until DELETE, their
// lease, or the node's Close; webhook URLs follow the rules of Webhook
// targets with an empty allow-list. A Gateway withdraws its own in Close.
// In a secure realm it enforces the rules of Authentication (package doc),
// taking the request's RemoteAddr as the client's address: serve it only
// where that address is the real one. It has no local credential that
// anyone could read, so there every request needs a bearer token.
func NewHandler(n *node.Node, levels *slog.LevelVar) http.Handler {
	return newAPI(n, levels, slog.Default(), wire.APIAddrs{})
}

func newAPI(n *node.Node, levels *slog.LevelVar, log *slog.Logger, addrs wire.APIAddrs) *api {
	a := &api{n: n, levels: levels, log: log, addrs: addrs, mux: http.NewServeMux(),
		bodyLimits: map[string]int64{}, maxPayload: maxPayloadOf(n),
		maxMessage: maxMessageSizeOf(n), heartbeat: HeartbeatInterval, eventWriteTimeout: eventWriteTimeout}
	a.inFlight = make(chan struct{}, maxInFlight)
	a.cred = rand.Text()
	policy, _ := newTargetPolicy(nil, func() string { return a.addrs.HTTP }) // no entries: no error
	a.wh = newWebhooks(a, policy)
	a.handle("GET /v1/node", adminScope, a.getNode)
	a.handle("GET /v1/peers", adminScope, a.getPeers)
	a.handle("GET /v1/resolve/{did}", adminScope, a.getResolve)
	a.handle("GET /v1/dht/stats", adminScope, a.getDHTStats)
	a.handle("GET /v1/dht/lookup", adminScope, a.getDHTLookup)
	a.handle("POST /v1/dht/provide", adminScope, a.postDHTProvide)
	a.handle("GET /v1/nat", adminScope, a.getNAT)
	a.handle("POST /v1/nat/probe", adminScope, a.postNATProbe)
	a.handle("GET /v1/log/level", adminScope, a.getLogLevel)
	a.handle("PUT /v1/log/level", adminScope, a.putLogLevel)
	a.handleRaw(callPattern, pathScope(ucan.Call, "procedure"), a.postCall)
	a.bodyLimits[callPattern] = int64(a.maxPayload)
	a.handle("GET /v1/advertise", adminScope, a.getAdvertised)
	a.handle("POST /v1/advertise/{procedure}", pathScope(ucan.Advertise, "procedure"), a.postAdvertise)
	a.handle("DELETE /v1/advertise/{procedure}", pathScope(ucan.Advertise, "procedure"), a.deleteAdvertise)
	a.handle(publishPattern, pathScope(ucan.Publish, "topic"), a.postPublish)
	a.bodyLimits[publishPattern] = int64(a.maxMessage)
	a.handleRaw("GET /v1/subscribe", subscribeScope, a.getSubscribe)
	a.handle("GET /v1/pubsub/stats", adminScope, a.getPubSubStats)
	a.handle("GET /v1/ucan/revocations", adminScope, a.getRevocations)
	a.handle("POST /v1/ucan/revocations", adminScope, a.postRevocation)
	a.actorRoutes()
	a.registryRoutes()
	a.memberRoutes()
	a.opsRoutes()
	return a
}

// close withdraws the webhook advertisements and waits for their timers
// and requests, and ends the processes made through the API. The Gateway
// calls it once its servers have stopped.
func (a *api) close() {
	// Processes first: their webhook requests use wh's clients, whose idle
	// connections wh.close closes.
	a.procs.close()
	a.wh.close()
}

// apiFunc is a route's handler: it returns the status and the value to send
// as JSON, or an error that writeError turns into an error answer.
type apiFunc func(r *http.Request) (status int, v any, err error)

// handle registers a route answered in JSON. Its requests are authorized
// for the scope sf first (see authorize).
func (a *api) handle(pattern string, sf scopeFunc, f apiFunc) {
	a.routes = append(a.routes, pattern)
	a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if err := a.authorize(r, sf); err != nil {
			a.writeError(w, r, err)
			return
		}
		status, v, err := f(r)
		if err != nil {
			a.writeError(w, r, err)
			return
		}
		if status == http.StatusNoContent {
			w.Header().Del("Content-Type")
			w.WriteHeader(status)
			return
		}
		writeJSON(w, status, v)
	})
}

// verdictKey carries, in a raw route's request context, the verdict the
// request acts on in a secure realm (see authorizeVerdict).
type verdictKey struct{}

// handleRaw registers a route that writes its own successful answer (not
// JSON); an error it returns becomes an error answer as usual. Its
// requests are authorized for the scope sf first.
func (a *api) handleRaw(pattern string, sf scopeFunc, f func(w http.ResponseWriter, r *http.Request) error) {
	a.routes = append(a.routes, pattern)
	a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		vd, err := a.authorizeVerdict(r, sf)
		if err == nil {
			if vd != nil {
				r = r.WithContext(context.WithValue(r.Context(), verdictKey{}, vd))
			}
			err = f(w, r)
		}
		if err != nil {
			a.writeError(w, r, err)
		}
	})
}

// ServeHTTP serves one request. It answers in JSON even where ServeMux would
// write text: no route (404) and a route without this method (405).
func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if err := refuseWebhookRequest(r); err != nil {
		a.writeError(w, r, err)
		return
	}
	h, pattern := a.mux.Handler(r)
	if _, route := h.(http.HandlerFunc); pattern != "" && !route {
		// ServeMux redirects a path it would clean (a doubled slash, a dot
		// segment) or that lacks a subtree's trailing slash, with an empty
		// body: a POST /v1/call//x would go to another procedure. The API
		// names the path it would have taken instead (FuzzAPI found it).
		rec := &recorder{header: http.Header{}}
		h.ServeHTTP(rec, r)
		a.writeError(w, r, newAPIError(http.StatusNotFound, wire.CodeNotFound,
			fmt.Sprintf("no route %s %s (not a clean path: did you mean %s?)", r.Method, r.URL.Path, rec.header.Get("Location"))))
		return
	}
	if r.Body != nil {
		limit := int64(MaxBodyBytes)
		if l, ok := a.bodyLimits[pattern]; ok {
			limit = l
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
	}
	if pattern == "" {
		// ServeMux's own answer: 404, or 405 with an Allow header. Let it
		// decide which, keep its headers, and replace its text body.
		rec := &recorder{header: http.Header{}}
		h.ServeHTTP(rec, r)
		if allow := rec.header.Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
		}
		if rec.status == http.StatusMethodNotAllowed {
			a.writeError(w, r, newAPIError(http.StatusMethodNotAllowed, wire.CodeMethodNotAllowed,
				fmt.Sprintf("%s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, rec.header.Get("Allow"))))
			return
		}
		a.writeError(w, r, newAPIError(http.StatusNotFound, wire.CodeNotFound, fmt.Sprintf("no route %s %s", r.Method, r.URL.Path)))
		return
	}
	a.mux.ServeHTTP(w, r)
}

// recorder captures the status and headers of ServeMux's fallback handlers
// and drops their text body.
type recorder struct {
	header http.Header
	status int
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return len(b), nil
}

// apiError is an error with its HTTP status and API code.
type apiError struct {
	status  int
	code    string
	message string
	remote  *wire.RemoteDetail    // set for CodeRemoteError only
	partial *wire.PartialDelivery // set for CodeNoRoom only
	// challenges are the WWW-Authenticate values of a 401 answer.
	challenges []string
}

func newAPIError(status int, code, message string) *apiError {
	return &apiError{status: status, code: code, message: message}
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func badRequest(format string, args ...any) error {
	return newAPIError(http.StatusBadRequest, wire.CodeBadRequest, fmt.Sprintf(format, args...))
}

// classify maps an error of the node or its services to a status and code.
func classify(err error) (int, string) {
	var ae *apiError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &ae):
		return ae.status, ae.code
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge, wire.CodeTooLarge
	case errors.Is(err, node.ErrOtherRealm):
		return http.StatusBadRequest, wire.CodeOtherRealm
	case errors.Is(err, realm.ErrInvalidDID):
		return http.StatusBadRequest, wire.CodeInvalidDID
	case errors.Is(err, realm.ErrInvalid):
		// The DID routes see realm.ErrInvalid only inside ErrInvalidDID
		// (a malformed alias), caught above; the rpc and pubsub routes
		// check names themselves, so anything else is a name.
		return http.StatusBadRequest, wire.CodeInvalidName
	case errors.Is(err, dht.ErrInvalidKey):
		return http.StatusBadRequest, wire.CodeInvalidKey
	case errors.Is(err, node.ErrNotFound), errors.Is(err, rpc.ErrNotFound):
		return http.StatusNotFound, wire.CodeNotFound
	case errors.Is(err, rpc.ErrTooLarge), errors.Is(err, pubsub.ErrTooLarge):
		return http.StatusRequestEntityTooLarge, wire.CodeTooLarge
	case errors.Is(err, rpc.ErrUnauthorized), errors.Is(err, pubsub.ErrUnauthorized):
		// Before RemoteError: a remote "unauthorized" matches it too.
		return http.StatusForbidden, wire.CodeUnauthorized
	case errors.Is(err, node.ErrNotSecure):
		return http.StatusConflict, wire.CodeOpenRealm
	case errors.Is(err, rpc.ErrAlreadyAdvertised):
		return http.StatusConflict, wire.CodeConflict
	case errors.Is(err, rpc.ErrDisconnected):
		return http.StatusBadGateway, wire.CodeDisconnected
	case errors.Is(err, node.ErrNoPeers):
		return http.StatusServiceUnavailable, wire.CodeNoPeers
	case errors.Is(err, node.ErrBadRecord):
		return http.StatusBadGateway, wire.CodeBadRecord
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, wire.CodeTimeout
	case errors.Is(err, context.Canceled), errors.Is(err, net.ErrClosed), errors.Is(err, pubsub.ErrTooManyPatterns):
		// net.ErrClosed: every service's ErrClosed matches it.
		return http.StatusServiceUnavailable, wire.CodeUnavailable
	}
	var re *rpc.RemoteError
	if errors.As(err, &re) {
		return http.StatusUnprocessableEntity, wire.CodeRemoteError
	}
	return http.StatusInternalServerError, wire.CodeInternal
}

func (a *api) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, code := classify(err)
	msg := err.Error()
	var remote *wire.RemoteDetail
	var partial *wire.PartialDelivery
	var ae *apiError
	if errors.As(err, &ae) {
		msg, remote, partial = ae.message, ae.remote, ae.partial
		for _, c := range ae.challenges {
			w.Header().Add("WWW-Authenticate", c)
		}
	}
	switch {
	case status == http.StatusInternalServerError || (status == http.StatusBadGateway && code == wire.CodeBadRecord):
		a.log.Warn("API request failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	default:
		// Calls that fail (not found, timeout, disconnected, a handler's
		// error) are the callee's or the caller's business, not the
		// node's: Debug.
		a.log.Debug("API request refused", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	}
	if code == wire.CodeOverloaded || code == wire.CodeNoRoom {
		w.Header().Set("Retry-After", retryAfter)
	}
	writeJSON(w, status, wire.ErrorBody{Error: wire.Error{Code: code, Message: msg, Remote: remote, Partial: partial}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own types are encoded here, so this is a bug; say so
		// in JSON rather than send half a body.
		status = http.StatusInternalServerError
		b, _ = json.Marshal(wire.ErrorBody{Error: wire.Error{Code: wire.CodeInternal, Message: "encoding the answer: " + err.Error()}})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// timeoutParam reads ?timeout= (a Go duration such as 5s or 1500ms), or
// returns def. A value over MaxTimeout is capped to it.
func timeoutParam(r *http.Request, def time.Duration) (time.Duration, error) {
	s := r.URL.Query().Get("timeout")
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, badRequest("timeout %q: want a positive duration such as 5s or 1500ms, at most %v", s, wire.MaxTimeout)
	}
	return min(d, wire.MaxTimeout), nil
}

// keyParam reads the required ?key= of the DHT routes.
func keyParam(r *http.Request) (string, error) {
	q := r.URL.Query()
	if !q.Has("key") {
		return "", badRequest("missing query parameter key")
	}
	return q.Get("key"), nil
}

func multiaddrStrings[T fmt.Stringer](as []T) []string {
	out := make([]string, 0, len(as))
	for _, a := range as {
		out = append(out, a.String())
	}
	return out
}

func (a *api) getNode(_ *http.Request) (int, any, error) {
	n := a.n
	return http.StatusOK, wire.NodeInfo{
		PeerID:    n.ID().String(),
		DID:       n.DID(),
		Alias:     n.Alias(),
		Realm:     n.Realm(),
		Name:      n.Name(),
		Addrs:     multiaddrStrings(n.Addrs()),
		Peers:     len(n.Peers()),
		Agent:     node.Agent,
		StartedAt: a.n.StartedAt(),
		API:       a.addrs,
		Security:  securityOf(n),
		Authority: n.Authority(),
		Grant:     grantInfo(n),
	}, nil
}

// securityOf is the realm's security as the API says it: SecurityOpen or
// SecuritySecure.
func securityOf(n *node.Node) string {
	if n.Secure() {
		return wire.SecuritySecure
	}
	return wire.SecurityOpen
}

// grantInfo is the node's own grant, nil in an open realm.
func grantInfo(n *node.Node) *wire.GrantInfo {
	if !n.Secure() {
		return nil
	}
	g := n.Grant()
	gi := &wire.GrantInfo{Member: g.Member, Name: g.Name, Capabilities: make([]string, 0, len(g.Capabilities))}
	for _, c := range g.Capabilities {
		gi.Capabilities = append(gi.Capabilities, string(c.Command)+" on "+c.Resource)
	}
	if !g.Expires.IsZero() {
		exp := g.Expires.UTC()
		gi.Expires = &exp
	}
	return gi
}

func (a *api) getPeers(_ *http.Request) (int, any, error) {
	ps := a.n.Peers()
	out := make([]wire.Peer, 0, len(ps))
	for _, p := range ps {
		var direct *time.Time
		if !p.DirectSince.IsZero() {
			direct = &p.DirectSince
		}
		out = append(out, wire.Peer{
			PeerID:      p.ID.String(),
			DID:         p.DID,
			Alias:       p.Alias,
			Name:        p.Name,
			Addrs:       multiaddrStrings(p.Addrs),
			Direction:   p.Direction,
			Path:        p.Path,
			RTTMillis:   float64(p.RTT.Microseconds()) / 1000,
			Since:       p.Since,
			DirectSince: direct,
		})
	}
	return http.StatusOK, out, nil
}

func (a *api) getResolve(r *http.Request) (int, any, error) {
	timeout, err := timeoutParam(r, DefaultResolveTimeout)
	if err != nil {
		return 0, nil, err
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	res, err := a.n.Resolve(ctx, r.PathValue("did"))
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, resolutionOf(res), nil
}

func (a *api) getDHTStats(r *http.Request) (int, any, error) {
	ctx, cancel := context.WithTimeout(r.Context(), statsTimeout)
	defer cancel()
	s, err := a.n.DHT().Stats(ctx)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, dhtStatsOf(s), nil
}

func (a *api) getDHTLookup(r *http.Request) (int, any, error) {
	key, err := keyParam(r)
	if err != nil {
		return 0, nil, err
	}
	limit := DefaultLookupLimit
	if s := r.URL.Query().Get("limit"); s != "" {
		limit, err = strconv.Atoi(s)
		if err != nil || limit < 0 || limit > MaxLookupLimit {
			return 0, nil, badRequest("limit %q: want 0 (as many as found) to %d", s, MaxLookupLimit)
		}
	}
	timeout, err := timeoutParam(r, DefaultLookupTimeout)
	if err != nil {
		return 0, nil, err
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	ais, err := a.n.DHT().Lookup(ctx, key, limit)
	if err != nil {
		return 0, nil, err
	}
	res := wire.LookupResult{Key: key, Providers: make([]wire.Provider, 0, len(ais))}
	for _, ai := range ais {
		res.Providers = append(res.Providers, wire.Provider{
			PeerID: ai.ID.String(),
			DID:    peerdid.Of(ai.ID),
			Addrs:  multiaddrStrings(ai.Addrs),
		})
	}
	return http.StatusOK, res, nil
}

// postDHTProvide makes the node provide the key. The node keeps it from then
// on (re-announcing it), so an announcement that did not finish within the
// timeout is still accepted: 202 instead of 200.
func (a *api) postDHTProvide(r *http.Request) (int, any, error) {
	key, err := keyParam(r)
	if err != nil {
		return 0, nil, err
	}
	timeout, err := timeoutParam(r, DefaultProvideTimeout)
	if err != nil {
		return 0, nil, err
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	err = a.n.DHT().Provide(ctx, key)
	switch {
	case err == nil:
		return http.StatusOK, wire.ProvideResult{Key: key, Announced: true}, nil
	case errors.Is(err, dht.ErrPending) && r.Context().Err() == nil:
		a.log.Info("provided key not announced yet; the node retries until it is", "key", key, "err", err)
		return http.StatusAccepted, wire.ProvideResult{Key: key}, nil
	}
	return 0, nil, err
}

func (a *api) getLogLevel(_ *http.Request) (int, any, error) {
	if a.levels == nil {
		return 0, nil, errNoLevels
	}
	return http.StatusOK, wire.LogLevel{Level: levelName(a.levels.Level())}, nil
}

func (a *api) putLogLevel(r *http.Request) (int, any, error) {
	if a.levels == nil {
		return 0, nil, errNoLevels
	}
	var body wire.LogLevel
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return 0, nil, newAPIError(http.StatusRequestEntityTooLarge, wire.CodeTooLarge, fmt.Sprintf("body over %d bytes", MaxBodyBytes))
		}
		return 0, nil, badRequest(`body: want {"level":"debug|info|warn|error"}: %v`, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return 0, nil, badRequest(`body: want one JSON object {"level":"debug|info|warn|error"}`)
	}
	l, ok := parseLevel(body.Level)
	if !ok {
		return 0, nil, newAPIError(http.StatusBadRequest, wire.CodeInvalidLevel, fmt.Sprintf("level %q: want debug, info, warn or error", body.Level))
	}
	old := a.levels.Level()
	a.levels.Set(l)
	if old != l {
		a.log.Info("log level changed", "from", levelName(old), "to", levelName(l))
	}
	return http.StatusOK, wire.LogLevel{Level: levelName(l)}, nil
}

var errNoLevels = newAPIError(http.StatusNotImplemented, wire.CodeNotImplemented, "this gateway was started without a settable log level")

func parseLevel(s string) (slog.Level, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return slog.LevelDebug, true
	case "info":
		return slog.LevelInfo, true
	case "warn", "warning":
		return slog.LevelWarn, true
	case "error":
		return slog.LevelError, true
	}
	return 0, false
}

// levelName is the lowercase name of l: "debug", "info", "warn", "error",
// or slog's "info+2" style for levels in between.
func levelName(l slog.Level) string { return strings.ToLower(l.String()) }

func (a *api) getNAT(_ *http.Request) (int, any, error) {
	return http.StatusOK, a.natInfo(), nil
}

// natInfo is the node's NAT measurement, its realm's security and its
// reachability decision.
func (a *api) natInfo() wire.NATInfo {
	out := natInfoOf(a.n.NAT(), securityOf(a.n))
	d := a.n.Reachability()
	out.Reachability = &wire.Reachability{Reachability: string(d.Reachability), Reason: d.Reason,
		DHTServer: d.DHTServer, RelayReservations: d.Reservations, RelayService: d.RelayService}
	return out
}

// postNATProbe asks for a new NAT probe; it answers at once with what was
// known before, and GET /v1/nat shows the new result when the probe ends
// (a later measured_at). What was known is read before the probe is asked
// for: a probe with nothing to ask (no STUN server) ends at once, and read
// after it, the answer was that probe's, so a client waiting for a later
// one waited for nothing (CI saw `nat probe` hang).
func (a *api) postNATProbe(_ *http.Request) (int, any, error) {
	before := a.natInfo()
	a.n.ReprobeNAT()
	return http.StatusAccepted, before, nil
}
