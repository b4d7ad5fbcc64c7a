// Package closed makes the ErrClosed of each of our services: an error that
// names its package ("rpc: closed") and matches net.ErrClosed, as quic-go's
// errServerClosed does. A caller that only needs to know that something
// was closed (the gateway, choosing 503) asks errors.Is(err, net.ErrClosed)
// once, whichever service said it; one that cares which asks for that
// package's ErrClosed.
package closed

import "net"

// Error returns the closed error of package pkg, with the text
// "<pkg>: closed". Each call returns a distinct error: errors.Is tells
// rpc's from pubsub's, and net.ErrClosed matches both.
func Error(pkg string) error { return &closedError{msg: pkg + ": closed"} }

type closedError struct{ msg string }

func (e *closedError) Error() string { return e.msg }

// Unwrap makes the error match net.ErrClosed.
func (e *closedError) Unwrap() error { return net.ErrClosed }
