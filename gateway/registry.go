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
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	wire "github.com/macula-io/macula/api"
	"github.com/macula-io/macula/registry"
	"github.com/macula-io/macula/ucan"
)

// The registry routes (contract: Config.Registry nil answers 404
// not_enabled). A key in a path is the key itself, "/" included
// (/v1/registry/chat/room1); a key ending in "/" is a prefix, and "" (the
// route's bare path with its "/") every key.
//
//	GET    /v1/registry              RegistryInfo: clusters and their nodes, log level, counters
//	PUT    /v1/registry              RegistryLogLevel: set the registry's own log level (off, info, verbose)
//	GET    /v1/registry/{key}        RegistryEntry of a name (404 not_found); []RegistryEntry for a prefix
//	POST   /v1/registry/{key}        RegisterRequest: register an API process (409 taken)
//	DELETE /v1/registry/{key}        ?process=: unregister it (204)
//	GET    /v1/registry/watch        ?prefix=: server-sent events, "batch" (RegistryBatch); without
//	                                 ?prefix= it is the lookup of the key "watch"
//	GET    /v1/groups/{key}          []RegistryMember of a group or of every group under a prefix; ?limit=
//	POST   /v1/groups/{key}          RegisterRequest: an API process joins (204)
//	DELETE /v1/groups/{key}          ?process=: it leaves (204)
//	POST   /v1/dispatch/{key}        the body to every process under the key: DispatchResult (202)
//	POST   /v1/send/{addr}           the body to the process <peer>/<number> (202)
//	PUT    /v1/clusters/{name}       connect the node to a named cluster (204)
//	DELETE /v1/clusters/{name}       disconnect it (204)
//	GET    /v1/processes             []ProcessInfo: the processes made through this API
//	POST   /v1/processes             ProcessRequest: a process served by a webhook (201 ProcessInfo)
//	GET    /v1/processes/stream      a process whose lifetime is this request: server-sent events,
//	                                 "process" (ProcessInfo) first, then "message" (ProcessMessage)
//	PUT    /v1/processes/{id}        renew a webhook process's lease (ProcessInfo)
//	DELETE /v1/processes/{id}        end a process (204)
//
// Every route but those three writes takes ?cluster= (the body's cluster
// for POST). In a secure realm a token must grant /macula/register,
// /macula/join or /macula/dispatch on the key's resource (registry.Resource)
// or on the prefix's pattern for the writes, and the root command for the
// rest, like the node's other routes about itself.

// Limits of the API's processes.
const (
	// DefaultProcessLease is the lease of a webhook process that asks
	// none.
	DefaultProcessLease = 30 * time.Second
	// DefaultProcessTimeout bounds one webhook request of a process.
	DefaultProcessTimeout = 10 * time.Second
	// MaxAPIProcesses bounds the processes made through one API.
	MaxAPIProcesses = 10000
)

const (
	dispatchPattern = "POST /v1/dispatch/{key...}"
	sendPattern     = "POST /v1/send/{addr...}"
)

func (a *api) registryRoutes() {
	a.procs = newAPIProcs(a)
	on := a.registryOn
	a.handle("GET /v1/registry", adminScope, on(a.getRegistry))
	a.handle("PUT /v1/registry", adminScope, on(a.putRegistry))
	a.handleRaw("GET /v1/registry/watch", adminScope, a.getRegistryWatch)
	a.handle("GET /v1/registry/{key...}", adminScope, on(a.getRegistryKey))
	a.handle("POST /v1/registry/{key...}", a.keyScope(ucan.Register), on(a.postRegister))
	a.handle("DELETE /v1/registry/{key...}", a.keyScope(ucan.Register), on(a.deleteRegister))
	a.handle("GET /v1/groups/{key...}", adminScope, on(a.getGroup))
	a.handle("POST /v1/groups/{key...}", a.keyScope(ucan.Join), on(a.postJoin))
	a.handle("DELETE /v1/groups/{key...}", a.keyScope(ucan.Join), on(a.deleteLeave))
	a.handle(dispatchPattern, a.keyScope(ucan.Dispatch), on(a.postDispatch))
	a.bodyLimits[dispatchPattern] = registry.MaxMessageSizeLimit
	a.handle(sendPattern, adminScope, on(a.postSend))
	a.bodyLimits[sendPattern] = registry.MaxMessageSizeLimit
	a.handle("PUT /v1/clusters/{name}", adminScope, on(a.putCluster))
	a.handle("DELETE /v1/clusters/{name}", adminScope, on(a.deleteCluster))
	a.handle("GET /v1/processes", adminScope, on(a.getProcesses))
	a.handle("POST /v1/processes", adminScope, on(a.postProcess))
	a.handleRaw("GET /v1/processes/stream", adminScope, a.getProcessStream)
	a.handle("PUT /v1/processes/{id}", adminScope, on(a.putProcess))
	a.handle("DELETE /v1/processes/{id}", adminScope, on(a.deleteProcess))
}

