// Package rpc is Macula's remote procedure call: a node advertises a
// procedure of its realm with a handler, and any node of the realm calls it
// by name, synchronously (Call), asynchronously (CallAsync), with a timeout
// or the context's deadline, and gets the handler's answer or a typed error.
//
// # Finding a callee
//
// Advertise registers the handler locally and provides the procedure's name
// in the realm's DHT; the record is re-announced while it lives. A caller
// uses a local handler directly (no network path at all), else the providers
// in its cache, else a DHT lookup. Among several providers a Policy chooses
// (round robin by default, random, least in flight). A provider that cannot be
// reached, or that answers "not advertised here", leaves the cache at once and
// is avoided for AvoidFor; the call goes to the next provider, because it has
// not run anywhere. A call that was sent and then lost its connection fails
// with ErrDisconnected, unless it is marked Idempotent: then it is retried.
//
// # Authorization
//
// In a secure realm Config.Access holds the UCAN verdicts the node keeps
// for itself and for each connected peer (package access); nil is an open
// realm, where nothing is checked. The rules, all with ucan.Check:
//
//   - Advertise needs the node's own verdict to grant ucan.Advertise on the
//     procedure; otherwise it fails with ErrUnauthorized and advertises
//     nothing.
//   - Call and CallAsync need the node's own ucan.Call on the procedure;
//     otherwise they fail with ErrUnauthorized before any traffic.
//   - A caller only sends to providers whose verdict grants ucan.Advertise
//     on the procedure: a peer without that right cannot attract calls. A
//     provider reached on a new connection has no verdict until the node's
//     realm handshake ends, so the caller waits for it, at most until the
//     connection is DialTimeout old. When every provider is refused the call
//     fails with ErrNotFound ("no authorized provider"): nothing was sent,
//     and the caller's own right was not in question.
//   - A callee looks the caller's verdict up on every request (the node
//     replaces it when the peer presents new chains, drops it when the peer
//     leaves, and a revocation applies at once) and answers a request
//     without ucan.Call on the procedure with code CodeUnauthorized (the
//     caller gets a *RemoteError matching ErrUnauthorized) without running
//     the handler; Stats.Refused counts these.
//   - The handler gets the checked verdict as Request.Verdict: Grant() tells
//     the caller's DID and capabilities, and ucan.Check tests one more right.
//
// # Wire
//
// Protocol /macula/<realm>/rpc/1.0.0. A caller keeps one long-lived stream per
// callee and multiplexes every call on it; the callee answers on the same
// stream, in any order. Every message is a frame (package frame): type,
// version 1, uint32 length, then the body:
//
//	request  (1): id uint64 | timeout int64 (ns left when sent, 0 none) | flags uint8 | codec uint8 |
//	              procedure length uint8 | procedure | payload
//	response (2): id uint64 | status uint8 (0 ok, 1 error) | codec uint8 | then
//	              ok:    payload
//	              error: code length uint8 | code | message length uint16 | message | data
//	cancel   (3): id uint64
//
// All integers are big endian. Frame types are append-only. A frame over
// MaxPayload plus the header room is refused before it is read and closes the
// stream (its calls fail with ErrDisconnected); a malformed body does the
// same. Neither touches other streams.
//
// # Limits and concurrency
//
// At most MaxInFlightPerPeer calls wait on one callee; a caller over it waits
// for a slot within its deadline. A callee runs every request in its own
// goroutine, at most MaxConcurrentPerPeer per caller, answering "overloaded"
// past that, so a slow handler never blocks calls to other procedures.
// Frames out of a stream go through one writer goroutine per stream that
// drains a bounded queue into a buffered writer and flushes when the queue is
// empty: under load many calls share one write.
package rpc
