package event

import (
	"encoding/json"
	"fmt"
	"time"
)

// Kind says what happened. The numeric values are not part of any wire format,
// but the names (String) are part of the API's JSON: only append.
type Kind uint8

const (
	// ConnectionUp: a peer of the realm finished the realm handshake.
	ConnectionUp Kind = iota + 1
	// ConnectionDown: the last connection to a peer of the realm closed.
	ConnectionDown
	// CallStart: an RPC call was sent (or, on the serving side, received).
	CallStart
	// CallStop: an RPC call finished, with its outcome and duration.
	CallStop
	// Publish: a message was published to a topic.
	Publish
	// Subscribe: a subscription was made or removed.
	Subscribe
	// PeerRefused: a peer failed the realm handshake and was disconnected.
	PeerRefused
	// NATChanged: a NAT probe found another type or public address.
	NATChanged
	// MemberJoined: a node joined the realm's membership (package member);
	// Peer, Name, Capabilities and Clusters describe it.
	MemberJoined
	// MemberUpdated: a member changed its capabilities or clusters, or
	// restarted.
	MemberUpdated
	// MemberLeft: a member left the realm cleanly.
	MemberLeft
	// MemberFailed: a member stopped answering and was declared failed;
	// Reason says how it was found out.
	MemberFailed
	// ActorStarted: an actor started on this node (Capability, ActorKind,
	// Actor, Incarnation).
	ActorStarted
	// ActorStopped: an actor stopped; Reason is passivated, moved, closed
	// or crashed.
	ActorStopped
	// ActorCrashed: an actor panicked; Reason is the panic value.
	ActorCrashed
	// ActorMoved: an actor was handed to the node Peer, its shard's new
	// owner.
	ActorMoved
	// ShardsChanged: this node's shards of Capability changed: it gained
	// Gained and lost Lost of them; Shards is how many it owns now.
	ShardsChanged
	// CallServed: a call of a procedure advertised here (not an internal
	// one) finished on this node: Procedure, Peer (the caller; empty for a
	// call made on this node), Duration (the handler's), Outcome ("ok",
	// "remote_error", "timeout", "cancelled", "overloaded", "unauthorized",
	// "not_advertised" or "bad_request").
	CallServed
	// NATProbe: a NAT probe ended (every probe, not only changes):
	// Outcome is the NAT type found, Addr the public address ("" if
	// none), Duration the probe's, Reason its error, if any.
	NATProbe
	// HolePunch: a hole punch (libp2p's DCUtR) with Peer ended: Outcome
	// "direct" or "failed", Duration from its start, Reason the error of a
	// failure.
	HolePunch
	// ReachabilityChanged: the node decided anew whether peers can reach it
	// (Outcome: public, private or unknown), and so its DHT mode, relay
	// reservations and relay service; Reason says what the verdict rests on.
	ReachabilityChanged
)

var kindNames = map[Kind]string{
	ConnectionUp:   "connection_up",
	ConnectionDown: "connection_down",
	CallStart:      "call_start",
	CallStop:       "call_stop",
	Publish:        "publish",
	Subscribe:      "subscribe",
	PeerRefused:    "peer_refused",
	NATChanged:     "nat_changed",
	MemberJoined:   "member_joined",
	MemberUpdated:  "member_updated",
	MemberLeft:     "member_left",
	MemberFailed:   "member_failed",
	ActorStarted:   "actor_started",
	ActorStopped:   "actor_stopped",
	ActorCrashed:   "actor_crashed",
	ActorMoved:     "actor_moved",
	ShardsChanged:  "shards_changed",
	CallServed:     "call_served",
	NATProbe:       "nat_probe",
	HolePunch:      "hole_punch",

	ReachabilityChanged: "reachability_changed",
}

// String returns the kind's stable name, such as "connection_up".
func (k Kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// MarshalText encodes the kind as its name.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText decodes a kind from its name.
func (k *Kind) UnmarshalText(b []byte) error {
	for kk, s := range kindNames {
		if s == string(b) {
			*k = kk
			return nil
		}
	}
	return fmt.Errorf("event: unknown kind %q", b)
}

// ParseKind returns the kind with the given name.
func ParseKind(s string) (Kind, error) {
	var k Kind
	err := k.UnmarshalText([]byte(s))
	return k, err
}

// Event is one thing that happened on a node. Which fields are set depends on
// Kind; unset fields are left out of the JSON.
type Event struct {
	Kind Kind      `json:"kind"`
	Time time.Time `json:"time"`

	// Peer is the remote peer ID, DID its did:key, Name its node name.
	Peer string `json:"peer,omitempty"`
	DID  string `json:"did,omitempty"`
	Name string `json:"name,omitempty"`
	// Addr is the remote multiaddr of a connection; Direction is "inbound"
	// or "outbound"; Path is "direct" or "relayed".
	Addr      string `json:"addr,omitempty"`
	Direction string `json:"direction,omitempty"`
	Path      string `json:"path,omitempty"`

	// Procedure and Topic name what a call or a message was about.
	Procedure string `json:"procedure,omitempty"`
	Topic     string `json:"topic,omitempty"`

	// Duration of a finished call; Outcome is "ok" or an error class.
	Duration time.Duration `json:"duration_ns,omitempty"`
	Outcome  string        `json:"outcome,omitempty"`
	// Reason explains a refusal or a disconnection.
	Reason string `json:"reason,omitempty"`

	// Capabilities and Clusters are a member's (member events).
	Capabilities []string `json:"capabilities,omitempty"`
	Clusters     []string `json:"clusters,omitempty"`

	// Capability, ActorKind, Actor (its id) and Incarnation name an actor
	// (actor events); Capability alone a capability's shards.
	Capability  string `json:"capability,omitempty"`
	ActorKind   string `json:"actor_kind,omitempty"`
	Actor       string `json:"actor,omitempty"`
	Incarnation uint64 `json:"incarnation,omitempty"`
	// Shards, Gained and Lost count a node's shards (shards_changed).
	Shards int `json:"shards,omitempty"`
	Gained int `json:"gained,omitempty"`
	Lost   int `json:"lost,omitempty"`
}

// String renders the event as one JSON line, for logs and the CLI.
func (e Event) String() string {
	b, _ := json.Marshal(e)
	return string(b)
}