var errNoRegistry = newAPIError(http.StatusNotFound, wire.CodeNotEnabled, "this node runs no registry")

// registryOn answers not_enabled when the node runs no registry.
func (a *api) registryOn(f apiFunc) apiFunc {
	return func(r *http.Request) (int, any, error) {
		if a.reg == nil {
			return 0, nil, errNoRegistry
		}
		return f(r)
	}
}

// keyScope is the scope of a write on the key (or prefix) of the path:
// cmd on the key's resource, or on the prefix's pattern.
func (a *api) keyScope(cmd ucan.Command) scopeFunc {
	return func(r *http.Request) (scope, error) {
		key := r.PathValue("key")
		if key == "" || strings.HasSuffix(key, "/") {
			return scope{cmd: cmd, res: registry.ResourcePattern(a.n.Realm(), key), pattern: true}, nil
		}
		return scope{cmd: cmd, res: registry.Resource(a.n.Realm(), key)}, nil
	}
}

// registryError turns a registry error into an API error.
func registryError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "registry: ")
	var te *registry.TakenError
	switch {
	case errors.As(err, &te):
		return newAPIError(http.StatusConflict, wire.CodeTaken, msg)
	case errors.Is(err, registry.ErrInvalidKey):
		return newAPIError(http.StatusBadRequest, wire.CodeInvalidKey, msg)
	case errors.Is(err, registry.ErrInvalidCluster), errors.Is(err, registry.ErrBadAddr):
		return newAPIError(http.StatusBadRequest, wire.CodeBadRequest, msg)
	case errors.Is(err, registry.ErrNotConnected):
		return newAPIError(http.StatusNotFound, wire.CodeNotConnected, msg)
	case errors.Is(err, registry.ErrNotFound), errors.Is(err, registry.ErrNotMember):
		return newAPIError(http.StatusNotFound, wire.CodeNotFound, msg)
	case errors.Is(err, registry.ErrTooLarge):
		return newAPIError(http.StatusRequestEntityTooLarge, wire.CodeTooLarge, msg)
	case errors.Is(err, registry.ErrUnauthorized):
		return newAPIError(http.StatusForbidden, wire.CodeUnauthorized, msg)
	case errors.Is(err, registry.ErrProcessEnded), errors.Is(err, registry.ErrNoProcess):
		return newAPIError(http.StatusNotFound, wire.CodeNoProcess, msg)
	case errors.Is(err, registry.ErrNodeGone):
		return newAPIError(http.StatusBadGateway, wire.CodeNodeGone, msg)
	case errors.Is(err, registry.ErrLimit), errors.Is(err, registry.ErrMailboxFull):
		return newAPIError(http.StatusServiceUnavailable, wire.CodeUnavailable, msg)
	case errors.Is(err, registry.ErrClosed):
		return newAPIError(http.StatusServiceUnavailable, wire.CodeUnavailable, "the registry is stopping")
	}
	return err
}

// clusterOpt reads ?cluster=.
func clusterOpt(r *http.Request) registry.Option {
	return registry.InCluster(r.URL.Query().Get("cluster"))
}

// bytesJSON returns b as a JSON value when it is one (in UTF-8), else as
// a JSON string of its base64, with the encoding's name.
func bytesJSON(b []byte) (json.RawMessage, string) {
	if len(b) == 0 {
		return nil, ""
	}
	if utf8.Valid(b) && json.Valid(b) {
		return json.RawMessage(b), ""
	}
	s, _ := json.Marshal(base64.StdEncoding.EncodeToString(b))
	return s, wire.MetaBase64
}

