// Package actors runs virtual actors on the nodes of a realm: an actor is
// addressed by capability, kind and id; it lives on the node that owns its
// shard (package ring) among the nodes that serve the capability, starts on
// its first message, handles one message at a time, keeps its state between
// messages, and restarts fresh after a panic.
//
// # Model
//
// A kind is registered by name for a capability with a Factory
// (System.Register); the Actor it makes handles calls (a reply) and casts
// (none), and may implement Initializer (Init with the init argument of its
// first message), Stopper (Stop with a reason) and Snapshotter (its state
// survives a move). System.Call and System.Cast take a Request{Capability,
// Kind, ID, Payload, InitArg}; Call returns the Ref of the incarnation that
// answered: node, capability, kind, id and incarnation, a number that is new
// each time the actor starts.
//
// # Guarantees and their bounds
//
//   - One message at a time per actor, in the order the actor's mailbox
//     received them; messages to different actors never wait for each other
//     (an idle actor's call runs in the caller's goroutine; a busy actor's
//     mailbox is drained by one worker). Workers are bounded (8192): past
//     that many actors busy with queued messages at once, the next ones wait
//     for a worker.
//   - Mailboxes are bounded (Config.MailboxSize): a message to a full one
//     fails at once with ErrMailboxFull.
//   - An idle actor holds no goroutine and about 300 bytes plus its own
//     state; after Config.IdleTimeout without messages it is passivated
//     (Stop with Passivated) and its next message starts it again.
//   - A panic fails that message with ErrCrashed, calls Stop with Crashed,
//     and the next message starts the actor fresh with a new incarnation;
//     Config.MaxRestarts crashes within Config.RestartWindow fail its
//     messages with ErrRestartLimit until the window has passed.
//   - When shards move (a node joins; a node leaves cleanly, Close), the old
//     owner finishes the messages it accepted, snapshots the actors that
//     implement Snapshotter, and hands them to the new owner, which holds the
//     shard's messages until then (Config.HandoffTimeout at most). Messages
//     sent meanwhile reach the new owner once, in order per sender, or fail
//     with a typed error (ErrUnavailable, ErrTimeout) within their deadline.
//   - While the nodes' membership views agree, an actor is active on one
//     node at most. While they disagree (a join not yet learnt everywhere, a
//     crash not yet detected), two nodes may each start it: the overlap is
//     bounded by the time the views take to agree (about 2 s after a join on
//     loopback, the liveness timeout after a crash) and HandoffTimeout.
//     ActivationLog and CheckSingleActivation measure it.
//   - A node that crashes loses its actors' state; their next messages start
//     them fresh on the new owner once the crash is detected. A message sent
//     to the crashed node fails with ErrLost (it may have run) or is retried
//     on the new owner when it was certainly not delivered (ErrUnavailable
//     if the deadline passes first).
//
// # Network
//
// Messages between nodes use rpc's internal procedures on the long-lived
// stream of each pair of nodes (rpc.CallPeer); the wire format is in
// wire.go. In a secure realm a caller needs ucan.Actor on ActorResource
// (checked by the caller and by the owner), and a node needs ucan.Serve on
// the capability to own shards of it (membership) and to hand actors over.
//
// # Concurrency
//
// Lock order: capState.locks[shard] (admission), then capState.mu or
// shardTable.mu, then actor.mu. A goroutine that sets an actor's state to
// running owns the actor's implementation until it hands it on.
package actors
