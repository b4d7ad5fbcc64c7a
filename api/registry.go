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
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// The registry's UCAN commands (package ucan's Register, Join, Dispatch):
// the resource is the key as a realm name (chat/room1 in io.acme.orders is
// io.acme.orders.chat.room1), or, for a prefix, the pattern of the names
// under it (io.acme.orders.chat.>).
const (
	CommandRegister = "/macula/register"
	CommandJoin     = "/macula/join"
	CommandDispatch = "/macula/dispatch"
)

// Error codes of the registry routes.
const (
	// CodeTaken (409): the name is registered to another process;
	// Message names it.
	CodeTaken = "taken"
	// CodeNotConnected (404): the node has not connected to the cluster.
	CodeNotConnected = "not_connected"
	// CodeNoProcess (404): no process of the API has that number (it
	// ended, or never existed), or, for a send, no process at all.
	CodeNoProcess = "no_process"
	// CodeNodeGone (502): the node of the addressed process is gone or
	// cannot be reached.
	CodeNodeGone = "node_gone"
)

// MetaBase64 is the MetaEncoding of metadata that is not JSON (written by
// a Go program as bytes): Meta is then a JSON string of the bytes in
// standard base64.
const MetaBase64 = "base64"

// RegistryEntry is a registered name: GET /v1/registry/{key}.
type RegistryEntry struct {
	Key     string `json:"key"`
	Cluster string `json:"cluster,omitempty"`
	// Addr is the process's address, "<peer ID>/<number>"; Node its node.
	Addr string `json:"addr"`
	Node string `json:"node"`
	// Meta is the metadata: a JSON value, or base64 (MetaEncoding).
	Meta         json.RawMessage `json:"meta,omitempty"`
	MetaEncoding string          `json:"meta_encoding,omitempty"`
	// Registered is when the name was registered, on its node's hybrid
	// clock (millisecond resolution).
	Registered time.Time `json:"registered"`
}

// RegistryMember is a member of a group: GET /v1/groups/{key}.
type RegistryMember struct {
	Key          string          `json:"key"`
	Addr         string          `json:"addr"`
	Node         string          `json:"node"`
	Meta         json.RawMessage `json:"meta,omitempty"`
	MetaEncoding string          `json:"meta_encoding,omitempty"`
}