func entryOf(e registry.Entry) wire.RegistryEntry {
	out := wire.RegistryEntry{Key: e.Key, Cluster: e.Cluster, Addr: e.Addr.String(), Node: e.Addr.Node.String(), Registered: e.Registered.Time().UTC()}
	out.Meta, out.MetaEncoding = bytesJSON(e.Meta)
	return out
}

func memberOf(m registry.Member) wire.RegistryMember {
	out := wire.RegistryMember{Key: m.Key, Addr: m.Addr.String(), Node: m.Addr.Node.String()}
	out.Meta, out.MetaEncoding = bytesJSON(m.Meta)
	return out
}

func eventOf(e registry.Event) wire.RegistryEvent {
	out := wire.RegistryEvent{Kind: e.Kind.String(), Cluster: e.Cluster, Key: e.Key, Addr: e.Addr.String(),
		Update: e.Update, Reason: string(e.Reason), Detail: e.Detail}
	out.Meta, out.MetaEncoding = bytesJSON(e.Meta)
	if e.Update {
		out.PreviousMeta, out.PreviousMetaEncoding = bytesJSON(e.PreviousMeta)
	}
	return out
}

func messageOf(m registry.Message) wire.ProcessMessage {
	out := wire.ProcessMessage{Kind: m.Kind.String(), Key: m.Key, Cluster: m.Cluster, Reason: m.Reason}
	if !m.From.IsZero() {
		out.From = m.From.String()
	}
	if !m.Winner.IsZero() {
		out.Winner = m.Winner.String()
	}
	out.Payload, out.PayloadEncoding = bytesJSON(m.Payload)
	return out
}

// --- reads ------------------------------------------------------------------

func (a *api) getRegistry(_ *http.Request) (int, any, error) {
	st, _ := json.Marshal(a.reg.Stats())
	info := wire.RegistryInfo{LogLevel: a.reg.LogLevel().String(), Stats: st}
	for _, c := range append([]string{""}, a.reg.Clusters()...) {
		nodes, err := a.reg.Nodes(registry.InCluster(c))
		if err != nil {
			return 0, nil, registryError(err)
		}
		ci := wire.ClusterInfo{Name: c, Nodes: make([]string, 0, len(nodes))}
		for _, n := range nodes {
			ci.Nodes = append(ci.Nodes, n.String())
		}
		info.Clusters = append(info.Clusters, ci)
	}
	return http.StatusOK, info, nil
}

func (a *api) putRegistry(r *http.Request) (int, any, error) {
	var body wire.RegistryLogLevel
	if err := decodeBody(r, &body, `{"level":"verbose"}`); err != nil {
		return 0, nil, err
	}
	l, err := registry.ParseLogLevel(body.Level)
	if err != nil {
		return 0, nil, newAPIError(http.StatusBadRequest, wire.CodeInvalidLevel, strings.TrimPrefix(err.Error(), "registry: "))
	}
	if err := a.reg.SetLogLevel(l); err != nil {
		return 0, nil, badRequest("%v", err)
	}
	return http.StatusOK, wire.RegistryLogLevel{Level: l.String()}, nil
}

// getRegistryKey looks a name up, or lists the names under a prefix.
func (a *api) getRegistryKey(r *http.Request) (int, any, error) {
	return a.lookupOrList(r, r.PathValue("key"))
}

func (a *api) lookupOrList(r *http.Request, key string) (int, any, error) {
	if key == "" || strings.HasSuffix(key, "/") {
		es, err := a.reg.Names(key, clusterOpt(r))
		if err != nil {
			return 0, nil, registryError(err)
		}
		out := make([]wire.RegistryEntry, 0, len(es))
		for _, e := range es {
			out = append(out, entryOf(e))
		}
		return http.StatusOK, out, nil
	}
	e, err := a.reg.Lookup(key, clusterOpt(r))
	if err != nil {
		return 0, nil, registryError(err)
	}
	return http.StatusOK, entryOf(e), nil
}

