package api

import (
	"context"
	"net/http"
	"net/url"
)

// DHTStats is the answer of GET /v1/dht/stats: the node's routing table and
// stored records.
type DHTStats struct {
	// Mode is the mode the DHT runs in now: "server", "client" or "auto".
	Mode string `json:"mode"`
	// Nodes is the number of peers in the routing table.
	Nodes int `json:"nodes"`
	// Buckets is the number of non-empty k-buckets.
	Buckets int `json:"buckets"`
	// ProviderKeys is the number of keys this node holds provider records
	// for (its own and other peers'); ValueRecords the value records it stores.
	ProviderKeys int `json:"provider_keys"`
	ValueRecords int `json:"value_records"`
	// StoredKeys is ProviderKeys + ValueRecords.
	StoredKeys int `json:"stored_keys"`
	// Providing is the number of keys this node itself provides.
	Providing int `json:"providing"`
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
	// Announced is true once the key's announcement to the realm is done,
	// false while it is pending (no peer yet, or it failed): the node
	// provides the key either way, and retries the announcement until it
	// is done.
	Announced bool `json:"announced"`
}

// DHTStats returns the node's DHT statistics.
func (c *Client) DHTStats(ctx context.Context) (*DHTStats, error) {
	var out DHTStats
	if err := c.do(ctx, adminScope, http.MethodGet, "/v1/dht/stats", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DHTLookup returns the providers of key that the node finds. If ctx has a
// deadline, the server searches until a little before it; otherwise for
// its default lookup timeout (5s).
func (c *Client) DHTLookup(ctx context.Context, key string) (*LookupResult, error) {
	var out LookupResult
	if err := c.do(ctx, adminScope, http.MethodGet, "/v1/dht/lookup", timeoutQuery(ctx, url.Values{"key": {key}}), nil, &out); err != nil {
		return nil, err
	}
	if out.Providers == nil {
		out.Providers = []Provider{}
	}
	return &out, nil
}

// DHTProvide makes the node provide key from now on.
func (c *Client) DHTProvide(ctx context.Context, key string) (*ProvideResult, error) {
	var out ProvideResult
	if err := c.do(ctx, adminScope, http.MethodPost, "/v1/dht/provide", timeoutQuery(ctx, url.Values{"key": {key}}), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
