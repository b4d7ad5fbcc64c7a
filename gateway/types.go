package gateway

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	"github.com/macula-io/macula/nat"
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

// NATInfo is the answer of GET /v1/nat: what the node knows of its NAT,
// and the realm's security, so that an open realm says so wherever a
// node's reachability is shown.
type NATInfo struct {
	nat.Info
	Security string `json:"security"`
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
	Direction string `json:"direction,omitempty"`
	// Path is "direct" or "relayed"; RTTMillis the smoothed round-trip time
	// in milliseconds (0 until measured).
	Path      string    `json:"path,omitempty"`
	RTTMillis float64   `json:"rtt_ms"`
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
	// Remote is the handler's own error, with Code CodeRemoteError only.
	Remote *RemoteDetail `json:"remote,omitempty"`
}

// RemoteDetail is the error a procedure's handler answered a call with
// (an rpc.RemoteError), in the body of a 422 remote_error answer.
type RemoteDetail struct {
	// Code is the handler's code, such as "invalid_order".
	Code    string `json:"code"`
	Message string `json:"message"`
	// Data is the handler's optional detail. It is the JSON value itself
	// when the call's codec is JSON and the detail is valid JSON
	// (DataEncoding "json"); otherwise a JSON string holding the bytes in
	// standard base64 (DataEncoding "base64"). Absent when there is none.
	Data         json.RawMessage `json:"data,omitempty"`
	DataEncoding string          `json:"data_encoding,omitempty"`
}

// Encodings of RemoteDetail.Data.
const (
	DataJSON   = "json"
	DataBase64 = "base64"
)

// Bytes returns the detail as the handler sent it: the JSON text, or the
// decoded base64. It is nil when there is none.
func (d *RemoteDetail) Bytes() ([]byte, error) {
	switch {
	case d == nil || len(d.Data) == 0:
		return nil, nil
	case d.DataEncoding == DataBase64:
		var s string
		if err := json.Unmarshal(d.Data, &s); err != nil {
			return nil, fmt.Errorf("remote error data: %w", err)
		}
		return base64.StdEncoding.DecodeString(s)
	}
	return []byte(d.Data), nil
}

// AdvertiseRequest is the body of POST /v1/advertise/{procedure}.
type AdvertiseRequest struct {
	// URL is the webhook each call is POSTed to, http or https, on
	// loopback unless the gateway allows others.
	URL string `json:"url"`
	// Timeout bounds one webhook request, as a Go duration ("30s"); the
	// call's own deadline bounds it too. "" or "0s": the call's deadline
	// alone.
	Timeout string `json:"timeout,omitempty"`
	// Lease is how long the advertisement lasts unless renewed by the same
	// request again ("15s", at least MinLease). "" or "0s": until
	// unadvertised or the gateway stops.
	Lease string `json:"lease,omitempty"`
}

// Advertisement is a procedure advertised on the node, in the answers of
// the /v1/advertise routes. URL and the fields after it are set only for a
// procedure advertised through the API with a webhook.
type Advertisement struct {
	Procedure string `json:"procedure"`
	URL       string `json:"url,omitempty"`
	// Timeout and Lease are Go durations; absent when there is none.
	Timeout string `json:"timeout,omitempty"`
	Lease   string `json:"lease,omitempty"`
	// Expires is when the lease ends unless renewed.
	Expires *time.Time `json:"expires,omitempty"`
}

// PublishResult is the answer of POST /v1/publish/{topic}.
type PublishResult struct {
	Topic string `json:"topic"`
}

// SubscribeEvent is one message of a subscription: the data of an "event:
// message" of GET /v1/subscribe.
type SubscribeEvent struct {
	// Topic is the concrete topic the message was published to.
	Topic string `json:"topic"`
	// Payload is the message's payload. It is the JSON value itself when
	// the payload is valid JSON in UTF-8 (PayloadEncoding empty): the
	// bytes as published, or compacted if they held line breaks.
	// Otherwise it is a JSON string holding the bytes in standard base64
	// (PayloadEncoding "base64"). Bytes decodes either.
	Payload         json.RawMessage `json:"payload"`
	PayloadEncoding string          `json:"payload_encoding,omitempty"`
	// Publisher is the did:key of the publishing node.
	Publisher string `json:"publisher"`
	// Time is when it was published, on the publisher's clock.
	Time time.Time `json:"time"`
	// Seq is the publishing node's sequence number of the message: it
	// grows with every message that node publishes, on any topic.
	Seq uint64 `json:"seq"`
}

// PayloadBase64 is the SubscribeEvent.PayloadEncoding of a payload that
// is not JSON.
const PayloadBase64 = "base64"

// Bytes returns the payload as it was published: the JSON text, or the
// decoded base64.
func (e *SubscribeEvent) Bytes() ([]byte, error) {
	if e.PayloadEncoding != PayloadBase64 {
		return []byte(e.Payload), nil
	}
	var s string
	if err := json.Unmarshal(e.Payload, &s); err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	return base64.StdEncoding.DecodeString(s)
}

// SubscribeDropped is the data of an "event: dropped" of GET
// /v1/subscribe: the node dropped messages of this subscription because the
// client did not read them fast enough.
type SubscribeDropped struct {
	// Dropped is the number dropped since the previous report.
	Dropped uint64 `json:"dropped"`
	// Total is the number dropped since the subscription began.
	Total uint64 `json:"total"`
}

// errorBody wraps Error as the whole body of an error answer.
type errorBody struct {
	Error Error `json:"error"`
}