func (a *api) getGroup(r *http.Request) (int, any, error) {
	opts := []registry.Option{clusterOpt(r)}
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return 0, nil, badRequest("limit %q: want a number >= 0", s)
		}
		opts = append(opts, registry.Limit(n))
	}
	ms, err := a.reg.Members(r.PathValue("key"), opts...)
	if err != nil {
		return 0, nil, registryError(err)
	}
	out := make([]wire.RegistryMember, 0, len(ms))
	for _, m := range ms {
		out = append(out, memberOf(m))
	}
	return http.StatusOK, out, nil
}

// --- writes -----------------------------------------------------------------

// writeRequest reads a RegisterRequest and finds its process.
func (a *api) writeRequest(r *http.Request) (*registry.Process, wire.RegisterRequest, error) {
	var body wire.RegisterRequest
	if err := decodeBody(r, &body, `{"process":7,"meta":{"role":"leader"},"cluster":""}`); err != nil {
		return nil, body, err
	}
	p, err := a.procs.get(body.Process)
	return p, body, err
}

// processParam finds the process of ?process=.
func (a *api) processParam(r *http.Request) (*registry.Process, error) {
	s := r.URL.Query().Get("process")
	if s == "" {
		return nil, badRequest("missing query parameter process")
	}
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return nil, badRequest("process %q: want the number of a process made through this API", s)
	}
	return a.procs.get(id)
}

func (a *api) postRegister(r *http.Request) (int, any, error) {
	key := r.PathValue("key")
	p, body, err := a.writeRequest(r)
	if err != nil {
		return 0, nil, err
	}
	opt := registry.InCluster(body.Cluster)
	if err := p.Register(key, body.Meta, opt); err != nil {
		return 0, nil, registryError(err)
	}
	e, err := a.reg.Lookup(key, opt)
	if err != nil {
		return 0, nil, registryError(err)
	}
	return http.StatusOK, entryOf(e), nil
}

func (a *api) deleteRegister(r *http.Request) (int, any, error) {
	p, err := a.processParam(r)
	if err != nil {
		return 0, nil, err
	}
	if err := p.Unregister(r.PathValue("key"), clusterOpt(r)); err != nil {
		return 0, nil, registryError(err)
	}
	return http.StatusNoContent, nil, nil
}

func (a *api) postJoin(r *http.Request) (int, any, error) {
	p, body, err := a.writeRequest(r)
	if err != nil {
		return 0, nil, err
	}
	if err := p.Join(r.PathValue("key"), body.Meta, registry.InCluster(body.Cluster)); err != nil {
		return 0, nil, registryError(err)
	}
	return http.StatusNoContent, nil, nil
}

func (a *api) deleteLeave(r *http.Request) (int, any, error) {
	p, err := a.processParam(r)
	if err != nil {
		return 0, nil, err
	}
	if err := p.Leave(r.PathValue("key"), clusterOpt(r)); err != nil {
		return 0, nil, registryError(err)
	}
	return http.StatusNoContent, nil, nil
}

// readMessage reads a message body, checking JSON when it says it is.
func readMessage(r *http.Request) ([]byte, error) {
	payload, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, newAPIError(http.StatusRequestEntityTooLarge, wire.CodeTooLarge, fmt.Sprintf("message over %d bytes", mbe.Limit))
		}
		return nil, badRequest("reading the message: %v", err)
	}
	if ct := r.Header.Get("Content-Type"); strings.HasPrefix(ct, wire.ContentTypeJSON) && !json.Valid(payload) {
		return nil, badRequest("the message is not valid JSON (Content-Type %s); send other messages as %s", wire.ContentTypeJSON, wire.ContentTypeRaw)
	}
	return payload, nil
}

func (a *api) postDispatch(r *http.Request) (int, any, error) {
	key := r.PathValue("key")
	payload, err := readMessage(r)
	if err != nil {
		return 0, nil, err
	}
	n, err := a.reg.Dispatch(r.Context(), key, payload, clusterOpt(r))
	if err != nil {
		return 0, nil, registryError(err)
	}
	return http.StatusAccepted, wire.DispatchResult{Key: key, Sent: n}, nil
}

func (a *api) postSend(r *http.Request) (int, any, error) {
	to, err := registry.ParseAddr(r.PathValue("addr"))
	if err != nil {
		return 0, nil, registryError(err)
	}
	payload, err := readMessage(r)
	if err != nil {
		return 0, nil, err
	}
	if err := a.reg.Send(r.Context(), to, payload); err != nil {
		return 0, nil, registryError(err)
	}
	return http.StatusAccepted, struct{}{}, nil
}

