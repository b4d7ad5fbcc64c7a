// Package ucan authorizes what principals do in a secure Macula realm, with
// UCAN 1.0 delegations (github.com/ucan-wg/go-ucan v1.1.0 for encoding,
// signatures and policies) and a validator of its own.
//
// # Model
//
// A secure realm names an authority: an Ed25519 key (CreateKey, LoadKey;
// kept like a node key, PKCS#8 PEM, mode 0600) known by its did:key. The
// authority is the subject of every delegation in the realm. It grants
// capabilities with root delegations (Issue without a proof); a holder may
// sub-delegate what it holds, never more (Issue with the chain as proof).
// A chain is a list of delegations, root first, each to the issuer of the
// next; the last one names the holder.
//
// A capability is a command on the names a pattern matches:
//
//	/macula            every command below, and membership
//	/macula/call       call a procedure
//	/macula/publish    publish to a topic
//	/macula/subscribe  subscribe to topics (CheckPattern for patterns)
//	/macula/advertise  advertise a procedure
//	/macula/member     membership of the realm (see below)
//	/macula/register   register a registry name (resource: the key as a realm name)
//	/macula/join       join a registry group (resource as for register)
//	/macula/dispatch   send to the members of a registry key (resource as for register)
//
// A command covers itself and the commands below it. The seed model's
// {with: "io.acme.orders.*", can: "invoke"} is /macula/call on
// io.acme.orders.*, can: "read" is /macula/subscribe; "write" is publish,
// "provide" is advertise, "*" is /macula (ParseCommand).
//
// The resource is a policy statement of the delegation:
//
//	["like", ".resource", "io.acme.orders.*"]
//
// read by this package with the segment-aware matcher of pub/sub ("*" one
// segment, a final ">" one or more, realm.Match), not the spec's glob, for
// which "*" also spans dots: io.acme.orders.* matches io.acme.orders.placed,
// not io.acme.orders.placed.eu (a generic UCAN validator such as iso-ucan
// would accept the latter). ["==", ".resource", NAME] pins one name; an
// empty policy is every name of the realm. Patterns along a chain intersect
// (segment patterns are closed under intersection), and every capability is
// narrowed to "<realm>.>". Any other statement constrains invocation
// arguments: go-ucan evaluates it against an invocation's arguments, and a
// chain carrying one cannot be used without an invocation (ErrPolicy).
//
// Membership is a delegation of /macula/member (or /macula) from the
// authority directly to a node, optionally with ["==", ".name", NAME]: the
// alias did:macula:<realm>.<NAME> then belongs to that node's key
// (CheckMember). A membership reached through a sub-delegation does not
// count.
//
// # Using it
//
// On a connection the peer is already authenticated by QUIC. It presents its
// chains once (MarshalChains on the wire); the node calls Validate with the
// peer's did:key and keeps the *Verdict for the connection; each call,
// publication, subscription and advertisement is then Check(verdict,
// command, name), which costs a few string comparisons, a clock read and an
// atomic load. Handlers get Verdict.Grant(): the caller's DID, membership and
// capabilities; and may Check one more. An open realm (no authority) uses
// OpenVerdict. A program reaching a node over HTTP presents an invocation
// (Invoke) and its proofs; ValidateInvocation checks and consumes it.
//
// # Rules
//
// Validate and ValidateInvocation refuse, each with a sentinel error that
// wraps ErrUnauthorized (and a *TokenError saying which token):
//
//   - ErrMalformed: not strict DAG-CBOR; over MaxTokenSize; not an envelope
//     [64-byte signature, {h, tag: payload}]; a varsig header other than
//     Ed25519 over DAG-CBOR; a principal that is not an Ed25519 did:key; an
//     integer outside the 53-bit range; anything go-ucan refuses.
//   - ErrUnsupportedVersion: the final @1.0.0 tags (below).
//   - ErrBadSignature: a signature that does not verify with the issuer's
//     key (a token signed by someone else than its iss).
//   - ErrNotRooted: the root is not a delegation by the authority about
//     itself (iss = sub = authority).
//   - ErrBrokenChain: an audience that is not the next issuer, a subject
//     other than the authority (a powerline delegation, without subject,
//     may extend a chain), an invocation's proofs missing or not the ones
//     its prf cites, in order.
//   - ErrWrongAudience: the chain's last audience is not the presenting
//     peer; an invocation's executor (aud, else sub) is not Config.Self.
//   - ErrCommandWidened: a delegation's command outside its proof's.
//   - ErrExpired, ErrNotYetValid: exp and nbf of every token, with
//     Config.Leeway (60 s) either way, on the injected clock.
//   - ErrRevoked: a delegation the authority revoked.
//   - ErrChainTooLong: more than Config.MaxChain (8) delegations.
//   - ErrPolicy: a pattern outside the realm, conflicting statements,
//     arguments that do not satisfy the policy, an invocation without
//     expiry or valid for longer than Config.MaxInvocationTTL (5 min).
//   - ErrReplay: an invocation accepted before.
//
// Check refuses with ErrCommand, ErrResource, ErrExpired, ErrNotYetValid or
// ErrRevoked. Nothing panics: go-ucan v1.1.0 does on some tokens anyone can
// sign (an integer above 2^63-1 in a policy or in arguments reaches must.Int;
// Token.String and invocation.WithAudience compare DIDs with ==, which panics
// for two equal did:keys; ExecutionAllowed dereferences the nil subject of a
// powerline delegation). The checks above keep such input away from go-ucan,
// this package never calls String, WithAudience with an equal DID or
// ExecutionAllowed, and every entry point also recovers (ErrInternal), which
// the fuzz target treats as a failure.
//
// # Content IDs, caching and revocation
//
// A token is named by its content ID: the CID (dag-cbor, sha2-256) of its
// signature payload, {h, tag: payload} in canonical DAG-CBOR, which is
// exactly what its issuer signed. The CID of the envelope bytes is not used
// for that: the decoder accepts the same token with its map keys in another
// order (or a float in a shorter width), go-ucan re-encodes the payload
// canonically before checking the signature, so such a copy still verifies
// yet has another envelope CID; a revocation or a cache keyed by envelope
// CID would miss it. The content ID cannot differ between two copies that
// verify, and only the issuer can make a new one.
//
// What is kept, and for how long:
//
//   - Decoded tokens (signature checked): TokenCacheSize (4096), least
//     recently used first out, keyed by a hash of their bytes.
//   - Verdicts: VerdictCacheSize (1024), least recently used first out,
//     keyed by the peer and the content IDs of its chains. A hit is
//     checked again for time and revocation, as is every Check, so a
//     cached verdict never outlives its chains.
//   - Invocations seen: until their exp plus the leeway, at most
//     ReplayCacheSize (100 000) live ones; when it is full of live ones,
//     new invocations are refused (ErrBusy) rather than forgetting one
//     (expired ones are dropped first, on every use). Forgetting a live
//     one, as an LRU would, reopens exactly the hole the cache closes; a
//     refusal is visible, temporary (the oldest entry goes within
//     MaxInvocationTTL plus twice the leeway) and costs a retry. At the
//     defaults an entry lives its invocation's TTL plus 60 s, so the cache
//     takes a sustained 100 000 / (TTL + 60 s) invocations per second:
//     833/s with clients' one-minute invocations, 277/s with five-minute
//     ones. With Config.ReplayFile they are also on disk (see
//     Used invocations).
//   - Revocations: until the revoked delegation's exp plus the leeway, at
//     most MaxRevocations (65 536).
//
// Revoke makes a revocation record: an invocation signed by the authority
// about itself, command /macula/revoke, argument "payload" the content ID of
// the revoked delegation, exp the delegation's exp. AddRevocation verifies
// it and enforces it at once: every later Validate, ValidateInvocation,
// Check and CheckMember refuses chains containing that delegation,
// including verdicts handed out earlier (a revocation bumps a generation
// counter; a verdict rescans its content IDs when the counter moved). The
// bound on enforcement across the realm is therefore the time the record
// takes to reach each node (the node distributes records, and hands
// Revocations to peers that join later). Only the authority revokes.
//
// # Used invocations
//
// An invocation is a bearer token: whoever holds it may present it, so the
// validator accepts each one once (ErrReplay after). With Config.ReplayFile
// (a node sets it in its data directory) this holds across restarts: the
// file has every accepted invocation that has not expired, and New reads
// it back.
//
// The hot path pays one write(2) of a 50-byte record, appended before the
// invocation counts, with no fsync: a process that dies, even in the middle
// of a write, keeps every write that returned (they are in the kernel's
// page cache), and a write cut off by its death returned nothing and let
// nothing through (the next start drops the partial record). An
// invocation whose record cannot be written is refused (ErrBusy). The file
// is rewritten with only the live entries when it holds more than twice
// their number plus 1024, so it stays within about twice ReplayCacheSize
// records (10 MB at the default). Close rewrites it durably (fsync of the
// file and its directory), marked clean; so is the first write of a run.
//
// What a crash of the whole machine loses (appends not yet written back)
// is detected instead of prevented: a file that Close did not mark clean
// is trusted only if it was written in the same boot of the system
// (Linux's boot_id; elsewhere never). Otherwise, and for a damaged,
// truncated-in-the-middle, foreign or oversized file, New does not fail
// but quarantines: until MaxInvocationTTL plus twice the leeway after the
// start (7 min at the defaults; for ever when the TTL is unbounded), it
// refuses every invocation issued (iat) at or before the start plus the
// leeway, or without iat, with ErrReplay. Nothing accepted before the
// start can pass: it was issued no later than the leeway after its use
// (an iat further ahead is refused, ErrNotYetValid) and has expired when
// the quarantine ends. New invocations pass once their iat is past the
// start plus the leeway, so after an unclean machine restart bearer
// requests are refused for about a minute. The quarantine is kept in the
// file across further restarts. A missing file is a first start. This
// assumes one process per data directory and a clock that does not step
// back by more than the leeway across a restart; an older copy of the
// file restored from a backup is not detected.
//
// # Versions and order
//
// go-ucan v1.1.0 reads the tags ucan/dlg@1.0.0-rc.1 and ucan/inv@1.0.0-rc.1
// (so does iso-ucan 0.5.0). Tokens with the final @1.0.0 tags are refused
// (ErrUnsupportedVersion): the tag is part of the signed payload, so it
// cannot be normalised before go-ucan without breaking the signature, and
// accepting them would mean a second decoder and signature check beside
// go-ucan's for every token. When go-ucan reads them, the conformance test
// (testdata/ucan-spec/v1.0.0) is ready. Chains and an invocation's prf are
// root first, as in the spec, its fixtures and iso-ucan; go-ucan v1.1.0
// itself orders prf leaf first (identical for a single proof). A powerline
// delegation must omit sub: go-ucan's schema does not take sub: null.
//
// # Concurrency
//
// A Validator and its Verdicts are safe for concurrent use. Validator
// starts no goroutine; Close ends the use of its replay file. Locks are
// never nested (each cache has its own mutex, under which the replay
// cache also writes its file; revMu guards the revocation map).
package ucan
