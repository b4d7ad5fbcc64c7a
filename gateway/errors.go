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
	// ErrCredential: the local credential's file cannot be written.
	ErrCredential = errors.New("gateway: local credential")
)
