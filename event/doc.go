// Package event is the node's telemetry: a typed Event for each thing worth
// watching (a connection coming up or going down, an RPC call made or
// served, a publish, a NAT probe, a hole punch, a member joining, an actor
// starting) and a Bus that hands them to whoever listens. The events and
// their fields are an API: their names (Kind.String) and the fields each
// kind sets are stable; new kinds are only appended.
//
// # Listening
//
// Two ways, for two needs:
//
//   - Attach: a Handler called synchronously, on the goroutine that
//     emits, for every event of the kinds it asked for; nothing is lost.
//     This is the Go form of the Elixir original's :telemetry.attach, for
//     counters, histograms and exporters (package metrics attaches one).
//     A handler must be quick and must never block; one that panics is
//     detached.
//   - Subscribe: a bounded channel, for consumers that may be slow (a
//     dashboard, a log). When its buffer is full the newest event is
//     dropped for that subscriber and counted (Subscription.Dropped): a
//     slow consumer loses events, never slows the node.
//
// An event nobody listens to costs its emitter one atomic load (Wants):
// emitters check it before building one.
//
//	n, _ := node.New(node.DefaultConfig("io.acme.orders", "worker-1"))
//	a := n.Events().Attach(func(e event.Event) {
//		calls.WithLabelValues(e.Outcome).Inc()
//		latency.Observe(e.Duration.Seconds())
//	}, event.CallStop)
//	defer a.Detach()
//
// # Kinds and their fields
//
// Every event has Kind and Time. Besides:
//
//	connection_up     Peer, DID, Name, Addr, Direction (inbound|outbound), Path (direct|relayed)
//	connection_down   Peer, Addr, Reason (left|unresponsive|disconnected)
//	peer_refused      Peer, Addr, Reason (the handshake's error)
//	call_start        Procedure (a call made from this node)
//	call_stop         Procedure, Peer (the callee; "" when none was reached), Duration, Outcome
//	                  (ok|not_found|timeout|disconnected|remote_error|unauthorized|error)
//	call_served       Procedure, Peer (the caller), Duration, Outcome (see CallServed)
//	publish           Topic: the first publish to a topic, then at most one per topic per
//	                  100 ms (pubsub's Stats count every message)
//	subscribe         Topic (the pattern), Outcome (subscribed|unsubscribed)
//	nat_changed       Outcome (the NAT type), Addr (public address), Reason (probe error)
//	nat_probe         Outcome, Addr, Duration, Reason: every probe
//	hole_punch        Peer, Outcome (direct|failed), Duration, Reason
//	member_joined, member_updated, member_left, member_failed
//	                  Peer, DID, Name, Capabilities, Clusters; Reason for a failure
//	actor_started, actor_stopped, actor_crashed, actor_moved
//	                  Capability, ActorKind, Actor, Incarnation; Reason (stopped, crashed),
//	                  Peer (moved: the new owner)
//	shards_changed    Capability, Shards, Gained, Lost
//
// The package sits at the bottom of the design beside realm: services such as
// rpc and pubsub emit through a *Bus handed to them, without importing node.
package event
