package pubsub

import (
	"errors"
	"fmt"

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

// errNotSent: a destination the message could not go to at all (a link
// closing, a message over the peer's limit, a subscription ending), which
// no wait would have helped; a waiting Publish counts it neither as queued
// nor as missed.
var errNotSent = errors.New("pubsub: not sent")

// ErrNoRoom is matched by the error of a Publish with WaitForRoom whose
// context ended while a subscriber's queue was still full: see
// NoRoomError.
var ErrNoRoom = errors.New("pubsub: no room in a subscriber's queue")

// NoRoomError is the error of a Publish with WaitForRoom whose context
// ended before every queue the message goes to had room. The message was
// queued for Queued of the destinations (subscriber nodes and local
// subscriptions) and is lost for the other Missed, which are counted as
// drops (Stats.DroppedSend, DroppedLocal) as a shedding Publish's would be:
// publishing it again delivers it twice to the first Queued. Destinations
// that could take no message at all (a link closing, a message over a
// peer's size limit, a subscription ending) are in neither count. It matches
// ErrNoRoom and the context's error (context.DeadlineExceeded or
// context.Canceled).
type NoRoomError struct {
	Topic          string
	Queued, Missed int
	Err            error // the context's error
}

func (e *NoRoomError) Error() string {
	return fmt.Sprintf("pubsub: publish to %s: no room in the queues of %d of %d subscribers before the context ended (queued for the other %d): %v",
		e.Topic, e.Missed, e.Queued+e.Missed, e.Queued, e.Err)
}

// Unwrap returns ErrNoRoom and the context's error.
func (e *NoRoomError) Unwrap() []error { return []error{ErrNoRoom, e.Err} }