func (a *api) putCluster(r *http.Request) (int, any, error) {
	if err := a.reg.Connect(r.Context(), r.PathValue("name")); err != nil {
		return 0, nil, registryError(err)
	}
	return http.StatusNoContent, nil, nil
}

func (a *api) deleteCluster(r *http.Request) (int, any, error) {
	if err := a.reg.Disconnect(r.Context(), r.PathValue("name")); err != nil {
		return 0, nil, registryError(err)
	}
	return http.StatusNoContent, nil, nil
}

// --- event streams ----------------------------------------------------------

// sseWriter writes server-sent events on the request's goroutine.
type sseWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func startSSE(w http.ResponseWriter) *sseWriter {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	return &sseWriter{w: w, rc: http.NewResponseController(w)}
}

// write writes raw SSE text and flushes it, within eventWriteTimeout.
func (s *sseWriter) write(b []byte) error {
	_ = s.rc.SetWriteDeadline(time.Now().Add(eventWriteTimeout))
	if _, err := s.w.Write(b); err != nil {
		return err
	}
	return s.rc.Flush()
}

// event writes one event whose data is v in JSON (one line: JSON has no
// raw line breaks once encoded).
func (s *sseWriter) event(typ string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	b.Grow(len(data) + len(typ) + 16)
	b.WriteString("event: ")
	b.WriteString(typ)
	b.WriteString("\ndata: ")
	b.Write(data)
	b.WriteString("\n\n")
	return s.write(b.Bytes())
}

// getRegistryWatch streams the registry's events of ?prefix= (a key, a
// prefix, or "" for all) until the client goes away. Without ?prefix= it
// is the lookup of the key "watch".
func (a *api) getRegistryWatch(w http.ResponseWriter, r *http.Request) error {
	if a.reg == nil {
		return errNoRegistry
	}
	q := r.URL.Query()
	if !q.Has("prefix") {
		status, v, err := a.lookupOrList(r, "watch")
		if err != nil {
			return err
		}
		writeJSON(w, status, v)
		return nil
	}
	m, err := a.reg.Monitor(q.Get("prefix"), clusterOpt(r))
	if err != nil {
		return registryError(err)
	}
	defer m.Close()
	s := startSSE(w)
	defer func() { _ = s.rc.SetWriteDeadline(time.Time{}) }()
	if err := s.write([]byte(": watching " + q.Get("prefix") + "\n\n")); err != nil {
		return nil
	}
	tick := time.NewTicker(a.heartbeat)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return nil
		case b, ok := <-m.C():
			if !ok {
				return nil
			}
			out := wire.RegistryBatch{Events: make([]wire.RegistryEvent, 0, len(b.Events)), Missed: b.Missed}
			for _, e := range b.Events {
				out.Events = append(out.Events, eventOf(e))
			}
			if err := s.event(wire.EventBatch, out); err != nil {
				return nil
			}
		case <-tick.C:
			if err := s.write([]byte(":\n\n")); err != nil {
				return nil
			}
		}
	}
}

// getProcessStream makes a process whose lifetime is the request, and
// streams its messages.
func (a *api) getProcessStream(w http.ResponseWriter, r *http.Request) error {
	if a.reg == nil {
		return errNoRegistry
	}
	p, err := a.procs.spawn(r.Context(), nil)
	if err != nil {
		return err
	}
	defer a.procs.end(p)
	s := startSSE(w)
	defer func() { _ = s.rc.SetWriteDeadline(time.Time{}) }()
	if err := s.event(wire.EventProcess, a.procs.info(p)); err != nil {
		return nil
	}
	tick := time.NewTicker(a.heartbeat)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return nil
		case m, ok := <-p.p.Messages():
			if !ok {
				return nil
			}
			if err := s.event(wire.EventMessage, messageOf(m)); err != nil {
				return nil
			}
		case <-tick.C:
			if err := s.write([]byte(":\n\n")); err != nil {
				return nil
			}
		}
	}
}

// --- processes ------------------------------------------------------------

