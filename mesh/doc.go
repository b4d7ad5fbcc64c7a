// Package mesh draws the picture of a realm that the dashboard shows and
// that `macula-node doctor` checks clocks against: every member of the
// realm, and the links between them, each direct or relayed with its
// round-trip time, as each node sees its own.
//
// A node knows its own links only. So every node serves an internal rpc
// procedure, /macula/mesh/1 (Serve), that answers with its name, its clock
// and its connected peers; Gather asks the realm's members for it (this
// node's peers first, at most Options.Limit of them, all at once, each
// within Options.Timeout) and merges the answers. A member that does not
// answer (an older node, one behind a relay that is down) is drawn without
// its own links; the links others report to it still show. The time each
// member reports, against this node's clock at the middle of the round trip,
// is its clock skew.
//
// Internal procedures are answered for any peer of the realm: in a secure
// realm, only members get connected, and what a member learns here (names,
// peer IDs, paths and round-trip times, never addresses) it could learn
// from the membership and the DHT.
//
// # Wire
//
// The request's payload is empty. The reply is a JSON object (at most
// MaxReply bytes, checked before decoding; unknown fields are ignored):
//
//	{"v":1,"name":"node2","time_ns":1767225600000000000,
//	 "peers":[{"id":"12D3KooW...","name":"node1","path":"direct","rtt_ns":412000}]}
//
// v is the format's version: a reader refuses any other (a later format
// gets a new procedure name, so old and new nodes keep answering each
// other). At most MaxPeers peers; a path other than "direct" or "relayed"
// or a peer ID that does not parse fails the whole reply.
package mesh
