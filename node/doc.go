// Package node runs one Macula node: one libp2p host over QUIC, its Ed25519
// identity, its realm, and the wiring of the services on that host (dht,
// rpc, pubsub, nat, the UCAN validator of a secure realm), with the event
// stream that telemetry reads. Its one protocol of its own is the realm
// handshake (with the goodbye of a node that leaves). The signed alias
// records are package alias (their validator and publisher), NAT traversal
// (who dials, birthday probing) the nat/punch service, the revocation
// exchange of a secure realm package revocation; node starts and closes
// them.
//
// # Identity
//
// The node's key lives in its data directory (node.key, PKCS#8 PEM, mode
// 0600) and is created on first start. The same key gives the libp2p peer ID
// and the did:key. The readable alias did:macula:<realm>.<name> is bound to
// the key by a signed record in the realm's DHT (package alias): anyone can
// resolve the alias and check the signature, and a record for the same alias
// signed by another key is refused by every node that already knows the first
// binding (first come, first served in an open realm).
//
// # Realm isolation
//
// Three walls keep realms apart:
//
//  1. Every protocol ID carries the realm (/macula/<realm>/<service>/<version>),
//     so a node of another realm cannot even name our protocols.
//  2. On every new connection both sides run the realm handshake
//     (/macula/<realm>/handshake/1.0.0): one frame each way (see package
//     frame) holding a JSON hello with realm, name and agent (and, in a
//     secure realm, the sender's delegation chains). A connection is part of
//     the realm only after our side's handshake on it succeeded; until then
//     it is in no peer list and raises no event.
//  3. A peer whose handshake fails is disconnected and refused by the
//     connection gater for RefuseFor, so it cannot come back in the meantime.
//
// # Peers, leaving and dying
//
// A peer is a peer of the realm from the first connection whose handshake
// succeeded (event connection_up) until it is gone (event connection_down,
// whose Reason says how: ReasonLeft, ReasonUnresponsive, ReasonDisconnected).
// awaitPeer is the one way code waits for a peer's state (verified, a
// verdict, refused, gone): it sleeps on a channel that every change closes,
// never polls.
//
// A node that closes says goodbye first: a goodbye frame on the handshake
// protocol, on the connection it has to each peer, all at once and for at
// most a second; each peer closes the stream once it has dropped the node.
// Leave says it earlier and waits for the calls the node serves, so that a
// program can stop its API after the peers stopped calling.
// Each peer in use is pinged every second; an idle one is not pinged, but
// at once when it is used again or the membership declares it failed
// (liveness.go, activity.go); one that misses two pings in a row has its
// connections closed. Either way the peer is declared gone
// at once (leave.go): no peer any more, out of the DHT's routing table and
// of every query (dht.Config.Gone), out of rpc's provider lists, pubsub's
// links and the peerstore, and not dialed for a minute unless it connects
// again. A bootstrap peer that left is still redialed by its reconnect loop;
// a peer declared gone for missed pings that the membership still holds
// live 10 s later is dialed once (it was stalled, not dead).
//
// # Goroutines
//
// Node owns: the handshake goroutine of each new connection, the handler of
// every stream of its protocols (registered with handle, which counts each
// and which Close removes first), one liveness watcher per peer, one
// reconnect loop per bootstrap peer, the alias publisher, the membership
// expiry loop of a secure realm, the NAT prober's address watcher, and short
// lived ones (the closer of a peer that said goodbye).
// Close removes the stream handlers, says goodbye, cancels the lifetime
// context, closes the services in reverse order of start (punch,
// revocations, pubsub, rpc, alias publisher, dht, nat, host) and waits for all of them. New uses the same Close to undo a
// start that failed half way.
//
// # Locks
//
// Node.mu guards the peer table, the bootstrap redial channels, the change
// channel and the handler list. It is taken before the locks of the access
// table (verdicts) and of libp2p's swarm (Connectedness), never after, and
// it is never held while calling into a service or something that may wait
// for the swarm's notifications (ClosePeer, Connect, NewStream). gater.mu
// and security.mu are leaves: nothing else is locked while one of them is
// held.
package node
