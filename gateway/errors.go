package gateway

import (
	"errors"
	"fmt"
)

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
	// ErrCredential: the local credential's file cannot be written.
	ErrCredential = errors.New("gateway: local credential")
)

// ListenError is the failure to bind one of the API's listeners, so that a
// caller can say which of its settings to change. It wraps ErrListen and
// the system's error.
type ListenError struct {
	Network string // "tcp" (HTTP/1.1) or "udp" (HTTP/3)
	Addr    string // the address that could not be bound
	Reason  string // what went wrong, for people ("address already in use ...")
	Err     error  // the system's error
}

func (e *ListenError) Error() string {
	return fmt.Sprintf("%v: %s (%s): %s", ErrListen, e.Addr, e.Network, e.Reason)
}

func (e *ListenError) Unwrap() []error { return []error{ErrListen, e.Err} }
