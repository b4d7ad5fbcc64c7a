// Package alias binds a node's readable alias, did:macula:<realm>.<name>, to
// its key: a Record, signed by that key, stored in the realm's DHT under
// "/alias/<alias>" (Key). Anyone can fetch the record (Resolve) and check
// the signature without trusting who served it.
//
// The DHT checks every record with the namespace's Validator: well formed,
// signed by the key its DID names, of the realm, not expired; in a secure
// realm, carrying the authority's grant of the alias's name to that key.
// Besides, the Validator remembers the first key it saw for each alias
// (trust on first use) and refuses records of the same alias by another key
// until that binding expires; among records it selects the highest sequence
// number of one key, and between keys the earliest claim. An open realm is
// thus first come, first served, and a secure one holds to the authority's
// grants.
//
// A Publisher keeps a node's own record in the DHT: it asks the realm who
// holds the alias before its first claim (another key's record: the alias is
// taken, refused and logged), publishes when the node first has a peer and
// then every TTL/4, and retries with backoff while it cannot.
//
// Record (JSON): alias, did, peer_id, addrs (at most 32), seq, bound (the
// first claim), expires, member (a secure realm's grant, as chain text) and
// sig, an Ed25519 signature over "macula-alias-v1\n" and the other fields,
// one per line, in that order.
package alias