// RegistryEvent is one event of a watch (package registry's Event).
type RegistryEvent struct {
	// Kind is registered, unregistered, joined or left.
	Kind         string          `json:"kind"`
	Cluster      string          `json:"cluster,omitempty"`
	Key          string          `json:"key"`
	Addr         string          `json:"addr"`
	Meta         json.RawMessage `json:"meta,omitempty"`
	MetaEncoding string          `json:"meta_encoding,omitempty"`
	// Update: the event replaces the metadata of an entry that was there;
	// PreviousMeta is the old one (same encoding rules as Meta).
	Update               bool            `json:"update,omitempty"`
	PreviousMeta         json.RawMessage `json:"previous_meta,omitempty"`
	PreviousMetaEncoding string          `json:"previous_meta_encoding,omitempty"`
	// Reason and Detail, for unregistered and left: unregistered, left,
	// process_ended, node_left, node_down, node_restarted, cluster_left,
	// conflict, removed, registry_closed.
	Reason string `json:"reason,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// RegistryBatch is the data of an "event: batch" of GET
// /v1/registry/watch: the events of one change, and how many events the
// watch lost before it because the client read too slowly.
type RegistryBatch struct {
	Events []RegistryEvent `json:"events"`
	Missed uint64          `json:"missed,omitempty"`
}

// RegisterRequest is the body of POST /v1/registry/{key} and POST
// /v1/groups/{key}: which of the API's processes, with what metadata (a
// JSON value; none is null), in which cluster ("" the default).
type RegisterRequest struct {
	Process uint64          `json:"process"`
	Meta    json.RawMessage `json:"meta,omitempty"`
	Cluster string          `json:"cluster,omitempty"`
}

// DispatchResult is the answer of POST /v1/dispatch/{key}.
type DispatchResult struct {
	Key string `json:"key"`
	// Sent is the number of processes it was sent to.
	Sent int `json:"sent"`
}

// ProcessRequest is the body of POST /v1/processes: a process served by a
// webhook, which gets each message as a POST of a ProcessMessage, one at a
// time. It lives for Lease ("30s" by default, 1s to 1h) after its creation
// and each renewal (PUT /v1/processes/{id}), or until DELETE.
type ProcessRequest struct {
	Webhook string `json:"webhook"`
	Lease   string `json:"lease,omitempty"`
	// Timeout bounds one webhook request ("10s" by default).
	Timeout string `json:"timeout,omitempty"`
}

// ProcessInfo describes a process made through the API.
type ProcessInfo struct {
	// ID is the process's number on the node, for the registry routes;
	// Addr its address anywhere in the realm.
	ID   uint64 `json:"id"`
	Addr string `json:"addr"`
	// Kind is "stream" (it lives as long as its GET /v1/processes/stream
	// request) or "webhook".
	Kind    string     `json:"kind"`
	Webhook string     `json:"webhook,omitempty"`
	Lease   string     `json:"lease,omitempty"`
	Expires *time.Time `json:"expires,omitempty"`
}

// ProcessMessage is a message to a process made through the API: an
// "event: message" of its stream, or the body its webhook is POSTed.
type ProcessMessage struct {
	// Kind is "data" (Send, Dispatch) or "lost" (a name it held went to
	// another process: Key, Cluster, Winner, Reason).
	Kind string `json:"kind"`
	// From is the sending process's address, "" when none.
	From    string `json:"from,omitempty"`
	Key     string `json:"key,omitempty"`
	Cluster string `json:"cluster,omitempty"`
	// Payload is the message: a JSON value, or base64
	// (PayloadEncoding "base64").
	Payload         json.RawMessage `json:"payload,omitempty"`
	PayloadEncoding string          `json:"payload_encoding,omitempty"`
	Winner          string          `json:"winner,omitempty"`
	Reason          string          `json:"reason,omitempty"`
}

// Bytes returns the payload as it was sent.
func (m *ProcessMessage) Bytes() ([]byte, error) {
	return decodeMaybeBase64(m.Payload, m.PayloadEncoding)
}

// Bytes returns the metadata as it was written.
func (e *RegistryEntry) Bytes() ([]byte, error) { return decodeMaybeBase64(e.Meta, e.MetaEncoding) }

// Bytes returns the metadata as it was written.
func (m *RegistryMember) Bytes() ([]byte, error) { return decodeMaybeBase64(m.Meta, m.MetaEncoding) }

func decodeMaybeBase64(raw json.RawMessage, enc string) ([]byte, error) {
	if enc != MetaBase64 {
		return []byte(raw), nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, err
	}
	return base64.StdEncoding.DecodeString(s)
}

// RegistryInfo is the answer of GET /v1/registry: the registry's clusters
// and their nodes, its log level and its counters.
type RegistryInfo struct {
	// Clusters lists the default cluster ("") and the named ones this
	// node connected to, each with its nodes (this one included).
	Clusters []ClusterInfo `json:"clusters"`
	// LogLevel is the registry's own log level: off, info or verbose.
	LogLevel string `json:"log_level"`
	// Stats are package registry's Stats.
	Stats json.RawMessage `json:"stats"`
}

// ClusterInfo is a cluster and its nodes (peer IDs).
type ClusterInfo struct {
	Name  string   `json:"name"`
	Nodes []string `json:"nodes"`
}

// RegistryLogLevel is the body of PUT /v1/registry: the registry's own log
// level, off, info or verbose.
type RegistryLogLevel struct {
	Level string `json:"level"`
}

// --- client ---------------------------------------------------------------

// regScope is the token scope of a registry request on key (or prefix).
// The node checks the token against the key's resource in its realm; the
// client learns the realm once, from GET /v1/node, and only when it sends
// tokens.
func (c *Client) regScope(ctx context.Context, cmd, key string) (scope, error) {
	if c.Token == nil {
		return scope{cmd: cmd}, nil
	}
	r, err := c.realmName(ctx)
	if err != nil {
		return scope{}, err
	}
	return scope{cmd: cmd, res: RegistryResource(r, key)}, nil
}

func (c *Client) realmName(ctx context.Context) (string, error) {
	if r := c.realm.Load(); r != nil {
		return *r, nil
	}
	n, err := c.Node(ctx)
	if err != nil {
		return "", err
	}
	c.realm.Store(&n.Realm)
	return n.Realm, nil
}

// RegistryResource is the UCAN resource of a registry key in a realm: the
// realm, a dot and the key's segments joined by dots; for a prefix ending
// in "/", the pattern of every name under it ("<realm>.chat.>"); "" is
// every key ("<realm>.>").
func RegistryResource(realmName, key string) string {
	switch {
	case key == "":
		return realmName + ".>"
	case strings.HasSuffix(key, "/"):
		return realmName + "." + strings.ReplaceAll(strings.TrimSuffix(key, "/"), "/", ".") + ".>"
	}
	return realmName + "." + strings.ReplaceAll(key, "/", ".")
}

// keyPath escapes each segment of a key or prefix (or address) for a URL
// path. An empty segment cannot travel in a path (servers clean "a//b" to
// "a/b"), so it is refused here, as the node would refuse it.
func keyPath(key string) (string, error) {
	body := strings.TrimSuffix(key, "/")
	segs := strings.Split(body, "/")
	for i, s := range segs {
		if s == "" && key != "" {
			return "", fmt.Errorf("api: %w: key %q has an empty segment", errInvalidKey, key)
		}
		segs[i] = url.PathEscape(s)
	}
	p := strings.Join(segs, "/")
	if strings.HasSuffix(key, "/") {
		p += "/"
	}
	return p, nil
}

// errInvalidKey is the error of a key refused before it is sent; the
// node's own refusals are *APIError with CodeInvalidKey.
var errInvalidKey = fmt.Errorf("invalid key")

func clusterQuery(cluster string) url.Values {
	if cluster == "" {
		return nil
	}
	return url.Values{"cluster": {cluster}}
}

// Lookup returns the process registered under key (in cluster; "" the
// default). An *APIError with CodeNotFound if there is none.
func (c *Client) Lookup(ctx context.Context, key, cluster string) (*RegistryEntry, error) {
	if key == "" || strings.HasSuffix(key, "/") {
		return nil, fmt.Errorf("api: Lookup(%q): a key, not a prefix (see Names)", key)
	}
	kp, err := keyPath(key)
	if err != nil {
		return nil, err
	}
	var out RegistryEntry
	if err := c.do(ctx, adminScope, http.MethodGet, "/v1/registry/"+kp, clusterQuery(cluster), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Names returns the registered names under prefix ("" all, "chat/" the
// keys under chat/), sorted by key.
func (c *Client) Names(ctx context.Context, prefix, cluster string) ([]RegistryEntry, error) {
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		return nil, fmt.Errorf("api: Names(%q): a prefix ends in \"/\" (see Lookup)", prefix)
	}
	kp, err := keyPath(prefix)
	if err != nil {
		return nil, err
	}
	var out []RegistryEntry
	if err := c.do(ctx, adminScope, http.MethodGet, "/v1/registry/"+kp, clusterQuery(cluster), nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Members returns the members of the group key, or of every group under a
// prefix ending in "/" ("" for all). limit caps them (0: no cap).
func (c *Client) Members(ctx context.Context, key, cluster string, limit int) ([]RegistryMember, error) {
	q := clusterQuery(cluster)
	if limit > 0 {
		if q == nil {
			q = url.Values{}
		}
		q.Set("limit", strconv.Itoa(limit))
	}
	kp, err := keyPath(key)
	if err != nil {
		return nil, err
	}
	var out []RegistryMember
	if err := c.do(ctx, adminScope, http.MethodGet, "/v1/groups/"+kp, q, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Register registers the API process with number process under key, with
// meta (a JSON value, or nil). A name taken by another process is an
// *APIError with CodeTaken.
func (c *Client) Register(ctx context.Context, process uint64, key string, meta json.RawMessage, cluster string) (*RegistryEntry, error) {
	sc, err := c.regScope(ctx, CommandRegister, key)
	if err != nil {
		return nil, err
	}
	kp, err := keyPath(key)
	if err != nil {
		return nil, err
	}
	var out RegistryEntry
	if err := c.do(ctx, sc, http.MethodPost, "/v1/registry/"+kp, nil, RegisterRequest{Process: process, Meta: meta, Cluster: cluster}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Unregister removes the name key of the API process.
func (c *Client) Unregister(ctx context.Context, process uint64, key, cluster string) error {
	sc, err := c.regScope(ctx, CommandRegister, key)
	if err != nil {
		return err
	}
	kp, err := keyPath(key)
	if err != nil {
		return err
	}
	q := url.Values{"process": {strconv.FormatUint(process, 10)}}
	if cluster != "" {
		q.Set("cluster", cluster)
	}
	return c.do(ctx, sc, http.MethodDelete, "/v1/registry/"+kp, q, nil, nil)
}

// Join makes the API process a member of the group key, with meta.
func (c *Client) Join(ctx context.Context, process uint64, key string, meta json.RawMessage, cluster string) error {
	sc, err := c.regScope(ctx, CommandJoin, key)
	if err != nil {
		return err
	}
	kp, err := keyPath(key)
	if err != nil {
		return err
	}
	return c.do(ctx, sc, http.MethodPost, "/v1/groups/"+kp, nil, RegisterRequest{Process: process, Meta: meta, Cluster: cluster}, nil)
}

// Leave takes the API process out of the group key.
func (c *Client) Leave(ctx context.Context, process uint64, key, cluster string) error {
	sc, err := c.regScope(ctx, CommandJoin, key)
	if err != nil {
		return err
	}
	kp, err := keyPath(key)
	if err != nil {
		return err
	}
	q := url.Values{"process": {strconv.FormatUint(process, 10)}}
	if cluster != "" {
		q.Set("cluster", cluster)
	}
	return c.do(ctx, sc, http.MethodDelete, "/v1/groups/"+kp, q, nil, nil)
}

// Dispatch sends payload to every process registered or joined under key
// (or a prefix ending in "/"), and returns how many it was sent to.
// contentType application/json marks a JSON payload.
func (c *Client) Dispatch(ctx context.Context, key string, payload []byte, contentType, cluster string) (int, error) {
	sc, err := c.regScope(ctx, CommandDispatch, key)
	if err != nil {
		return 0, err
	}
	if contentType == "" {
		contentType = ContentTypeRaw
	}
	kp, err := keyPath(key)
	if err != nil {
		return 0, err
	}
	h := http.Header{"Content-Type": {contentType}, "Accept": {"application/json"}}
	raw, err := c.doRaw(ctx, sc, http.MethodPost, "/v1/dispatch/"+kp, clusterQuery(cluster), h, payload)
	if err != nil {
		return 0, err
	}
	var out DispatchResult
	if err := json.Unmarshal(raw, &out); err != nil {
		return 0, fmt.Errorf("api: dispatch: decoding the answer: %w", err)
	}
	return out.Sent, nil
}

// SendTo sends payload to the process at addr ("<peer ID>/<number>"),
// anywhere in the realm.
func (c *Client) SendTo(ctx context.Context, addr string, payload []byte, contentType string) error {
	if contentType == "" {
		contentType = ContentTypeRaw
	}
	ap, err := keyPath(addr)
	if err != nil {
		return err
	}
	h := http.Header{"Content-Type": {contentType}, "Accept": {"application/json"}}
	_, err = c.doRaw(ctx, adminScope, http.MethodPost, "/v1/send/"+ap, nil, h, payload)
	return err
}

// Registry returns the registry's clusters, nodes, log level and counters.
func (c *Client) Registry(ctx context.Context) (*RegistryInfo, error) {
	var out RegistryInfo
	if err := c.do(ctx, adminScope, http.MethodGet, "/v1/registry", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SetRegistryLogLevel sets the registry's own log level: off, info or
// verbose.
func (c *Client) SetRegistryLogLevel(ctx context.Context, level string) error {
	return c.do(ctx, adminScope, http.MethodPut, "/v1/registry", nil, RegistryLogLevel{Level: level}, nil)
}

// ConnectCluster connects the node to a named cluster; DisconnectCluster
// disconnects it.
func (c *Client) ConnectCluster(ctx context.Context, name string) error {
	return c.do(ctx, adminScope, http.MethodPut, "/v1/clusters/"+url.PathEscape(name), nil, nil, nil)
}

// DisconnectCluster disconnects the node from a named cluster.
func (c *Client) DisconnectCluster(ctx context.Context, name string) error {
	return c.do(ctx, adminScope, http.MethodDelete, "/v1/clusters/"+url.PathEscape(name), nil, nil, nil)
}

// NewWebhookProcess makes a process served by a webhook.
func (c *Client) NewWebhookProcess(ctx context.Context, req ProcessRequest) (*ProcessInfo, error) {
	var out ProcessInfo
	if err := c.do(ctx, adminScope, http.MethodPost, "/v1/processes", nil, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RenewProcess renews a webhook process's lease.
func (c *Client) RenewProcess(ctx context.Context, id uint64) (*ProcessInfo, error) {
	var out ProcessInfo
	if err := c.do(ctx, adminScope, http.MethodPut, "/v1/processes/"+strconv.FormatUint(id, 10), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// EndProcess ends a process made through the API.
func (c *Client) EndProcess(ctx context.Context, id uint64) error {
	return c.do(ctx, adminScope, http.MethodDelete, "/v1/processes/"+strconv.FormatUint(id, 10), nil, nil, nil)
}

// Processes lists the processes made through the API.
func (c *Client) Processes(ctx context.Context) ([]ProcessInfo, error) {
	var out []ProcessInfo
	if err := c.do(ctx, adminScope, http.MethodGet, "/v1/processes", nil, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Event types of the registry's event streams.
const (
	EventBatch   = "batch"   // GET /v1/registry/watch: a RegistryBatch
	EventProcess = "process" // GET /v1/processes/stream, first: a ProcessInfo
)

// sseStream reads server-sent events.
type sseStream struct {
	what   string
	body   io.ReadCloser
	ctx    context.Context
	cancel context.CancelFunc
	sc     *bufio.Scanner
	closed atomic.Bool
}

// openSSE sends a GET for an event stream and checks the answer.
func (c *Client) openSSE(ctx context.Context, sc scope, path string, q url.Values) (*sseStream, error) {
	ctx, cancel := context.WithCancel(ctx)
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("api: GET %s: %w", path, err)
	}
	req.Header.Set("Accept", "text/event-stream")
	if err := c.authorize(ctx, req, sc); err != nil {
		cancel()
		return nil, err
	}
	resp, err := c.hc.Do(req)
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
	s := bufio.NewScanner(resp.Body)
	s.Buffer(make([]byte, 0, 4096), maxEventBytes)
	return &sseStream{what: path, body: resp.Body, ctx: ctx, cancel: cancel, sc: s}, nil
}

// next returns the next event with data.
func (s *sseStream) next() (typ string, data []byte, err error) {
	has := false
	for s.sc.Scan() {
		line := s.sc.Bytes()
		if len(line) == 0 {
			if has {
				return typ, data, nil
			}
			typ = ""
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "event":
			typ = string(value)
		case "data":
			if has {
				data = append(data, '\n')
			}
			data, has = append(data, value...), true
		}
	}
	err = s.sc.Err()
	switch {
	case s.closed.Load():
		return "", nil, fmt.Errorf("api: %s: %w", s.what, net.ErrClosed)
	case s.ctx.Err() != nil:
		return "", nil, fmt.Errorf("api: %s: %w", s.what, s.ctx.Err())
	case err == nil:
		return "", nil, io.EOF
	}
	return "", nil, fmt.Errorf("api: %s: %w", s.what, err)
}

func (s *sseStream) close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.cancel()
	return s.body.Close()
}

// RegistryWatch is a watch of the registry's events (GET
// /v1/registry/watch), read with Next.
type RegistryWatch struct{ s *sseStream }

// Watch watches the events of the keys under prefix ("" for all, a key for
// one) in cluster, from now on.
func (c *Client) Watch(ctx context.Context, prefix, cluster string) (*RegistryWatch, error) {
	q := url.Values{"prefix": {prefix}}
	if cluster != "" {
		q.Set("cluster", cluster)
	}
	s, err := c.openSSE(ctx, adminScope, "/v1/registry/watch", q)
	if err != nil {
		return nil, err
	}
	return &RegistryWatch{s: s}, nil
}

// Next returns the next batch of events. It returns io.EOF when the node
// ended the stream, and an error wrapping net.ErrClosed after Close.
func (w *RegistryWatch) Next() (*RegistryBatch, error) {
	for {
		typ, data, err := w.s.next()
		if err != nil {
			return nil, err
		}
		if typ != EventBatch {
			continue
		}
		var b RegistryBatch
		if err := json.Unmarshal(data, &b); err != nil {
			return nil, fmt.Errorf("api: registry watch: %w", err)
		}
		return &b, nil
	}
}

// Close ends the watch.
func (w *RegistryWatch) Close() error { return w.s.close() }

// ProcessStream is a process that lives as long as this stream (GET
// /v1/processes/stream): its messages are read with Next; closing the
// stream ends the process, and its names and memberships go.
type ProcessStream struct {
	s    *sseStream
	info ProcessInfo
}

// OpenProcess makes a process whose lifetime is the returned stream.
func (c *Client) OpenProcess(ctx context.Context) (*ProcessStream, error) {
	s, err := c.openSSE(ctx, adminScope, "/v1/processes/stream", nil)
	if err != nil {
		return nil, err
	}
	typ, data, err := s.next()
	if err == nil && typ != EventProcess {
		err = fmt.Errorf("api: process stream: first event %q, want %q", typ, EventProcess)
	}
	var ps ProcessStream
	if err == nil {
		err = json.Unmarshal(data, &ps.info)
	}
	if err != nil {
		s.close()
		return nil, err
	}
	ps.s = s
	return &ps, nil
}

// Info returns the process's number and address.
func (p *ProcessStream) Info() ProcessInfo { return p.info }

// Next returns the next message of the process.
func (p *ProcessStream) Next() (*ProcessMessage, error) {
	for {
		typ, data, err := p.s.next()
		if err != nil {
			return nil, err
		}
		if typ != EventMessage {
			continue
		}
		var m ProcessMessage
		if err := json.Unmarshal(data, &m); err != nil {
			return nil, fmt.Errorf("api: process stream: %w", err)
		}
		return &m, nil
	}
}

// Close ends the process.
func (p *ProcessStream) Close() error { return p.s.close() }
