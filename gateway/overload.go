package gateway

import (
	"fmt"
	"net/http"

	wire "github.com/macula-io/macula/api"
)

// Overload: the API takes at most MaxInFlight calls and publishes at once
// (together). One more is refused at once with 503, code overloaded and
// Retry-After, rather than queued: a flood at one node's API then costs
// that node a bounded number of goroutines and buffers, and a client learns
// at once that it should slow down. A call that the node serving it refuses
// because this node already runs as many calls there as it takes per caller
// (rpc's MaxConcurrentPerPeer, remote code "overloaded") gets the same
// answer. Reads (lookups, stats) and subscriptions are not counted: they
// are bounded by their own limits.
const (
	// MaxInFlight bounds the calls and publishes in flight through one API.
	MaxInFlight = 1024
	// retryAfter is the Retry-After of an overloaded answer, in seconds.
	retryAfter = "1"
)

// maxInFlight is MaxInFlight; tests lower it.
var maxInFlight = MaxInFlight

// admit takes an in-flight slot for a call or a publish (what names them
// in the refusal), or refuses the request when none is free.
func (a *api) admit(what string) (release func(), err error) {
	select {
	case a.inFlight <- struct{}{}:
		return func() { <-a.inFlight }, nil
	default:
		return nil, newAPIError(http.StatusServiceUnavailable, wire.CodeOverloaded,
			fmt.Sprintf("the node has %d calls and publishes in flight through its API; no more %s now", cap(a.inFlight), what))
	}
}
