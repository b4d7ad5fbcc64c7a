// Package node runs one Macula node: one libp2p host over QUIC, its Ed25519
// identity, its realm, the realm's DHT, and the event stream that telemetry
// reads. Later services (rpc, pubsub, nat, ucan) are wired here.
//
// # Identity
//
// The node's key lives in its data directory (node.key, PKCS#8 PEM, mode
// 0600) and is created on first start. The same key gives the libp2p peer ID
// and the did:key. The readable alias did:macula:<realm>.<name> is bound to
// the key by a signed record in the realm's DHT (see alias.go): anyone can
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
//     frame) holding a JSON hello with realm, name and agent. A connection
//     is part of the realm only after our side's handshake on it succeeded;
//     until then it is in no peer list and raises no event.
//  3. A peer whose handshake fails is disconnected and refused by the
//     connection gater for RefuseFor, so it cannot come back in the meantime.
//
// # Goroutines
//
// Node owns: the handshake goroutine of each new connection, one reconnect
// loop per bootstrap peer, the alias publisher, and the DHT's own. Close
// cancels the lifetime context, closes the DHT and the host, and waits for all
// of them.
package node
