// Package dht is the realm's distributed hash table: go-libp2p-kad-dht with
// the realm in its protocol prefix, so that nodes of different realms speak
// different protocols (/macula/<realm>/kad/1.0.0) and can never share a
// routing table or a record, even when they share bootstrap nodes.
//
// Keys are the names of things in the realm (procedures, topics, anything a
// caller wants to find). A key is turned into a CID by hashing
// "macula:<realm>:<key>" with SHA-256, so a provider record says "this peer
// serves <key>" and Lookup finds every peer that said so. Provided keys are
// re-announced on a timer while they are provided, because the DHT forgets
// provider records after their validity (48 hours in kad-dht).
//
// Provide returns once the key's announcement is done, or says it is
// pending (ErrPending): with no peer to announce it to, after a failure, or
// when the caller stops waiting. A pending announcement goes on in the
// background and is retried (every RetryInterval, doubling up to a minute)
// until it is done; Announced tells which it is.
//
// # Churn
//
// kad-dht keeps a peer in its routing table after the connection closes,
// and a query dials every peer it has not heard from among the closest:
// left alone, one peer that went away would cost every query the swarm's
// dial timeout (5 s on a local network, 15 s beyond), and the query's own
// deadline would cancel the dial before it failed, so the entry was never
// evicted. So every dial a query makes is bounded by DialTimeout (3 s),
// after which kad-dht counts the peer unreachable and drops it from the
// routing table; and the node tells the DHT which peers it knows are gone
// (Config.Gone, ForgetPeer: they said goodbye, or stopped answering its
// pings): they leave the routing table at once, and no query dials them
// even when another peer names them.
//
// Value records (PutValue/GetValue) are namespaced ("/<namespace>/<key>") and
// each namespace needs a record.Validator passed in Config; the node uses one
// for its signed alias records.
package dht
