package actors

import (
	"context"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Actor is the behaviour and state of one actor. The system calls its
// methods one at a time, never concurrently, in the order messages arrived;
// an actor therefore needs no locks for its own state. A method must not
// call its own actor (it would wait for itself until the deadline).
type Actor interface {
	// HandleCall handles a call and returns the reply. ctx carries the
	// caller's deadline. An error reaches the caller as *ActorError (return
	// one to choose its Code). A panic is recovered: the caller gets
	// ErrCrashed and the actor starts fresh on the next message.
	HandleCall(ctx context.Context, msg []byte) ([]byte, error)
	// HandleCast handles a cast; nobody waits for it. ctx ends when the
	// system closes, or after Config.CastTimeout.
	HandleCast(ctx context.Context, msg []byte)
}

// Initializer is an optional interface of an Actor: Init runs once, when
// the actor starts, before its first message, with the init argument of
// that message (nil if it had none). Later messages' init arguments are
// ignored. An error (or a panic) fails that message with ErrInit; the next
// message tries again.
type Initializer interface {
	Init(ctx context.Context, arg []byte) error
}

// Stopper is an optional interface of an Actor: Stop runs when the actor
// stops, with the reason: passivated after Config.IdleTimeout, moved to
// another node, the system closing, or after a crash (its state may then be
// inconsistent). ctx bounds it by Config.StopTimeout: return by then.
// Passivation runs the Stop hooks of idle actors one after another on one
// goroutine, so a Stop that ignores ctx delays the passivation of others.
// It is not called when the process dies.
type Stopper interface {
	Stop(ctx context.Context, reason StopReason)
}

// Snapshotter is an optional interface of an Actor whose state survives a
// move: when its shard moves to another node (a node joins, or this one
// leaves cleanly), Snapshot runs after the actor's last message here, and
// the new owner makes a new actor of the kind and calls Restore with the
// snapshot instead of Init. An actor without it starts fresh on the new
// owner. Snapshots are limited to the rpc payload limit (1 MiB by default).
type Snapshotter interface {
	Snapshot(ctx context.Context) ([]byte, error)
	Restore(ctx context.Context, snapshot []byte) error
}

// Factory makes a new actor of a kind for an id. It runs on the owner node
// when the actor starts; it should only allocate (Init does the work that
// may fail).
type Factory func(id string) Actor

// StopReason says why an actor stopped.
type StopReason string

// The stop reasons.
const (
	Passivated StopReason = "passivated" // idle for Config.IdleTimeout
	Moved      StopReason = "moved"      // its shard moved to another node
	Closed     StopReason = "closed"     // the system closed
	Crashed    StopReason = "crashed"    // it panicked
)

// Request addresses one message to one actor.
type Request struct {
	// Capability is the capability whose nodes host the actor ("game");
	// Kind the actor kind registered on them ("player"); ID the actor's id
	// within the kind ("player_123").
	Capability string
	Kind       string
	ID         string
	// Payload is the message.
	Payload []byte
	// InitArg is passed to Init when this message starts the actor, and
	// ignored otherwise.
	InitArg []byte
}

// Ref is the reference of one incarnation of an actor: the node it runs on,
// its address and its incarnation, a number that is new every time the actor
// starts (first message, restart after a crash or after passivation, arrival
// on a new node). Two calls answered by the same incarnation give equal Refs.
type Ref struct {
	Node        peer.ID `json:"node"`
	Capability  string  `json:"capability"`
	Kind        string  `json:"kind"`
	ID          string  `json:"id"`
	Incarnation uint64  `json:"incarnation"`
}

func (r Ref) String() string {
	return fmt.Sprintf("%s/%s/%s@%s#%d", r.Capability, r.Kind, r.ID, r.Node, r.Incarnation)
}
