package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"time"
)

// Mesh is the answer of GET /v1/mesh: every member of the realm and the
// links between them, as each node reports its own (package mesh).
type Mesh struct {
	Time  time.Time  `json:"time"`
	Nodes []MeshNode `json:"nodes"`
	Links []MeshLink `json:"links"`
}

// MeshNode is one member of the realm in a Mesh.
type MeshNode struct {
	PeerID       string   `json:"peer_id"`
	Name         string   `json:"name,omitempty"`
	Self         bool     `json:"self,omitempty"`
	Capabilities []string `json:"capabilities,omitempty"`
	Clusters     []string `json:"clusters,omitempty"`
	// Asked: the node was asked for its links; Answered: it answered;
	// Error: why it did not.
	Asked    bool   `json:"asked"`
	Answered bool   `json:"answered"`
	Error    string `json:"error,omitempty"`
	// SkewMS is its clock minus this node's, in milliseconds, within
	// ±SkewErrMS; absent when it did not answer.
	SkewMS    *float64 `json:"skew_ms,omitempty"`
	SkewErrMS float64  `json:"skew_err_ms,omitempty"`
}

// MeshLink is a connection between two members (peer IDs, A < B): "direct"
// when either end sees a direct connection, else "relayed"; RTTMS the
// lower of the ends' round-trip times (0 until measured).
type MeshLink struct {
	A     string  `json:"a"`
	B     string  `json:"b"`
	Path  string  `json:"path"`
	RTTMS float64 `json:"rtt_ms"`
}

// Histogram is a latency histogram: Counts[i] counts the samples of at
// most Dashboard.LatencyBoundsMS[i] milliseconds (and above the previous
// bound); the last entry counts the slower ones. SumMS is their total.
type Histogram struct {
	Counts []uint64 `json:"counts"`
	SumMS  float64  `json:"sum_ms"`
}

// ProcedureStats are one procedure's counts on this node, cumulative:
// the calls made from here by outcome, and those served here by outcome,
// each with its latency.
type ProcedureStats struct {
	Procedure string `json:"procedure"`
	// Advertised: advertised on this node.
	Advertised    bool              `json:"advertised"`
	Calls         map[string]uint64 `json:"calls"`
	CallLatency   Histogram         `json:"call_latency"`
	Served        map[string]uint64 `json:"served"`
	ServedLatency Histogram         `json:"served_latency"`
}

// TopicStats counts the messages this node published to one topic.
type TopicStats struct {
	Topic     string `json:"topic"`
	Published uint64 `json:"published"`
}

// PatternStats counts what this node's subscriptions of one pattern got.
type PatternStats struct {
	Pattern       string `json:"pattern"`
	Subscriptions int    `json:"subscriptions"`
	Delivered     uint64 `json:"delivered"`
	Dropped       uint64 `json:"dropped"`
}

// RegistrySummary is the registry part of a Dashboard: the first names
// and groups (at most DashboardListLimit of each) and the counters.
type RegistrySummary struct {
	Names     []RegistryName  `json:"names"`
	Groups    []RegistryGroup `json:"groups"`
	Truncated bool            `json:"truncated,omitempty"`
	// Stats are package registry's Stats.
	Stats json.RawMessage `json:"stats"`
}

// RegistryName is a registered name and the node of its process.
type RegistryName struct {
	Key     string `json:"key"`
	Cluster string `json:"cluster,omitempty"`
	Node    string `json:"node"`
}

// RegistryGroup is a group and its number of members.
type RegistryGroup struct {
	Key     string `json:"key"`
	Cluster string `json:"cluster,omitempty"`
	Members int    `json:"members"`
}

// DashboardListLimit bounds the topics, names and groups of a Dashboard.
const DashboardListLimit = 100

// Dashboard is the answer of GET /v1/dashboard, and each "snapshot" event
// of GET /v1/dashboard/stream: what the dashboard page shows, at Time.
// Counters are cumulative since the node (or the metrics) started; rates
// come from two snapshots. Parts of services the node does not run are
// absent.
type Dashboard struct {
	Time  time.Time `json:"time"`
	Node  NodeInfo  `json:"node"`
	NAT   NATInfo   `json:"nat"`
	Peers []Peer    `json:"peers"`
	// Relays are the peer IDs of the relays this node holds reservations
	// with.
	Relays []string `json:"relays"`
	// Mesh is the realm's picture (?mesh=true, and every few snapshots of
	// a stream).
	Mesh *Mesh `json:"mesh,omitempty"`
	// LatencyBoundsMS are the bounds of every Histogram.
	LatencyBoundsMS []float64        `json:"latency_bounds_ms"`
	Procedures      []ProcedureStats `json:"procedures"`
	// Topics are the topics this node published to, the most used first
	// (at most DashboardListLimit).
	Topics   []TopicStats     `json:"topics"`
	Patterns []PatternStats   `json:"patterns"`
	PubSub   PubSubStats      `json:"pubsub"`
	DHT      *DHTStats        `json:"dht,omitempty"`
	Members  *MemberStats     `json:"members,omitempty"`
	Ring     *Ring            `json:"ring,omitempty"`
	Actors   *ActorStats      `json:"actors,omitempty"`
	Registry *RegistrySummary `json:"registry,omitempty"`
}

// Mesh returns the realm's picture (GET /v1/mesh).
func (c *Client) Mesh(ctx context.Context) (*Mesh, error) {
	var out Mesh
	if err := c.do(ctx, adminScope, http.MethodGet, "/v1/mesh", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Dashboard returns what the dashboard shows now (GET /v1/dashboard), with
// the mesh when mesh is true.
func (c *Client) Dashboard(ctx context.Context, mesh bool) (*Dashboard, error) {
	var q url.Values
	if mesh {
		q = url.Values{"mesh": {"true"}}
	}
	var out Dashboard
	if err := c.do(ctx, adminScope, http.MethodGet, "/v1/dashboard", q, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Metrics returns the node's metrics in the Prometheus text format (GET
// /metrics).
func (c *Client) Metrics(ctx context.Context) ([]byte, error) {
	return c.doRaw(ctx, adminScope, http.MethodGet, "/metrics", nil, http.Header{"Accept": {"text/plain"}}, nil)
}

// OpenAPI returns the OpenAPI document of the API (GET /v1/openapi.json).
func (c *Client) OpenAPI(ctx context.Context) ([]byte, error) {
	return c.doRaw(ctx, adminScope, http.MethodGet, "/v1/openapi.json", nil, nil, nil)
}
