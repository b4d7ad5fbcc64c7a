// Package realm defines the names and identities of the Macula mesh: realm
// names, node names, procedure and topic names, subscription patterns, and the
// DIDs that name keys and nodes. It is pure: no network, no state, and nothing
// from the rest of the module, so every other package can depend on it.
//
// # Names
//
// Names are dotted and DNS-like. A realm is a DNS name written the DNS way,
// lowercase, and so is a node name (half of an alias, an identity: two
// spellings must never name two nodes). Below the realm, the segments of
// procedures, topics and patterns are case-sensitive, as subjects are in
// NATS, MQTT and WAMP: "io.acme.devices.AB12.telemetry" and a peer ID as a
// segment are names, and "AB12" and "ab12" are two different names (no case
// folding anywhere: not in matching, UCAN grants or DHT keys). Every name is
// safe in log fields as it is. The grammar, in ABNF:
//
//	lsegment  = ( lower / digit ) *62( lower / digit / "_" / "-" )
//	segment   = ( ALPHA / digit ) *62( ALPHA / digit / "_" / "-" )
//	realm     = lsegment 1*( "." lsegment )     ; reverse DNS, e.g. io.acme.orders
//	node      = lsegment                        ; e.g. worker-1
//	procedure = realm 1*( "." segment )         ; e.g. io.acme.orders.place
//	topic     = realm 1*( "." segment )         ; e.g. io.acme.devices.AB12.telemetry
//	pattern   = ( elem *( "." elem ) [ "." ">" ] ) / ">"
//	elem      = segment / "*"
//
// A whole dotted name is at most [MaxNameLen] bytes and a segment at most
// [MaxSegmentLen], the same limits as DNS. A procedure or topic lives strictly
// under its realm: the realm's segments, then at least one more.
//
// In a pattern, "*" matches exactly one segment and a final ">" matches one or
// more segments, as in NATS: "io.acme.>" matches "io.acme.orders" but not
// "io.acme". A wildcard is always a whole segment; "a*" is not a pattern.
// [ValidatePattern] accepts a pattern only if it can match some topic strictly
// under the realm. A pattern with wildcards in its leading segments, such as
// "*.acme.>", can also match topics of other realms, so the delivering side
// still only offers it topics of its own realm.
//
// # Identities
//
// A key is named by its did:key (W3C did:key method, Ed25519 only):
//
//	did:key:z<base58btc(0xed 0x01 || 32-byte public key)>
//
// where 0xed 0x01 is the varint of the multicodec ed25519-pub (0xed). A
// node or service also has a human-readable alias inside its realm:
//
//	did:macula:<realm>.<segment>              ; e.g. did:macula:io.acme.orders.worker-1
//
// The last segment is the name and everything before it the realm, so an
// alias has at least three segments.
//
// Every name validation error wraps [ErrInvalid], and every DID parsing error
// wraps [ErrInvalidDID]; messages name what is wrong and quote the value.
package realm
