package member

import (
	"fmt"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Member is one node of the realm as the membership knows it.
type Member struct {
	ID peer.ID `json:"id"`
	// Name is the node's name in the realm.
	Name string `json:"name"`
	// Capabilities the node serves, sorted ("chat", "game").
	Capabilities []string `json:"capabilities,omitempty"`
	// Clusters (registry subclusters) the node joined, sorted.
	Clusters []string `json:"clusters,omitempty"`
	// Incarnation grows with every change of the node's own record, and
	// on every restart (it starts from the clock, in milliseconds).
	Incarnation uint64 `json:"incarnation"`
}

// HasCapability reports whether m serves capability c.
func (m Member) HasCapability(c string) bool {
	_, ok := slices.BinarySearch(m.Capabilities, c)
	return ok
}

// InCluster reports whether m joined cluster c.
func (m Member) InCluster(c string) bool {
	_, ok := slices.BinarySearch(m.Clusters, c)
	return ok
}

// ChangeKind says how a member changed.
type ChangeKind uint8

// The kinds of Change. WARNING: append only; the names are part of the API.
const (
	// Joined: a node became a member (also a member that had left or
	// failed and came back).
	Joined ChangeKind = iota + 1
	// Updated: a member changed its name, capabilities or clusters, or
	// restarted; Previous is what it was.
	Updated
	// Left: a member left cleanly.
	Left
	// Failed: a member stopped answering and was declared failed.
	Failed
)

var changeNames = map[ChangeKind]string{Joined: "joined", Updated: "updated", Left: "left", Failed: "failed"}

// String returns the kind's name: joined, updated, left or failed.
func (k ChangeKind) String() string {
	if s, ok := changeNames[k]; ok {
		return s
	}
	return fmt.Sprintf("change(%d)", uint8(k))
}

// MarshalText encodes the kind as its name.
func (k ChangeKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// Change is one change of the membership.
type Change struct {
	Kind ChangeKind `json:"kind"`
	// Member is the member after the change (for Left and Failed: as it
	// was last known).
	Member Member `json:"member"`
	// Previous is the member before an Updated; for Left and Failed the
	// same as Member; zero for Joined.
	Previous Member `json:"previous,omitzero"`
	// Version is the view's version after the change: it grows by one
	// with every change this node sees, so a watcher can tell whether it
	// is up to date with List (see Members.Version).
	Version uint64 `json:"version"`
	// Reason says more: for Updated "changed" or "restarted", for Failed
	// how the failure was found out.
	Reason string `json:"reason,omitempty"`
}

// Stats counts what Members did since New.
type Stats struct {
	// Members is the number of live members, this node included; Suspect
	// how many of them are under suspicion; Tombstones the failed and
	// departed members still remembered.
	Members    int `json:"members"`
	Suspect    int `json:"suspect"`
	Tombstones int `json:"tombstones"`
	// Links is the number of links (streams to other members) open now;
	// Neighbours how many members the overlay wants links to.
	Links      int `json:"links"`
	Neighbours int `json:"neighbours"`
	// Version is the view's version (see Change.Version).
	Version uint64 `json:"version"`
	// FramesIn and FramesOut count frames received and sent.
	FramesIn  uint64 `json:"frames_in"`
	FramesOut uint64 `json:"frames_out"`
	// Syncs counts the digest exchanges (views that differed when a link
	// was made).
	Syncs uint64 `json:"syncs"`
	// Suspicions counts the suspicions this node raised (a link went
	// silent), Refutations the times it refuted one of itself.
	Suspicions  uint64 `json:"suspicions"`
	Refutations uint64 `json:"refutations"`
	// DroppedUnauthorized counts records dropped because their member may
	// not serve a capability it claims (secure realm); DroppedInvalid
	// frames dropped for a bad signature or encoding.
	DroppedUnauthorized uint64 `json:"dropped_unauthorized"`
	DroppedInvalid      uint64 `json:"dropped_invalid"`
	// RefusedFull counts news refused because MaxMembers was reached.
	RefusedFull uint64 `json:"refused_full"`
	// LinkOverflows counts links closed because their queue was full.
	LinkOverflows uint64 `json:"link_overflows"`
	// Health counts this node's recent signs of its own slowness (0 is
	// healthy); each lengthens the silence it tolerates on a link by one
	// ProbeTimeout (see the package doc).
	Health int `json:"health"`
}