// apiProcs holds the processes made through the API: those of event
// streams (ended with their request) and those served by webhooks (ended
// by DELETE, their lease, or close).
type apiProcs struct {
	a      *api
	ctx    context.Context // lifetime: cancelled by close
	cancel context.CancelFunc
	wg     sync.WaitGroup // lease timers armed

	// mu guards the fields below.
	mu     sync.Mutex
	m      map[uint64]*apiProc
	closed bool
}

type apiProc struct {
	p       *registry.Process
	webhook string        // "" for a stream process
	local   bool          // the webhook was named by the node's own user (api.isLocal)
	lease   time.Duration // webhook processes
	timeout time.Duration
	expires time.Time
	timer   *time.Timer
}

func newAPIProcs(a *api) *apiProcs {
	ps := &apiProcs{a: a, m: make(map[uint64]*apiProc)}
	ps.ctx, ps.cancel = context.WithCancel(context.Background())
	return ps
}

// spawn makes a process: a stream's (hook nil: its messages are read from
// its mailbox) or a webhook's.
func (ps *apiProcs) spawn(ctx context.Context, hook *apiProc) (*apiProc, error) {
	ps.mu.Lock()
	if ps.closed {
		ps.mu.Unlock()
		return nil, newAPIError(http.StatusServiceUnavailable, wire.CodeUnavailable, "the API is stopping")
	}
	if len(ps.m) >= MaxAPIProcesses {
		ps.mu.Unlock()
		return nil, newAPIError(http.StatusServiceUnavailable, wire.CodeUnavailable, fmt.Sprintf("%d processes made through the API already", MaxAPIProcesses))
	}
	ps.mu.Unlock()
	pc := registry.ProcessConfig{}
	ap := hook
	if ap == nil {
		ap = &apiProc{}
	} else {
		ctx = ps.ctx
		pc.Handler = func(ctx context.Context, m registry.Message) { ps.forward(ctx, ap, m) }
	}
	p, err := ps.a.reg.Spawn(ctx, pc)
	if err != nil {
		return nil, registryError(err)
	}
	ap.p = p
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.closed {
		p.Close()
		return nil, newAPIError(http.StatusServiceUnavailable, wire.CodeUnavailable, "the API is stopping")
	}
	ps.m[p.Addr().ID] = ap
	if ap.webhook != "" {
		ps.armLocked(ap)
	}
	return ap, nil
}

// armLocked (re)starts a webhook process's lease.
func (ps *apiProcs) armLocked(ap *apiProc) {
	if ap.timer != nil && ap.timer.Stop() {
		ps.wg.Done()
	}
	ap.expires = time.Now().Add(ap.lease)
	ps.wg.Add(1)
	ap.timer = time.AfterFunc(ap.lease, func() {
		defer ps.wg.Done()
		ps.a.log.Info("API process lease expired; it ends", "process", ap.p.Addr(), "webhook", ap.webhook)
		ps.end(ap)
	})
}

// end ends a process and forgets it.
func (ps *apiProcs) end(ap *apiProc) {
	ps.mu.Lock()
	if ps.m[ap.p.Addr().ID] == ap {
		delete(ps.m, ap.p.Addr().ID)
	}
	if ap.timer != nil && ap.timer.Stop() {
		ps.wg.Done()
	}
	ps.mu.Unlock()
	ap.p.Close()
}

func (ps *apiProcs) get(id uint64) (*registry.Process, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ap := ps.m[id]
	if ap == nil {
		return nil, newAPIError(http.StatusNotFound, wire.CodeNoProcess, fmt.Sprintf("no process %d made through this API (it ended, or never was)", id))
	}
	return ap.p, nil
}

func (ps *apiProcs) info(ap *apiProc) wire.ProcessInfo {
	out := wire.ProcessInfo{ID: ap.p.Addr().ID, Addr: ap.p.Addr().String(), Kind: "stream"}
	if ap.webhook != "" {
		out.Kind, out.Webhook, out.Lease = "webhook", ap.webhook, ap.lease.String()
		exp := ap.expires.UTC()
		out.Expires = &exp
	}
	return out
}

