package gateway

import "time"

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
}

// APIAddrs are the addresses the API is served on; empty when unknown (a
// handler from NewHandler serves wherever its caller puts it).
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
	Direction string    `json:"direction,omitempty"`
	Since     time.Time `json:"since"`
}

// Provider is one provider of a DHT key.
type Provider struct {
	PeerID string   `json:"peer_id"`
	DID    string   `json:"did,omitempty"`
	Addrs  []string `json:"addrs"`
}

// LookupResult is the answer of GET /v1/dht/lookup.
type LookupResult struct {
	Key       string     `json:"key"`
	Providers []Provider `json:"providers"`
}

// ProvideResult is the answer of POST /v1/dht/provide.
type ProvideResult struct {
	Key string `json:"key"`
}

// LogLevel is the body of GET and PUT /v1/log/level: "debug", "info",
// "warn" or "error".
type LogLevel struct {
	Level string `json:"level"`
}

// Error is the error of an API answer; every error answer's body is
// {"error":{"code":...,"message":...}}. Code is one of the Code constants.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// errorBody wraps Error as the whole body of an error answer.
type errorBody struct {
	Error Error `json:"error"`
}
