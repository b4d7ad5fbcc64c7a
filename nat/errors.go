package nat

import (
	"errors"
	"fmt"

	"github.com/macula-io/macula/internal/closed"
)

// Errors returned by the package. Transaction errors wrap the server's
// address; test them with errors.Is.
var (
	// ErrConfig: a Config or ServerConfig is not valid; the error names the field.
	ErrConfig = errors.New("invalid nat config")
	// ErrClosed: the Prober or Server was closed. It matches net.ErrClosed.
	ErrClosed = closed.Error("nat")
	// ErrNoServers: no STUN server is configured, or none could be resolved.
	ErrNoServers = errors.New("no STUN server")
	// ErrNoAnswer: no configured STUN server gave a usable answer.
	ErrNoAnswer = errors.New("no STUN server answered")
	// ErrTimeout: a server sent nothing within the retransmission schedule.
	ErrTimeout = errors.New("no response")
	// ErrBadResponse: a server answered, but not with a valid STUN response
	// to our request (not STUN, malformed, or a response without a usable
	// mapped address).
	ErrBadResponse = errors.New("bad response")
	// ErrUnreachable: the request could not be sent (no route, bad address).
	ErrUnreachable = errors.New("unreachable")
	// ErrServerError: the server answered with a STUN error response; the
	// error is a *ServerError.
	ErrServerError = errors.New("error response")
)

// ServerError is a STUN error response (RFC 5389 section 15.6).
type ServerError struct {
	Code   int    // such as 420 (Unknown Attribute)
	Reason string // the server's reason phrase, at most 128 bytes kept
}

func (e *ServerError) Error() string {
	return fmt.Sprintf("error response %d %q", e.Code, e.Reason)
}

// Is makes errors.Is(err, ErrServerError) true.
func (e *ServerError) Is(target error) bool { return target == ErrServerError }
