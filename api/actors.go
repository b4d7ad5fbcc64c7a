package api

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// CommandActor is the UCAN command of calls and casts to actors; its
// resource is "<realm>.<capability>.<kind>".
const CommandActor = "/macula/actor"

// Headers of the actor routes.
const (
	// InitArgHeader carries the init argument of an actor call or cast
	// (used when the message starts the actor). The query parameter init
	// does the same; the header wins.
	InitArgHeader = "Macula-Init-Arg"
	// ActorNodeHeader and ActorIncarnationHeader carry the reference of
	// the incarnation that answered a call: its node's peer ID and its
	// incarnation number.
	ActorNodeHeader        = "Macula-Actor-Node"
	ActorIncarnationHeader = "Macula-Actor-Incarnation"
)

// Error codes of the actor routes (see also the codes in errors.go).
const (
	CodeNotEnabled   = "not_enabled"   // 404: the node runs no actor system
	CodeNotServed    = "not_served"    // 404: no node of the realm serves the capability
	CodeUnknownKind  = "unknown_kind"  // 404: the actor's owner has no such kind
	CodeMailboxFull  = "mailbox_full"  // 429: the actor's mailbox is full
	CodeActorCrashed = "actor_crashed" // 422: the actor panicked handling the message; it restarts on the next
	CodeActorInit    = "actor_init"    // 422: the actor's Init failed
	CodeRestartLimit = "restart_limit" // 503: the actor crashed too often recently; it is not restarted yet
)

// ActorRef is the reference of an actor's incarnation.
type ActorRef struct {
	Node        string `json:"node"`
	Capability  string `json:"capability"`
	Kind        string `json:"kind"`
	ID          string `json:"id"`
	Incarnation uint64 `json:"incarnation"`
}

// ActorInfo is an actor active on a node (GET /v1/actors).
type ActorInfo struct {
	ActorRef
	Shard   int `json:"shard"`
	Mailbox int `json:"mailbox"`
	// IdleNs is the time since its last message, in nanoseconds.
	IdleNs int64 `json:"idle_ns"`
}

// ActorStats are a node's actor counters.
type ActorStats struct {
	Active          int64  `json:"active"`
	Queued          int64  `json:"queued"`
	Kinds           int    `json:"kinds"`
	MovedOut        uint64 `json:"moved_out"`
	MovedIn         uint64 `json:"moved_in"`
	HandoffTimeouts uint64 `json:"handoff_timeouts"`
	Conflicts       uint64 `json:"conflicts"`
	Redirects       uint64 `json:"redirects"`
}

// ActorList is the answer of GET /v1/actors.
type ActorList struct {
	Stats  ActorStats  `json:"stats"`
	Actors []ActorInfo `json:"actors"`
	// Truncated is set when ?limit= cut the list.
	Truncated bool `json:"truncated,omitempty"`
}

// Activation is one record of a node's activation log (GET
// /v1/actors/log): an incarnation started or stopped.
type Activation struct {
	Capability  string    `json:"capability"`
	Kind        string    `json:"kind"`
	ID          string    `json:"id"`
	Node        string    `json:"node"`
	Incarnation uint64    `json:"incarnation"`
	Time        time.Time `json:"time"`
	Started     bool      `json:"started,omitempty"`
	Reason      string    `json:"reason,omitempty"`
}

// ActivationLog is the answer of GET /v1/actors/log.
type ActivationLog struct {
	Records []Activation `json:"records"`
	// Truncated is set when older records were dropped.
	Truncated bool `json:"truncated,omitempty"`
}

// Ring is the answer of GET /v1/ring: the owners of the shards of every
// capability, as this node sees them.
type Ring struct {
	// Node is the answering node; Shards the shards per capability (4096).
	Node         string           `json:"node"`
	Shards       int              `json:"shards"`
	Capabilities []CapabilityRing `json:"capabilities"`
}

// CapabilityRing is the placement of one capability.
type CapabilityRing struct {
	Capability string `json:"capability"`
	// Nodes serve the capability, sorted by ID, with their shard counts.
	Nodes []RingNode `json:"nodes"`
	// MaxOverMean is the largest load over the mean.
	MaxOverMean float64 `json:"max_over_mean"`
	// Digest identifies the placement: two nodes with the same digest
	// agree on every owner.
	Digest string `json:"digest"`
	// Owners[shard] is the index in Nodes of the shard's owner; only with
	// ?owners=true.
	Owners []int `json:"owners,omitempty"`
}

// RingNode is one node of a capability's placement.
type RingNode struct {
	ID     string `json:"id"`
	Shards int    `json:"shards"`
}

