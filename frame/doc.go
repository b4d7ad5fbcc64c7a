// Package frame is Macula's one frame format on the wire. Every message that
// a Macula protocol sends on a stream is a frame:
//
//	+--------+---------+----------------------+------------------+
//	| type   | version | length (uint32, BE)  | payload (length) |
//	| 1 byte | 1 byte  | 4 bytes              | bytes            |
//	+--------+---------+----------------------+------------------+
//
// Type numbers belong to the protocol that uses the frame (the realm
// handshake, rpc, pubsub); each protocol only appends to its list. Version is
// the payload's encoding version, so a protocol can evolve one message type
// at a time. The length is checked against the reader's limit before any
// buffer is allocated, so a peer cannot make us allocate more than the limit
// by lying in a header; a frame over the limit is ErrTooLarge, a stream that
// ends inside a frame is ErrTruncated. A protocol that sees either closes that
// stream, never the process.
package frame
