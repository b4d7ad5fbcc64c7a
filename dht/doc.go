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
// Value records (PutValue/GetValue) are namespaced ("/<namespace>/<key>") and
// each namespace needs a record.Validator passed in Config; the node uses one
// for its signed alias records.
package dht