// ActorOptions tune one actor call or cast.
type ActorOptions struct {
	// InitArg starts the actor with this argument if the message starts
	// it (InitArgHeader); ignored otherwise. It must be valid as an HTTP
	// header value (printable text, such as JSON without newlines).
	InitArg []byte
	// Timeout bounds the message on the node (TimeoutHeader); 0: a tenth
	// inside ctx's deadline if it has one, else the node's default.
	Timeout time.Duration
	// ContentType is the payload's media type, passed on as the reply's.
	// "": raw bytes.
	ContentType string
	// Realm is the node's realm, for the resource of a token (Client.Token
	// set): "<realm>.<capability>.<kind>". "": the client asks the node
	// (GET /v1/node, once), which needs a token for /macula itself.
	Realm string
}

func actorPath(capability, kind, id string) string {
	return "/v1/actors/" + url.PathEscape(capability) + "/" + url.PathEscape(kind) + "/" + url.PathEscape(id)
}

// ActorCall sends payload to the actor (capability, kind, id) through the
// node and returns the reply and the reference of the incarnation that
// answered. A failed call is an *APIError: CodeNotServed, CodeUnknownKind,
// CodeMailboxFull, CodeActorCrashed, CodeActorInit, CodeRestartLimit,
// CodeRemoteError (the actor's own error, Remote set), CodeTimeout,
// CodeUnavailable, CodeDisconnected, CodeUnauthorized, CodeInvalidName,
// CodeNotEnabled.
func (c *Client) ActorCall(ctx context.Context, capability, kind, id string, payload []byte, opts ActorOptions) (ActorRef, []byte, error) {
	ref := ActorRef{Capability: capability, Kind: kind, ID: id}
	resp, body, err := c.actorRequest(ctx, capability, kind, id, payload, opts, false)
	if err != nil {
		return ref, nil, err
	}
	ref.Node = resp.Header.Get(ActorNodeHeader)
	ref.Incarnation, _ = strconv.ParseUint(resp.Header.Get(ActorIncarnationHeader), 10, 64)
	return ref, body, nil
}

// ActorCast sends payload to the actor and returns once its owner has
// accepted it (202); errors as ActorCall's.
func (c *Client) ActorCast(ctx context.Context, capability, kind, id string, payload []byte, opts ActorOptions) error {
	_, _, err := c.actorRequest(ctx, capability, kind, id, payload, opts, true)
	return err
}

func (c *Client) actorRequest(ctx context.Context, capability, kind, id string, payload []byte, opts ActorOptions, cast bool) (*http.Response, []byte, error) {
	path := actorPath(capability, kind, id)
	u := c.base + path
	if cast {
		u += "?cast=true"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(payload))
	if err != nil {
		return nil, nil, fmt.Errorf("api: POST %s: %w", path, err)
	}
	if opts.ContentType != "" {
		req.Header.Set("Content-Type", opts.ContentType)
	} else {
		req.Header.Set("Content-Type", ContentTypeRaw)
	}
	if opts.InitArg != nil {
		req.Header.Set(InitArgHeader, string(opts.InitArg))
	}
	setTimeout(ctx, req.Header, opts.Timeout)
	sc := scope{cmd: CommandActor}
	if c.Token != nil {
		realmName := opts.Realm
		if realmName == "" {
			if realmName, err = c.realmName(ctx); err != nil {
				return nil, nil, err
			}
		}
		sc.res = realmName + "." + capability + "." + kind
	}
	if err := c.authorize(ctx, req, sc); err != nil {
		return nil, nil, err
	}
	resp, err := c.send(req)
	if err != nil {
		return nil, nil, fmt.Errorf("api: POST %s: %w", path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return nil, nil, fmt.Errorf("api: POST %s: reading the answer: %w", path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, nil, apiErrorOf(resp.StatusCode, raw)
	}
	return resp, raw, nil
}

// Actors returns the actors active on the node, at most limit (0: the
// node's default, 1000), and its counters.
func (c *Client) Actors(ctx context.Context, limit int) (*ActorList, error) {
	var q url.Values
	if limit > 0 {
		q = url.Values{"limit": {strconv.Itoa(limit)}}
	}
	var out ActorList
	if err := c.do(ctx, adminScope, http.MethodGet, "/v1/actors", q, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ActivationLog returns the node's activation log, for the
// single-activation checker.
func (c *Client) ActivationLog(ctx context.Context) (*ActivationLog, error) {
	var out ActivationLog
	if err := c.do(ctx, adminScope, http.MethodGet, "/v1/actors/log", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Ring returns the placement of every capability's shards as the node sees
// it; with owners, the owner of every shard too.
func (c *Client) Ring(ctx context.Context, owners bool) (*Ring, error) {
	var q url.Values
	if owners {
		q = url.Values{"owners": {"true"}}
	}
	var out Ring
	if err := c.do(ctx, adminScope, http.MethodGet, "/v1/ring", q, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
