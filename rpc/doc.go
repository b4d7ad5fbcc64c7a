// Package rpc is Macula's remote procedure call: a node advertises a
// procedure of its realm with a handler, and any node of the realm calls it
// by name, synchronously (Call), asynchronously (CallAsync), with a timeout
// or the context's deadline, and gets the handler's answer or a typed error.
//
// # Finding a callee
//
// Advertise registers the handler locally, tells every connected peer at
// once on its link, and provides the procedure's name in the realm's DHT for
// the others; the record is re-announced while it lives. Advertise waits for
// the DHT announcement until its context ends; one that is not done by then
// (no peer yet, a failure) goes on in the background, retried until it is,
// and Announced says which it is.
//
// A node that advertises procedures keeps a stream to every connected peer
// that speaks the protocol (the same stream its calls to that peer use) and
// sends its whole list on it, again whenever the list changes (ads.go). A
// caller therefore knows the procedures of its connected peers from their
// links: a call to one goes out at once, with no DHT round trip, a
// withdrawal is known at once, and a peer whose stream ends takes its
// procedures with it. The DHT serves the providers that are not connected:
// a caller uses a local handler directly (no network path at all), else the
// providers its links and its last DHT lookup gave, else a DHT lookup; when
// the links gave providers, the lookup that finds the others runs in the
// background. A DHT record names a provider that withdrew until it expires;
// a caller whose link to that provider lists what it advertises leaves it
// out. Among several providers a Policy chooses (round robin by default,
// random, least in flight). A provider that cannot be reached, or that
// answers "not advertised here", leaves the cache at once and is avoided for
// AvoidFor; the call goes to the next provider, because it has not run
// anywhere. A call that was sent and then lost its connection fails with
// ErrDisconnected, unless it is marked Idempotent: then it is retried.
//
// A peer that the node declares gone (PeerGone: it said goodbye, or stopped
// answering) leaves every provider list at once, and a DHT lookup that
// names it again (its records outlive it) does not bring it back until it
// connects again.
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
//	advertised set (4): procedures   (the sender's whole list; replaces what it said before)
//	advertised add (5): procedures   (more of the same list, when it does not fit one frame)
//
// where procedures are a sequence of (length uint8 | procedure). The lists
// go from the stream's opener to its acceptor only, and a stream's first
// list is a set frame; an add frame before it, a name that is not a valid
// procedure of the realm, or more than 65536 procedures close the stream.
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
// goroutine, at most MaxConcurrentPerPeer per caller (across its streams),
// answering "overloaded" past that, so a slow handler never blocks calls to
// other procedures. The request payloads that running handlers hold are
// bounded too, per caller (MaxServingBytesPerPeer, 64 MiB) and in all
// (MaxServingBytes, 256 MiB): a caller that sends calls at the size limit to
// a slow handler is answered "overloaded" past its share.
// Frames out of a stream go through one writer goroutine per stream that
// drains a bounded queue into a buffered writer and flushes when the queue is
// empty: under load many calls share one write. Besides those, the service
// runs one reader per stream, one goroutine that sends the procedure list
// (adsLoop) and one that watches the host for new peers, and short lived
// lookups and link openings; Close waits for all of them. Locks: RPC.mu
// and a stream's mu are never held together; a clientConn's adsMu is taken
// before RPC.mu.
package rpc
