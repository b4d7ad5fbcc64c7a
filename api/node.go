package api

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// NodeInfo is the answer of GET /v1/node.
type NodeInfo struct {
	PeerID string   `json:"peer_id"`
	DID    string   `json:"did"`
	Alias  string   `json:"alias"`
	Realm  string   `json:"realm"`
	Name   string   `json:"name"`
	Addrs  []string `json:"addrs"`
	// Peers is the number of connected peers of the realm.
	Peers int    `json:"peers"`
	Agent string `json:"agent"`
	// StartedAt is when the API started serving this node.
	StartedAt time.Time `json:"started_at"`
	API       APIAddrs  `json:"api"`
	// Security is SecurityOpen (no authority: any node that knows the
	// realm's name may join it and do anything, and the API asks no
	// token) or SecuritySecure.
	Security string `json:"security"`
	// Authority is the did:key of the realm authority, "" in an open realm.
	Authority string `json:"authority"`
	// Grant is what the authority granted the node, in a secure realm
	// only.
	Grant *GrantInfo `json:"grant,omitempty"`
}

// Values of NodeInfo.Security and NATInfo.Security.
const (
	SecurityOpen   = "open"
	SecuritySecure = "secure"
)

// GrantInfo is the node's own grant in a secure realm (ucan.Grant): its
// membership, the name bound to it, and its capabilities, each as
// "COMMAND on PATTERN" (e.g. "/macula/call on io.acme.orders.*").
type GrantInfo struct {
	Member       bool     `json:"member"`
	Name         string   `json:"name,omitempty"`
	Capabilities []string `json:"capabilities"`
	// Expires is when the first of the node's chains expires; absent when
	// none does.
	Expires *time.Time `json:"expires,omitempty"`
}

// APIAddrs are the addresses the API is served on; empty when unknown (a
// handler from gateway.NewHandler serves wherever its caller puts it).
type APIAddrs struct {
	HTTP  string `json:"http"`
	HTTP3 string `json:"http3,omitempty"`
}

// Peer is one connected peer of the realm, in GET /v1/peers.
type Peer struct {
	PeerID string   `json:"peer_id"`
	DID    string   `json:"did"`
	Alias  string   `json:"alias,omitempty"`
	Name   string   `json:"name,omitempty"`
	Addrs  []string `json:"addrs"`
	// Direction of the oldest connection: "inbound" or "outbound".
	Direction string `json:"direction,omitempty"`
	// Path is "direct" or "relayed"; RTTMillis the smoothed round-trip time
	// in milliseconds (0 until measured).
	Path      string    `json:"path,omitempty"`
	RTTMillis float64   `json:"rtt_ms"`
	Since     time.Time `json:"since"`
	// DirectSince is when the oldest direct connection to the peer opened;
	// absent while the path is relayed.
	DirectSince *time.Time `json:"direct_since,omitempty"`
}

// Resolution is the answer of GET /v1/resolve/{did}: what a DID resolves
// to.
type Resolution struct {
	// DID is the did:key; Alias the did:macula alias, if known.
	DID    string   `json:"did"`
	Alias  string   `json:"alias,omitempty"`
	PeerID string   `json:"peer_id"`
	Addrs  []string `json:"addrs"`
	// Record is the signed alias record the answer came from, if any; the
	// node has checked its signature.
	Record *AliasRecord `json:"record,omitempty"`
}

// AliasRecord is a signed record that binds a did:macula alias to a key,
// as the node found it in the DHT.
type AliasRecord struct {
	Alias  string   `json:"alias"`
	DID    string   `json:"did"`
	PeerID string   `json:"peer_id"`
	Addrs  []string `json:"addrs"`
	// Seq orders records of the same key: the highest wins.
	Seq uint64 `json:"seq"`
	// Bound is when the key first claimed the alias (as the key says);
	// between two keys the earlier claim wins.
	Bound time.Time `json:"bound"`
	// Expires is when the record stops counting; the owner republishes
	// before that.
	Expires time.Time `json:"expires"`
	// Member, in a secure realm, is the chain by which the authority
	// granted DID membership with this alias's name (ucan.Chain.String).
	Member string `json:"member,omitempty"`
	// Sig is the key's signature of the record (base64 in JSON).
	Sig []byte `json:"sig"`
}

// LogLevel is the body of GET and PUT /v1/log/level: "debug", "info",
// "warn" or "error".
type LogLevel struct {
	Level string `json:"level"`
}

// Node returns the node's identity and state.
func (c *Client) Node(ctx context.Context) (*NodeInfo, error) {
	var out NodeInfo
	if err := c.do(ctx, adminScope, http.MethodGet, "/v1/node", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Peers returns the connected peers of the node's realm.
func (c *Client) Peers(ctx context.Context) ([]Peer, error) {
	var out []Peer
	if err := c.do(ctx, adminScope, http.MethodGet, "/v1/peers", nil, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Resolve resolves a did:key or a did:macula alias of the node's realm. If
// ctx has a deadline, the server's own timeout is set a little inside it.
func (c *Client) Resolve(ctx context.Context, did string) (*Resolution, error) {
	var out Resolution
	if err := c.do(ctx, adminScope, http.MethodGet, "/v1/resolve/"+url.PathEscape(did), timeoutQuery(ctx, nil), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// LogLevel returns the node's log level: "debug", "info", "warn" or "error".
func (c *Client) LogLevel(ctx context.Context) (string, error) {
	var out LogLevel
	if err := c.do(ctx, adminScope, http.MethodGet, "/v1/log/level", nil, nil, &out); err != nil {
		return "", err
	}
	return out.Level, nil
}

// SetLogLevel sets the node's log level: "debug", "info", "warn" or "error".
func (c *Client) SetLogLevel(ctx context.Context, level string) error {
	return c.do(ctx, adminScope, http.MethodPut, "/v1/log/level", nil, LogLevel{Level: level}, nil)
}
