package api

import (
	"context"
	"net/http"
	"net/url"
)

// Member is one member of the realm, in GET /v1/members (package member's
// Member).
type Member struct {
	PeerID string `json:"peer_id"`
	DID    string `json:"did"`
	Name   string `json:"name"`
	// Capabilities the member serves and Clusters it joined, sorted.
	Capabilities []string `json:"capabilities"`
	Clusters     []string `json:"clusters"`
	// Incarnation grows with every change of the member's record and on
	// every restart.
	Incarnation uint64 `json:"incarnation"`
	// Self marks the node that answered.
	Self bool `json:"self,omitempty"`
}

// Members is the answer of GET /v1/members: the live members of the realm
// as the node sees them, itself included, sorted by peer ID.
type Members struct {
	// Version grows by one with every change of the node's view.
	Version uint64   `json:"version"`
	Members []Member `json:"members"`
}

// Capabilities is the body of PUT /v1/capabilities: the capabilities the
// node serves from now on (names of one segment, such as "game").
type Capabilities struct {
	Capabilities []string `json:"capabilities"`
}

// MemberStats is the answer of GET /v1/members/stats (package member's
// Stats).
type MemberStats struct {
	Members             int    `json:"members"`
	Suspect             int    `json:"suspect"`
	Tombstones          int    `json:"tombstones"`
	Links               int    `json:"links"`
	Neighbours          int    `json:"neighbours"`
	Version             uint64 `json:"version"`
	FramesIn            uint64 `json:"frames_in"`
	FramesOut           uint64 `json:"frames_out"`
	Syncs               uint64 `json:"syncs"`
	Suspicions          uint64 `json:"suspicions"`
	Refutations         uint64 `json:"refutations"`
	DroppedUnauthorized uint64 `json:"dropped_unauthorized"`
	DroppedInvalid      uint64 `json:"dropped_invalid"`
	RefusedFull         uint64 `json:"refused_full"`
	LinkOverflows       uint64 `json:"link_overflows"`
	Health              int    `json:"health"`
}

// MembersQuery filters GET /v1/members: members serving Capability and in
// Cluster (either may be empty).
type MembersQuery struct {
	Capability string
	Cluster    string
}

// RealmMembers returns the live members of the node's realm (not to be
// confused with Members, a registry group's).
func (c *Client) RealmMembers(ctx context.Context, q MembersQuery) (*Members, error) {
	v := url.Values{}
	if q.Capability != "" {
		v.Set("capability", q.Capability)
	}
	if q.Cluster != "" {
		v.Set("cluster", q.Cluster)
	}
	var out Members
	if err := c.do(ctx, adminScope, http.MethodGet, "/v1/members", v, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// MemberStats returns the membership's counters.
func (c *Client) MemberStats(ctx context.Context) (*MemberStats, error) {
	var out MemberStats
	if err := c.do(ctx, adminScope, http.MethodGet, "/v1/members/stats", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SetCapabilities replaces the capabilities the node serves and returns
// its record. In a secure realm each needs the node's grant of
// /macula/serve (else an *Error with code CodeUnauthorized).
func (c *Client) SetCapabilities(ctx context.Context, caps []string) (*Member, error) {
	if caps == nil {
		caps = []string{}
	}
	var out Member
	if err := c.do(ctx, adminScope, http.MethodPut, "/v1/capabilities", nil, Capabilities{Capabilities: caps}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
