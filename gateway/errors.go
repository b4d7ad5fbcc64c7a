package gateway

import "errors"

// Errors returned by New.
var (
	// ErrListen: an API listen address could not be bound (busy port, bad
	// address). The error names the address and the protocol.
	ErrListen = errors.New("gateway: cannot listen")
	// ErrConfig: the Config is not valid; the error names the field.
	ErrConfig = errors.New("gateway: invalid config")
	// ErrCert: the HTTP/3 certificate kept in the data directory cannot be
	// read or written.
	ErrCert = errors.New("gateway: API certificate")
)

// Errors a Client's answers match (errors.Is on the *APIError).
var (
	// ErrUnauthenticated: the node's realm is secure and the request came
	// from off loopback without a readable bearer token (401
	// unauthenticated). Set Client.Token.
	ErrUnauthenticated = errors.New("gateway: unauthenticated")
	// ErrUnauthorized: the token, or the node's own grant, does not allow
	// the request (403 unauthorized).
	ErrUnauthorized = errors.New("gateway: unauthorized")
)

// Error codes of the API, in the "code" field of an error body. They are
// stable: clients may switch on them.
const (
	CodeBadRequest       = "bad_request"        // 400: a missing or malformed parameter or body
	CodeInvalidDID       = "invalid_did"        // 400: not a did:key or did:macula alias
	CodeOtherRealm       = "other_realm"        // 400: an alias of another realm than the node's
	CodeInvalidKey       = "invalid_key"        // 400: an empty or over-long DHT key
	CodeInvalidLevel     = "invalid_level"      // 400: not debug, info, warn or error
	CodeInvalidName      = "invalid_name"       // 400: not a procedure or topic name of the node's realm (wildcards, other realms, bad syntax), or a pattern that cannot match one
	CodeUnauthenticated  = "unauthenticated"    // 401: a secure realm's API reached from off loopback without a readable bearer token
	CodeUnauthorized     = "unauthorized"       // 403: the token, or the node's own grant, does not allow the request
	CodeNotFound         = "not_found"          // 404: no such route, or nothing under that name
	CodeMethodNotAllowed = "method_not_allowed" // 405: the route exists for other methods (see Allow)
	CodeConflict         = "conflict"           // 409: the procedure is advertised here otherwise (another webhook URL, or the node's own code)
	CodeOpenRealm        = "open_realm"         // 409: the operation needs a secure realm (an authority), and the node's is open
	CodeTooLarge         = "too_large"          // 413: a request body over the limit
	CodeRemoteError      = "remote_error"       // 422: the procedure's handler answered with an error (see Error.Remote)
	CodeInternal         = "internal"           // 500: anything else; the message says what
	CodeNotImplemented   = "not_implemented"    // 501: this gateway does not offer the endpoint
	CodeBadRecord        = "bad_record"         // 502: a record from the DHT failed its checks
	CodeDisconnected     = "disconnected"       // 502: the connection to the node serving a call was lost, or none could be reached
	CodeUnavailable      = "unavailable"        // 503: the node or the gateway is closing, or the request was cancelled
	CodeNoPeers          = "no_peers"           // 503: the node has no peer to ask yet
	CodeTimeout          = "timeout"            // 504: the operation did not finish within its timeout
)
