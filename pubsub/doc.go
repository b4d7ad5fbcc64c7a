// Package pubsub is Macula's publish/subscribe: a node publishes a payload
// to a concrete topic of its realm (io.acme.orders.placed), and every
// subscription in the realm whose pattern matches the topic gets it. A
// pattern is an exact topic, or uses "*" for exactly one segment and a
// final ">" for one or more (io.acme.orders.*, io.acme.>); the matching
// rules are those of realm.Match.
//
// Messages go straight from the publishing node to the nodes that want
// them, on one long-lived stream per pair of nodes: nothing is flooded, and
// a node with no matching subscription receives no message at all.
// Delivery is at most once, and in order per publisher and subscriber.
// Where a queue is full, a publisher sheds by default (the message is
// dropped there and counted); one that asks (WaitForRoom) is slowed down
// instead, see "Flow control".
//
// # Interest
//
// A subscription becomes interest, announced two ways.
//
// Exact patterns, to linked peers. Each node keeps at most one stream of
// its own to each peer (its link), on which it sends everything that peer
// should get from it. The first frame on a link is the sender's whole
// interest set (its distinct patterns, and the largest payload it accepts);
// later changes follow as add and remove frames. A node that accepts a
// peer's stream opens its own link back if it has none, so both sides learn
// each other's patterns. A publisher matches each topic against these sets
// and sends a message only to the links whose peer announced a matching
// pattern. A node with subscriptions links to every connected peer that
// speaks the protocol (when identify reports it, and when it makes its first
// subscription), so a subscriber connected to the publisher is routed to
// within a round trip.
//
// Keys, in the realm's DHT, so that a publisher finds subscriber nodes it is
// not linked to. A subscriber provides, for each distinct pattern, the key
// "pubsub:" + the pattern's literal prefix: its segments before the first
// wildcard, where wildcards among the realm's own segments read as those
// segments (they can match nothing else in the realm), so a prefix holds at
// least the realm:
//
//	io.acme.orders.placed   -> pubsub:io.acme.orders.placed
//	io.acme.orders.*        -> pubsub:io.acme.orders
//	io.acme.orders.eu.>     -> pubsub:io.acme.orders.eu
//	io.acme.>               -> pubsub:io.acme.orders     (realm io.acme.orders)
//
// A publisher of a topic n segments below its realm looks up n+1 keys: the
// topic's prefixes from the realm to the whole topic (io.acme.orders,
// io.acme.orders.eu, io.acme.orders.eu.placed). Every pattern that matches
// the topic has its literal prefix among them, so these lookups find every
// possible subscriber node. The publisher dials the providers it has no link
// to and links to them; their exact patterns then arrive on their links,
// and only matching ones get messages. Keys are shared between topics and
// looked up once each; a topic's keys are looked up when it is first
// published and then every InterestRefresh while it is being published (a
// topic unpublished for 15 refreshes is forgotten). A peer that cannot be
// reached is retried after InterestRefresh, doubling up to 30 s. DHT records
// outlive an unsubscription (until they expire); the exact sets on the links
// are what routes, so a stale record costs a link, never a message.
//
// A late subscriber therefore starts receiving within about a round trip if
// it is connected to the publisher (measured on loopback: 5 to 11 ms), and
// otherwise within InterestRefresh plus a lookup and a dial (measured with
// the default 2 s: 1.96 s). Messages published before that are not
// delivered to it.
//
// # Wire
//
// Protocol /macula/<realm>/pubsub/1.0.0. Every frame is a frame of package
// frame (type, version 1, uint32 length, body); integers in bodies are big
// endian, or varints (encoding/binary: uvarint, and zigzag varint for
// signed values) which must be minimal. Frame types, append only:
//
//	interest set    (1): max payload uint32 | patterns
//	interest add    (2): patterns
//	interest remove (3): patterns
//	message         (4): topic id uvarint | seq delta varint | time delta varint (ns) | payload
//	topic           (5): topic (the stream's next topic id: 1, 2, ...)
//	topic reset     (6): empty (forget the stream's topic ids)
//
// where patterns are a sequence of (length uint8 | pattern). The interest
// set must be the first frame of a stream; a set bigger than 16 KiB of
// patterns is sent as a set frame and add frames. A message's topic is sent
// once per stream in a topic frame and then referred to by its id; a
// sender resets its table when it reaches 4096 topics. Seq and time are
// differences from the previous message on the stream (from 0 for the
// first). A 128-byte message on a known topic is about 138 bytes on the
// wire.
//
// A reader refuses a frame longer than MaxMessageSize plus the message
// overhead (at least 64 KiB) before reading it, and closes the stream
// (with a debug log line) on any bad frame: an unknown type or version, a
// first frame that is not the interest set, a pattern or topic that is not
// valid in the realm, a topic id not defined, more than MaxPatterns
// patterns, a payload over MaxMessageSize, a malformed varint or length.
// Nothing else is affected.
//
// # Queues
//
// Every queue is bounded, and by default nothing waits on a slow party
// (for the opt-in exceptions, see "Flow control").
//
// Send queue, one per link (PeerQueue messages, PeerQueueBytes bytes):
// Publish appends the message's frame to the link's buffer and returns; the
// link's writer goroutine swaps the buffer out and writes it to the stream
// in one Write, so a batch is everything queued during the previous write
// (a bufio.Writer flushed whenever the queue runs empty, without a channel
// per message). When the queue is full the newest message is dropped and
// counted (Stats.DroppedSend): Publish never blocks (unless it asked to
// wait), and a slow or stuck subscriber node never delays the others.
//
// Subscription queue, one per subscription (SubscriptionBuffer messages,
// including the batch its handler is working on; for SubscribeChan, the
// channel): the stream reader appends and moves on; when it is full the
// newest message is dropped and counted (Subscription.Dropped,
// Stats.DroppedLocal). A stuck handler loses its own messages only (a
// Backpressure subscription holds up its publishers' streams instead).
//
// A producer that finds a queue more than half full (Publish for a send
// queue, a stream reader for a subscription queue) calls runtime.Gosched
// once: the Go scheduler tends to queue a woken consumer behind its
// producer on the same processor, and on a busy machine the queue would
// overflow before the consumer ran. Yielding does not wait for anything.
//
// # Flow control
//
// A publisher that would rather be slowed down than lose messages
// publishes with WaitForRoom: Publish then waits, until its ctx ends, for
// room in each full queue the message goes to (the send queue of each
// subscriber node, the queue of each local subscription), instead of
// dropping the message there. If ctx ends first, the message is queued
// wherever there is room and dropped (and counted, as when shedding) for
// the rest, and Publish returns a *NoRoomError (matching ErrNoRoom and
// ctx's error) with both numbers: publishing it again would deliver it
// twice to the first ones. The default is to shed.
//
// Waiting on the send queue alone does not reach a subscriber on another
// node: its node reads the stream at full speed and drops at the
// subscription's full queue. A subscription made with Backpressure makes
// the reader wait for room instead. The reader then stops reading the
// stream, the stream's QUIC flow-control window (libp2p's: up to 10 MiB)
// fills, the publisher's writer blocks in Write, the send queue fills,
// and a waiting Publish waits: a waiting publisher and Backpressure
// subscriptions lose no message to a full queue, end to end. Nothing
// waits on a stream or a link that fails: delivery stays at most once (a
// closed link or stream loses what it holds, counted in DroppedSend), and
// a message over the subscriber node's size limit is dropped as before.
//
// The cost is stated and bounded:
//
//   - A full Backpressure subscription holds up the whole stream from that
//     publisher node: its messages on every topic, for every subscription
//     of the node, and its interest changes wait too. Other publisher
//     nodes, and the publisher's other subscriber nodes, are not affected.
//   - A shedding Publish never waits: where a Backpressure subscriber
//     holds up the stream, the publisher's send queue to that node is full
//     and a shedding Publish drops its message there (DroppedSend at the
//     publisher instead of DroppedLocal at the subscriber). A local
//     shedding Publish drops at the subscription's full queue as before.
//   - A waiting Publish waits for its slowest destination, one after the
//     other, and waits for local subscriptions whether or not they were
//     made with Backpressure (the wait costs nobody but the publisher).
//   - Every queue keeps its bound: what waits is the producer (a
//     publisher's goroutine, a stream reader), never a growing buffer, and
//     no goroutine is started per message. A reader's wait ends with its
//     stream and with Close; a publisher's with its ctx, the link's close,
//     Unsubscribe and Close.
//   - A handler that publishes with WaitForRoom to a topic that comes back
//     to its own subscription, directly or through other nodes'
//     Backpressure subscriptions, can wait for itself: give such a Publish
//     a deadline.
//
// # Authorization
//
// In a secure realm, Config.Access holds the UCAN verdicts (package ucan)
// of this node and of its connected peers, which the node keeps in an
// access.Table. Four checks apply:
//
//   - Publish to topic T fails with ErrUnauthorized unless the node's own
//     verdict grants ucan.Publish on T; nothing is sent.
//   - Subscribe to pattern P fails with ErrUnauthorized unless the node's
//     own verdict grants ucan.Subscribe on every topic P can match
//     (ucan.CheckPattern: a grant of io.acme.orders.* allows that pattern and
//     io.acme.orders.placed, not io.acme.>); no interest is announced.
//   - A message on T from peer p is dropped on arrival, and counted in
//     Stats.DroppedUnauthorized, unless p's verdict grants ucan.Publish on T.
//   - A message on T is sent to peer p only if p's verdict grants
//     ucan.Subscribe on T; else it is counted in Stats.WithheldUnauthorized.
//     A peer's announced interest is recorded as announced: the check is
//     made per message, since verdicts change while interest is announced
//     once.
//
// The verdicts are looked up for every message, not cached per stream:
// the node replaces a peer's verdict when it presents new chains and drops
// it when the peer leaves, and ucan.Check sees expiry and revocation at
// once. A check is a read-locked map lookup (for a peer) and ucan.Check: a
// clock read and the match of the topic against the granted pattern (the
// verdict remembers the last names it granted), about 70 ns on a 2-core test
// VM (BenchmarkReceiveCheck). A Publish makes one for the node and one per
// subscriber node it sends to: to one subscriber node it costs about 430 ns
// against 300 ns in an open realm (BenchmarkPublishSecure); a
// subscriber node makes one per message it receives. Refusals are
// logged at Debug, at most once per 10 s per stream or link. A nil Access,
// or one that access.IsOpen reports open at New, is an open realm: no check
// runs. The node's own subscriptions are checked again, against the node's
// own verdict, for every message they would get.
//
// # Events and counters
//
// The bus gets a subscribe event (Outcome "subscribed" or "unsubscribed",
// Topic the pattern) for each Subscribe and Unsubscribe, and a publish
// event for the first Publish to a topic and then at most one per topic per
// 100 ms: emitting one per message would cost Publish about 60% of its
// speed. Stats counts every message exactly.
//
// # Concurrency
//
// Every method is safe for concurrent use. Lock order: PubSub.mu, then any
// one of routesMu, a link's mu or a subscription's mu; nothing waits for
// room while holding a lock. Goroutines: one
// writer per link, one reader per inbound stream, one per handler
// subscription, a peer watcher, a lookup loop, a provide loop, and short
// lived dials and lookups; Close waits for all of them.
package pubsub
