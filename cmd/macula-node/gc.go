package main

import (
	"os"
	"runtime/debug"
)

// gcPercent is the garbage collector's target of a node's processes (run,
// dev) unless GOGC is set in the environment: the heap may grow by half of
// what is live between collections, where Go's default lets it double. A
// node's heap is mostly state that lives as long as the node (peers,
// routing tables, streams and their buffers) and little garbage at rest,
// so collecting earlier costs an idle node nothing and a busy one a few
// percent of CPU, for a fifth less memory of its own: in a 50-node realm
// on one machine 15.7 MB instead of 18.3 (PSS, median) and 46.0 MB of RSS
// instead of 48.3 (docs/benchmarks.md). GOGC=100 restores Go's default.
const gcPercent = 50

// tuneGC sets the garbage collector's target to gcPercent unless the
// environment chose one.
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
}
