package rpc

import (
	"context"
	"errors"
	"sync/atomic"
	"time"
)

// Outcomes of a call, the fixed label set of the call metrics.
const (
	OutcomeOK           = "ok"
	OutcomeNotFound     = "not_found"
	OutcomeTimeout      = "timeout"
	OutcomeDisconnected = "disconnected"
	OutcomeRemoteError  = "remote_error"
	OutcomeUnauthorized = "unauthorized"
	OutcomeError        = "error"
)

// Outcomes of a served call (event.CallServed), a fixed set too.
const (
	ServedOK            = "ok"
	ServedRemoteError   = "remote_error"
	ServedTimeout       = "timeout"
	ServedCancelled     = "cancelled"
	ServedNotAdvertised = "not_advertised"
	ServedUnauthorized  = "unauthorized"
	ServedOverloaded    = "overloaded"
	ServedBadRequest    = "bad_request"
)

// ServedOutcomes lists the outcomes of a served call.
var ServedOutcomes = []string{ServedOK, ServedRemoteError, ServedTimeout, ServedCancelled, ServedNotAdvertised, ServedUnauthorized, ServedOverloaded, ServedBadRequest}

// Outcomes lists the outcomes of a call made from this node.
var Outcomes = outcomes

var outcomes = []string{OutcomeOK, OutcomeNotFound, OutcomeTimeout, OutcomeDisconnected, OutcomeRemoteError, OutcomeUnauthorized, OutcomeError}

func outcomeOf(err error) string {
	if err == nil {
		return OutcomeOK // before re below, which escapes to the heap
	}
	var re *RemoteError
	switch {
	case errors.Is(err, ErrUnauthorized):
		return OutcomeUnauthorized
	case errors.Is(err, ErrNotFound):
		return OutcomeNotFound
	case errors.Is(err, ErrTimeout):
		return OutcomeTimeout
	case errors.Is(err, ErrDisconnected):
		return OutcomeDisconnected
	case errors.As(err, &re):
		return OutcomeRemoteError
	}
	return OutcomeError
}

// servedOutcomeOf is the outcome of a call served on this node for its
// own caller.
func servedOutcomeOf(err error) string {
	switch {
	case err == nil:
		return ServedOK
	case errors.Is(err, ErrTimeout):
		return ServedTimeout
	case errors.Is(err, context.Canceled):
		return ServedCancelled
	}
	return ServedRemoteError
}

// LatencyBuckets are the upper bounds of the call duration histogram.
var LatencyBuckets = []time.Duration{
	100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond,
	25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

type stats struct {
	calls   [7]atomic.Uint64 // by outcome index
	buckets [17]atomic.Uint64
	sumNs   atomic.Uint64
	served  atomic.Uint64
	refused atomic.Uint64
}

func (s *stats) record(outcome string, d time.Duration) {
	for i, o := range outcomes {
		if o == outcome {
			s.calls[i].Add(1)
			break
		}
	}
	i := 0
	for i < len(LatencyBuckets) && d > LatencyBuckets[i] {
		i++
	}
	s.buckets[i].Add(1)
	s.sumNs.Add(uint64(d))
}

// Stats is a snapshot of the service's counters, ready for a metrics
// endpoint.
type Stats struct {
	// Calls counts finished calls made from this node, by outcome.
	Calls map[string]uint64 `json:"calls"`
	// Served counts calls handled here (local calls included).
	Served uint64 `json:"served"`
	// Refused counts calls that arrived here and were refused because the
	// caller's verdict does not grant ucan.Call on the procedure (answered
	// CodeUnauthorized; their handler did not run). Zero in an open realm.
	Refused uint64 `json:"refused"`
	// Buckets[i] counts calls that took at most LatencyBuckets[i]; the last
	// entry counts the slower ones.
	Buckets []uint64 `json:"latency_buckets"`
	// Sum is the total duration of the calls counted in Buckets.
	Sum time.Duration `json:"latency_sum_ns"`
	// ServingBytes is the request payload bytes held now by the handlers
	// running for remote callers (bounded by MaxServingBytes).
	ServingBytes int `json:"serving_bytes"`
}

// Stats returns the counters.
func (x *RPC) Stats() Stats {
	st := Stats{Calls: make(map[string]uint64, len(outcomes)), Served: x.stats.served.Load(), Refused: x.stats.refused.Load(), Sum: time.Duration(x.stats.sumNs.Load()),
		ServingBytes: x.load.held()}
	for i, o := range outcomes {
		st.Calls[o] = x.stats.calls[i].Load()
	}
	for i := range x.stats.buckets {
		st.Buckets = append(st.Buckets, x.stats.buckets[i].Load())
	}
	return st
}
