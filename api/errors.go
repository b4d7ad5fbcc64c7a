package api

import (
	"errors"
	"fmt"
)

// Errors a Client's answers match (errors.Is on the *APIError).
var (
	// ErrUnauthenticated: the node's realm is secure and the request came
	// from off loopback without a readable bearer token (401
	// unauthenticated). Set Client.Token.
	ErrUnauthenticated = errors.New("api: unauthenticated")
	// ErrUnauthorized: the token, or the node's own grant, does not allow
	// the request (403 unauthorized).
	ErrUnauthorized = errors.New("api: unauthorized")
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
	// CodeOverloaded, 503 with Retry-After (seconds): the node has as many
	// calls and publishes in flight through its API as it takes, or the
	// node serving a call runs as many of this node's calls as it takes
	// per caller. Nothing was done; try again later.
	CodeOverloaded = "overloaded"
	// CodeNoRoom, 503 with Retry-After (seconds): a publish with
	// ?wait=true found a subscriber's queue still full when its timeout
	// ended. The message was queued for some subscribers and dropped for
	// the others (Error.Partial says how many of each): publishing it
	// again delivers it twice to the first.
	CodeNoRoom = "no_room"
)

// PartialDelivery is what a publish that ended with CodeNoRoom did:
// Queued subscribers (subscriber nodes and the node's own subscriptions)
// got the message, Missed did not.
type PartialDelivery struct {
	Queued int `json:"queued"`
	Missed int `json:"missed"`
}

// Error is the error of an API answer; every error answer's body is
// {"error":{"code":...,"message":...}} (ErrorBody). Code is one of the Code
// constants.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Remote is the handler's own error, with Code CodeRemoteError only.
	Remote *RemoteDetail `json:"remote,omitempty"`
	// Partial is what a publish did, with Code CodeNoRoom only.
	Partial *PartialDelivery `json:"partial,omitempty"`
}

// ErrorBody is the whole body of an error answer.
type ErrorBody struct {
	Error Error `json:"error"`
}

// APIError is an error answer of the API (a status other than 2xx). Network
// failures are not APIErrors but wrapped errors of the transport.
type APIError struct {
	// Status is the HTTP status.
	Status int
	// Code is the API's error code (one of the Code constants), or
	// "http_<status>" when the answer was not an API error body.
	Code    string
	Message string
	// Remote is the handler's own error when Code is CodeRemoteError (a
	// call answered 422); nil otherwise.
	Remote *RemoteDetail
	// Partial is what a publish did when Code is CodeNoRoom; nil
	// otherwise.
	Partial *PartialDelivery
}

// Error returns "CODE: MESSAGE (HTTP status)".
func (e *APIError) Error() string {
	return fmt.Sprintf("%s: %s (HTTP %d)", e.Code, e.Message, e.Status)
}

// Is makes an answer with code unauthenticated match ErrUnauthenticated,
// and one with code unauthorized ErrUnauthorized.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrUnauthenticated:
		return e.Code == CodeUnauthenticated
	case ErrUnauthorized:
		return e.Code == CodeUnauthorized
	}
	return false
}
