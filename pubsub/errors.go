package pubsub

import (
	"errors"

	"github.com/macula-io/macula/internal/closed"
)

var (
	// ErrTooLarge is returned by Publish for a payload over
	// Config.MaxMessageSize.
	ErrTooLarge = errors.New("pubsub: payload over the size limit")

	// ErrClosed is returned by every call after Close. It matches
	// net.ErrClosed.
	ErrClosed = closed.Error("pubsub")

	// ErrTooManyPatterns is returned by Subscribe when the node would hold
	// more than MaxPatterns distinct patterns: a peer refuses an interest set
	// larger than that, so the node could not announce it.
	ErrTooManyPatterns = errors.New("pubsub: too many distinct patterns")

	// ErrUnauthorized is returned by Publish and Subscribe in a secure realm
	// when the node's own verdict (Config.Access) does not grant publishing
	// to the topic, or subscribing to every topic the pattern can match.
	// The error also wraps the ucan error saying why (ucan.ErrResource,
	// ucan.ErrExpired, ucan.ErrRevoked, ...).
	ErrUnauthorized = errors.New("pubsub: unauthorized")
)

// errMalformed is wrapped by every wire decoding error; a stream that
// carries such a frame is closed.
var errMalformed = errors.New("pubsub: malformed frame")
