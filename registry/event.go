package registry

import (
	"fmt"
)

// EventKind says what happened to an entry.
type EventKind uint8

const (
	// Registered: a process registered a name, or re-registered it with
	// new metadata (Update, PreviousMeta), or won it in a conflict.
	Registered EventKind = iota + 1
	// Unregistered: a name went: Unregister, the process ended, its node
	// left or failed or left the cluster, or it lost a conflict (Reason).
	Unregistered
	// Joined: a process joined a group, or joined again with new metadata
	// (Update, PreviousMeta).
	Joined
	// Left: a process left a group: Leave, the process ended, its node
	// left, failed or left the cluster (Reason).
	Left
)

var eventNames = [...]string{Registered: "registered", Unregistered: "unregistered", Joined: "joined", Left: "left"}

func (k EventKind) String() string {
	if int(k) < len(eventNames) && eventNames[k] != "" {
		return eventNames[k]
	}
	return fmt.Sprintf("EventKind(%d)", uint8(k))
}

// MarshalText encodes the kind as its name.
func (k EventKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText decodes a kind from its name.
func (k *EventKind) UnmarshalText(b []byte) error {
	for i, n := range eventNames {
		if n != "" && n == string(b) {
			*k = EventKind(i)
			return nil
		}
	}
	return fmt.Errorf("registry: unknown event kind %q", b)
}

// Reason says why an entry was removed. The values are stable: they travel
// between nodes and appear in the API.
type Reason string

const (
	// ReasonUnregistered: the process called Unregister.
	ReasonUnregistered Reason = "unregistered"
	// ReasonLeft: the process called Leave.
	ReasonLeft Reason = "left"
	// ReasonProcessEnded: the process ended (its context, Close, a panic
	// in its handler, the API connection or webhook that was it went
	// away). Detail says how.
	ReasonProcessEnded Reason = "process_ended"
	// ReasonNodeLeft: the entry's node left the realm cleanly.
	ReasonNodeLeft Reason = "node_left"
	// ReasonNodeDown: the entry's node failed, or can no longer be
	// reached (a crash, a partition).
	ReasonNodeDown Reason = "node_down"
	// ReasonNodeRestarted: the entry's node started again; its entries of
	// the previous run are gone.
	ReasonNodeRestarted Reason = "node_restarted"
	// ReasonClusterLeft: the entry's node (or this node) disconnected from
	// the entry's cluster.
	ReasonClusterLeft Reason = "cluster_left"
	// ReasonConflict: another process's registration of the same name won
	// (Detail names the winner and the rule).
	ReasonConflict Reason = "conflict"
	// ReasonRemoved: the entry was missing from a full state copy of its
	// node; the reason it went was not kept (the node removed it while
	// this one was too far behind for a delta).
	ReasonRemoved Reason = "removed"
	// ReasonRegistryClosed: the entry's node closed its registry.
	ReasonRegistryClosed Reason = "registry_closed"
)

// maxDetail bounds a removal's detail, in bytes, on the wire.
const maxDetail = 200

// Event is one change seen by a monitor.
type Event struct {
	Kind    EventKind
	Cluster string // "" for the default cluster
	Key     string
	Addr    Addr
	Meta    []byte
	// Update is true when a registered or joined event replaces the
	// metadata of an entry that was already there; PreviousMeta is then
	// the metadata it replaced.
	Update       bool
	PreviousMeta []byte
	// Reason and Detail say why, on unregistered and left.
	Reason Reason
	Detail string
}

func (e Event) String() string {
	s := fmt.Sprintf("%s %q %s", e.Kind, e.Key, e.Addr)
	if e.Cluster != "" {
		s += " cluster=" + e.Cluster
	}
	if e.Reason != "" {
		s += " reason=" + string(e.Reason)
	}
	if e.Detail != "" {
		s += " (" + e.Detail + ")"
	}
	return s
}
