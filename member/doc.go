// Package member is the membership of a realm: every node learns every
// node's record (its peer ID, name, capabilities such as "game" or "chat",
// the registry clusters it joined, and an incarnation number) and forgets a
// node that left or failed. Actors place shards on the members of a
// capability; the registry replicates within clusters.
//
// # Model
//
// A member's record is its own word: it is made and signed (Ed25519, the
// node's key) by the member, and grows in incarnation with every change and
// every restart (the incarnation starts from the clock in milliseconds, so a
// restarted node is newer than its last run). Nobody can forge or alter
// another's record. Of each member a node holds the newest record it has
// seen and one of four states: alive, suspect (still a member), failed or
// left (tombstones, kept for TombstoneTTL so that stale news cannot bring a
// member back). At one incarnation alive < suspect < failed < left; a later
// incarnation beats them all. A member that hears it is suspected or
// failed refutes it with a new incarnation, as in SWIM.
//
// # Mechanism, and why
//
// News travels over a sparse overlay of long-lived links, not a full mesh.
// The live members sit on Rings (2) rings ordered by hashes of their IDs;
// each member links to its successor and predecessor on every ring, so to
// at most 2*Rings others whatever the size of the realm, and every member is
// watched by up to Rings predecessors. The union of the rings is an
// expander: it stays connected when links fail and news crosses it in
// O(log N) hops. A link is a pair of streams of protocol
// /macula/<realm>/members/1.1.0 (1.0.0 with an older node) over the
// connection the node already has (direct or through a relay; the
// connection manager protects it).
//
//   - Dissemination: a node that accepts news (a record, a suspicion, a
//     failure, a departure) forwards it, unchanged and signed, on every
//     link but the one it came on. News is accepted once, so a flood ends.
//   - Anti-entropy: the first frame on a stream is the writer's view hash
//     (a XOR of per-member digests, kept incrementally); when the hashes
//     differ the two sides exchange digests (ID, incarnation, state per
//     member) and then send each other what the other lacks. A new node
//     thus gets the whole view from the first member it connects to, and
//     two halves of a split realm merge when any link joins them.
//   - Joining: a node links to any connected peer of the realm while it has
//     no link, and to any connected peer it does not hold as a live member
//     (a newcomer, or a member back from the other side of a split). These
//     links go again after LinkLinger once the overlay's own are up.
//   - Failure detection: every link carries a frame at least every
//     ProbeInterval (a heartbeat when there is nothing else). Over a direct
//     QUIC connection (version 1.1.0) only the end with the lower ID sends
//     heartbeats; the other end's sign of life is QUIC's acknowledgement of
//     them (any packet heard from it: internal/heard). A link from whose
//     peer nothing was heard for ProbeTimeout (no frame, no packet over a
//     direct connection), or lost with no connection left, makes the node
//     suspect the peer and say so. A suspicion from Confirmations members
//     (2) declares the member failed at once; a lone one waits
//     SuspicionTimeout for a refutation (times log10 of the live members
//     above 10: the refutation's way back grows with the realm). A link that could never be made
//     (a peer behind a NAT this node cannot cross) is a weak suspicion,
//     raised once until a link is made: it never confirms a failure, so a
//     live member that some of its neighbours cannot reach refutes it once
//     and stays a member, while a gone one fails after SuspicionTimeout.
//     A node that sees signs of its own slowness (its loop ran late, it had
//     to refute a suspicion of itself) tolerates longer silences, up to
//     five times ProbeTimeout, for a while (Lifeguard's local health): on
//     a starved machine it blames itself before its peers. A failure
//     reported of a member this node saw no sign of is a suspicion here,
//     not a failure: that is how two halves of a split merge without one
//     side failing and coming back on the other; it ends by the member's
//     refutation or at its timeout, by this node's own word. A node whose
//     own loop stalled (a loaded machine) judges no link until its readers
//     caught up, unless its health is at its worst, and gives its suspects
//     the time lost, up to five times SuspicionTimeout in all: a node
//     stalled on every tick still concludes.
//   - Leaving: Close sends a signed departure on every link, and waits (up
//     to a second) for each peer to close its link in answer, so that
//     departures are seen at once, not after a timeout.
//   - Healing: besides the node's own redial of its bootstrap peers, every
//     ReconnectInterval a node dials one failed member that it would watch
//     (about Rings nodes try each failed member, not all of them).
//
// Why not the alternatives. DHT records cannot be listed, so every node
// would poll N records, and expiry makes departures slow. A full-mesh
// exchange on every connection costs O(N) links and heartbeats per node.
// hashicorp/memberlist (SWIM) probes random members and gossips to random
// members, which means a direct UDP path to every member: through NATs
// that is a connection (often relayed) to everyone over time, and memberlist
// has no idea of relays or of a realm's grants. Its rules (incarnations,
// suspicion, refutation, push-pull) are what this package keeps, over
// libp2p links that already cross NATs and are already authenticated.
//
// # Costs and scale
//
// Idle, a node keeps at most 2*Rings links and sends at most one heartbeat
// per link per ProbeInterval (over direct connections one end of each link
// only, so half that on average): with the defaults at most 2 frames a
// second (1 on average), whatever the size of the realm, and its timers are
// one ticker (ProbeInterval/2) that walks the links and the suspects, never
// the whole view. A change
// costs one frame per link, so about 2*Rings*N frames realm-wide and 2*Rings
// per node. Memory is the view: about 300 bytes per member (10,000 members:
// about 3 MB). At 10,000 nodes: 4 links per node, news in about log(N)/log(3)
// ~ 9 hops, a join costs the newcomer one full view (about 3 MB from its
// first link) and each of its new neighbours a digest exchange (about 50
// bytes per member) if their views differ at that moment; a failure reaches
// everyone in ProbeTimeout plus the flood. Limits: MaxMembers (16384 by
// default) bounds the view, MaxLinks the links, LinkQueue each link's
// queue; the whole view is never queued (a sync queues IDs and reads the
// records as it writes).
//
// # Secure realms
//
// A member may claim only the capabilities it may serve: ucan.Serve on
// ucan.ServeResource(realm, capability). New and SetCapabilities refuse
// others with ErrUnauthorized; a claimed capability whose grant expires or
// is revoked is dropped from the record (checked every 10 s). A record
// received from a member whose verdict this node holds (it is connected
// to it, through the realm handshake) is checked against that verdict, and
// dropped and counted (Stats.DroppedUnauthorized) if it claims more. A
// record of a member this node is not connected to stands on the word of
// the member that passed it on, which checked it or got it from one that
// did: only a member colluding with the claimant can spread a claim past
// the claimant's own neighbours, and every member connected to it drops it.
// In a secure realm the node only opens and accepts these streams with
// verified members (the host it gives New waits for the verdict).
//
// # Wire
//
// Versions 1.0.0 and 1.1.0 of the protocol carry the same frames; 1.1.0 is
// the writer's consent that its reader stays quiet (above). Every frame is
// a frame of package frame (type, version 1, uint32 length, body); bodies
// use uvarints (minimal) and one-byte lengths. Frame types, append only:
//
//	summary (1): view hash [16] | members uvarint
//	digest  (2): last uint8 | n uvarint | n × (id bytes | incarnation uvarint | state uint8)
//	record  (3): id bytes | incarnation uvarint | boot uvarint (unix ms)
//	             | name short | capabilities names | clusters names
//	             | addrs uint8 × (bytes) | signature short
//	alert   (4): kind uint8 (1 suspect, 2 failed, 3 left, 4 unreachable) | subject bytes
//	             | incarnation uvarint | author bytes | signature short
//	ping    (5): empty
//
// where bytes is a uvarint length and the bytes, short a uint8 length and
// the bytes, names a uint8 count of shorts, sorted and unique. Signatures
// cover a domain string, the realm and the body before the signature, so a
// record of one realm is worthless in another. A record is at most 8 KiB
// (32 capabilities and 32 clusters of up to 63 bytes, 8 addresses), a frame
// at most 64 KiB; a reader refuses anything longer before reading it, and
// closes the stream on any bad frame: an unknown type or version, a first
// frame that is not a summary, a malformed body, a bad signature.
//
// # Watchers and events
//
// Watch delivers Joined, Updated, Left and Failed changes; a slow watcher's
// changes are folded per member (see Watch), so it never holds up the
// membership and never misses an outcome. The node's event bus gets
// member_joined, member_updated, member_left and member_failed.
//
// # Concurrency
//
// Every method is safe for concurrent use. Lock order: Members.mu, then an
// outStream's mu or a watcher's mu (each taken alone). Goroutines: a writer
// per open stream, a reader per accepted stream, one per link being
// opened, one per Watch, the tick loop and the host event loop; Close
// waits for all of them.
package member
