// Package backoff computes the waits between retries: exponential, capped,
// with jitter, so that many nodes that lost the same peer do not retry in
// lockstep.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Wait returns the wait before retry number failures (1-based):
// base*2^(failures-1), capped at max, minus up to 20% jitter.
func Wait(base, max time.Duration, failures int) time.Duration {
	d := base
	for i := 1; i < failures && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	return d - time.Duration(rand.Int64N(int64(d)/5+1))
}
