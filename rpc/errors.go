package rpc

import (
	"context"
	"errors"
	"fmt"

	"github.com/macula-io/macula/internal/closed"
)

// Errors a call can end with. Test them with errors.Is; a handler's own
// error arrives as *RemoteError (errors.As).
var (
	// ErrNotFound: no node of the realm advertises the procedure.
	ErrNotFound = errors.New("rpc: procedure not found")
	// ErrTimeout: the call's deadline passed. It also matches
	// context.DeadlineExceeded.
	ErrTimeout error = timeoutError{}
	// ErrDisconnected: the connection to the callee was lost during the
	// call, or no callee could be reached.
	ErrDisconnected = errors.New("rpc: disconnected")
	// ErrUnauthorized: the caller may not call the procedure.
	ErrUnauthorized = errors.New("rpc: unauthorized")
	// ErrTooLarge: a payload over MaxPayload.
	ErrTooLarge = errors.New("rpc: payload over the size limit")
	// ErrClosed: the RPC service was closed. It matches net.ErrClosed.
	ErrClosed = closed.Error("rpc")
	// ErrAlreadyAdvertised: the procedure already has a handler here.
	ErrAlreadyAdvertised = errors.New("rpc: procedure already advertised")
)

type timeoutError struct{}

func (timeoutError) Error() string   { return "rpc: timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }
func (timeoutError) Is(target error) bool {
	return target == context.DeadlineExceeded
}

// Codes of remote errors that the rpc layer itself sends. Handlers may use
// any code of their own.
const (
	CodeNotAdvertised = "not_advertised" // the callee has no such handler (any more)
	CodeOverloaded    = "overloaded"     // the callee runs too many calls of this caller
	CodeTimeout       = "timeout"        // the handler ran past the caller's deadline
	CodeCanceled      = "canceled"       // the caller cancelled
	CodeInternal      = "internal"       // the handler panicked or failed without a code
	CodeUnauthorized  = "unauthorized"
	CodeBadRequest    = "bad_request"
)

// RemoteError is an error returned by the handler of a call, carried back to
// the caller.
type RemoteError struct {
	// Code is a short machine-readable code, such as "invalid_order".
	Code string
	// Message is for humans.
	Message string
	// Data is optional detail, in the call's codec.
	Data []byte
}

func (e *RemoteError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("rpc: remote error %s", e.Code)
	}
	return fmt.Sprintf("rpc: remote error %s: %s", e.Code, e.Message)
}

// Is makes a remote "unauthorized" match ErrUnauthorized.
func (e *RemoteError) Is(target error) bool {
	return target == ErrUnauthorized && e.Code == CodeUnauthorized
}

// Errorf returns a *RemoteError with a code, for handlers.
func Errorf(code, format string, args ...any) *RemoteError {
	return &RemoteError{Code: code, Message: fmt.Sprintf(format, args...)}
}