// forward POSTs a message to a webhook process's URL.
func (ps *apiProcs) forward(ctx context.Context, ap *apiProc, m registry.Message) {
	body, err := json.Marshal(messageOf(m))
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, ap.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ap.webhook, bytes.NewReader(body))
	if err != nil {
		return
	}
	req.Header.Set("Content-Type", wire.ContentTypeJSON)
	req.Header.Set(headerProcess, ap.p.Addr().String())
	// The webhooks' clients: the rules of Webhook targets for the address
	// dialled, no redirects.
	resp, err := ps.a.wh.clientFor(ap.local).Do(req)
	if err != nil {
		ps.a.log.Debug("process webhook unreachable", "process", ap.p.Addr(), "webhook", ap.webhook, "err", err)
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxWebhookErrorBody))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		ps.a.log.Debug("process webhook answered an error", "process", ap.p.Addr(), "webhook", ap.webhook, "status", resp.StatusCode)
	}
}

// close ends every process made through the API.
func (ps *apiProcs) close() {
	ps.mu.Lock()
	ps.closed = true
	all := make([]*apiProc, 0, len(ps.m))
	for _, ap := range ps.m {
		all = append(all, ap)
	}
	ps.mu.Unlock()
	ps.cancel()
	for _, ap := range all {
		ps.end(ap)
	}
	ps.wg.Wait()
}

func (a *api) getProcesses(_ *http.Request) (int, any, error) {
	a.procs.mu.Lock()
	out := make([]wire.ProcessInfo, 0, len(a.procs.m))
	for _, ap := range a.procs.m {
		out = append(out, a.procs.info(ap))
	}
	a.procs.mu.Unlock()
	slices.SortFunc(out, func(x, y wire.ProcessInfo) int {
		switch {
		case x.ID < y.ID:
			return -1
		case x.ID > y.ID:
			return 1
		}
		return 0
	})
	return http.StatusOK, out, nil
}

func (a *api) postProcess(r *http.Request) (int, any, error) {
	var body wire.ProcessRequest
	if err := decodeBody(r, &body, `{"webhook":"http://127.0.0.1:8080/inbox","lease":"30s","timeout":"10s"}`); err != nil {
		return 0, nil, err
	}
	local := a.isLocal(r)
	target, err := a.wh.policy.checkURL(r.Context(), body.Webhook, local)
	if err != nil {
		return 0, nil, err
	}
	lease, err := durationField("lease", body.Lease, MinLease, MaxLease)
	if err != nil {
		return 0, nil, err
	}
	timeout, err := durationField("timeout", body.Timeout, time.Millisecond, MaxLease)
	if err != nil {
		return 0, nil, err
	}
	ap := &apiProc{webhook: target, local: local, lease: cmpOr(lease, DefaultProcessLease), timeout: cmpOr(timeout, DefaultProcessTimeout)}
	if _, err := a.procs.spawn(r.Context(), ap); err != nil {
		return 0, nil, err
	}
	a.procs.mu.Lock()
	info := a.procs.info(ap)
	a.procs.mu.Unlock()
	return http.StatusCreated, info, nil
}

func cmpOr(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// procParam finds the process of the path's {id}.
func (a *api) procParam(r *http.Request) (*apiProc, error) {
	s := r.PathValue("id")
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return nil, badRequest("process %q: want the number of a process made through this API", s)
	}
	a.procs.mu.Lock()
	defer a.procs.mu.Unlock()
	ap := a.procs.m[id]
	if ap == nil {
		return nil, newAPIError(http.StatusNotFound, wire.CodeNoProcess, fmt.Sprintf("no process %d made through this API (it ended, or never was)", id))
	}
	return ap, nil
}

func (a *api) putProcess(r *http.Request) (int, any, error) {
	ap, err := a.procParam(r)
	if err != nil {
		return 0, nil, err
	}
	if ap.webhook == "" {
		return 0, nil, badRequest("process %d lives as long as its stream; it has no lease", ap.p.Addr().ID)
	}
	a.procs.mu.Lock()
	a.procs.armLocked(ap)
	info := a.procs.info(ap)
	a.procs.mu.Unlock()
	return http.StatusOK, info, nil
}

func (a *api) deleteProcess(r *http.Request) (int, any, error) {
	ap, err := a.procParam(r)
	if err != nil {
		return 0, nil, err
	}
	a.procs.end(ap)
	return http.StatusNoContent, nil, nil
}
