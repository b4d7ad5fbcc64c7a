package actors

import (
	"context"
	"errors"
	"fmt"

	"github.com/macula-io/macula/rpc"
)

// Errors of calls and casts. Test them with errors.Is; each crosses the wire
// with a stable code (see codeOf), so a remote caller gets the same error.
var (
	// ErrUnknownKind: the owner of the actor has no kind of that name
	// registered for the capability.
	ErrUnknownKind = errors.New("actors: kind not registered on the owner")
	// ErrNotServed: no node of the realm serves the capability.
	ErrNotServed = errors.New("actors: no node serves the capability")
	// ErrMailboxFull: the actor's mailbox holds Config.MailboxSize
	// messages already; the message was not accepted.
	ErrMailboxFull = errors.New("actors: mailbox full")
	// ErrCrashed: the actor panicked while handling this message (or
	// while starting). It restarts fresh, with a new incarnation, on the
	// next message.
	ErrCrashed = errors.New("actors: actor crashed")
	// ErrRestartLimit: the actor crashed Config.MaxRestarts times within
	// Config.RestartWindow; it is not started again until the window has
	// passed.
	ErrRestartLimit = errors.New("actors: restart limit reached")
	// ErrInit: the actor's Init (or Restore) returned an error; the actor
	// was not started.
	ErrInit = errors.New("actors: actor failed to start")
	// ErrUnavailable: the owner of the actor could not be reached, or its
	// shard was moving and did not settle, within the call's deadline.
	// The message was not delivered.
	ErrUnavailable = errors.New("actors: owner unavailable")
	// ErrLost: the connection to the owner was lost after the message was
	// sent; it may or may not have been handled.
	ErrLost = errors.New("actors: connection to the owner lost; the message may have been handled")
	// ErrUnauthorized: in a secure realm, the caller may not call actors
	// of this capability and kind (ucan.Actor), or this node may not serve
	// the capability (ucan.Serve).
	ErrUnauthorized = errors.New("actors: unauthorized")
	// ErrInvalid: a malformed request (capability, kind or id).
	ErrInvalid = errors.New("actors: invalid request")
	// ErrTooLarge: a payload, init argument or snapshot over the limit.
	ErrTooLarge = errors.New("actors: payload over the size limit")
	// ErrClosed: the actor system was closed.
	ErrClosed = errors.New("actors: closed")
	// ErrAlreadyRegistered: Register was called twice for one kind.
	ErrAlreadyRegistered = errors.New("actors: kind already registered")
	// ErrTimeout: the call's deadline passed. It matches
	// context.DeadlineExceeded too.
	ErrTimeout error = timeoutError{}
)

type timeoutError struct{}

func (timeoutError) Error() string   { return "actors: timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }
func (timeoutError) Is(target error) bool {
	return target == context.DeadlineExceeded || target == rpc.ErrTimeout
}

// ActorError is an error that an actor's HandleCall returned. It reaches the
// caller as it is when the actor returned one (Code set by the actor);
// other errors arrive with Code "actor_error" and their text.
type ActorError struct {
	Code    string
	Message string
}

func (e *ActorError) Error() string {
	if e.Message == "" {
		return "actors: actor error " + e.Code
	}
	return fmt.Sprintf("actors: actor error %s: %s", e.Code, e.Message)
}

// Wire codes of the errors above (rpc.RemoteError.Code). Append only.
const (
	codeUnknownKind  = "actor_unknown_kind"
	codeNotServed    = "actor_not_served"
	codeMailboxFull  = "actor_mailbox_full"
	codeCrashed      = "actor_crashed"
	codeRestartLimit = "actor_restart_limit"
	codeInit         = "actor_init"
	codeUnavailable  = "actor_unavailable"
	codeUnauthorized = "unauthorized" // rpc.CodeUnauthorized, so rpc.ErrUnauthorized matches too
	codeInvalid      = "actor_invalid"
	codeTooLarge     = "actor_too_large"
	codeClosed       = "actor_closed"
	codeActorError   = "actor_error"
	codeTimeout      = "timeout"
	// codeWrongOwner: the node is not the owner of the shard in its view;
	// the message carries the owner it knows. Never reaches a user.
	codeWrongOwner = "actor_wrong_owner"
)

var sentinelCodes = []struct {
	err  error
	code string
}{
	{ErrUnknownKind, codeUnknownKind},
	{ErrNotServed, codeNotServed},
	{ErrMailboxFull, codeMailboxFull},
	{ErrCrashed, codeCrashed},
	{ErrRestartLimit, codeRestartLimit},
	{ErrInit, codeInit},
	{ErrUnavailable, codeUnavailable},
	{ErrUnauthorized, codeUnauthorized},
	{ErrInvalid, codeInvalid},
	{ErrTooLarge, codeTooLarge},
	{ErrClosed, codeClosed},
	{ErrTimeout, codeTimeout},
}

// toRemote turns an error of a local delivery into the *rpc.RemoteError that
// carries it to a remote caller.
func toRemote(err error) *rpc.RemoteError {
	var ae *ActorError
	if errors.As(err, &ae) {
		return &rpc.RemoteError{Code: codeActorError, Message: ae.Message, Data: []byte(ae.Code)}
	}
	for _, sc := range sentinelCodes {
		if errors.Is(err, sc.err) {
			return &rpc.RemoteError{Code: sc.code, Message: err.Error()}
		}
	}
	return &rpc.RemoteError{Code: codeActorError, Message: err.Error()}
}

// fromRemote turns a remote error back into the error the owner had.
func fromRemote(re *rpc.RemoteError) error {
	if re.Code == codeActorError {
		return &ActorError{Code: string(re.Data), Message: re.Message}
	}
	for _, sc := range sentinelCodes {
		if re.Code == sc.code {
			return &remoteSentinel{err: sc.err, msg: re.Message}
		}
	}
	return re
}

// remoteSentinel is a sentinel error that happened on the owner: it matches
// the sentinel and keeps the owner's message.
type remoteSentinel struct {
	err error
	msg string
}

func (e *remoteSentinel) Error() string { return e.msg }
func (e *remoteSentinel) Unwrap() error { return e.err }
