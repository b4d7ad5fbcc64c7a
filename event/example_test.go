package event_test

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/macula-io/macula/event"
)

// A program attaches a handler to the node's bus (node.Node.Events) to
// count calls by outcome and sum their latency, as the Elixir original's
// :telemetry.attach does. Here a bus stands in for the node's, and the
// events are the ones rpc emits for three calls.
func ExampleBus_Attach() {
	bus := event.NewBus() // in a program: n.Events()
	defer bus.Close()

	var ok, failed atomic.Uint64
	var total atomic.Int64
	a := bus.Attach(func(e event.Event) {
		if e.Outcome == "ok" {
			ok.Add(1)
		} else {
			failed.Add(1)
		}
		total.Add(int64(e.Duration))
	}, event.CallStop)
	defer a.Detach()

	// What rpc emits for each call (call_start is not asked for).
	bus.Emit(event.Event{Kind: event.CallStart, Procedure: "io.acme.orders.get"})
	bus.Emit(event.Event{Kind: event.CallStop, Procedure: "io.acme.orders.get", Outcome: "ok", Duration: 2 * time.Millisecond})
	bus.Emit(event.Event{Kind: event.CallStop, Procedure: "io.acme.orders.get", Outcome: "ok", Duration: 3 * time.Millisecond})
	bus.Emit(event.Event{Kind: event.CallStop, Procedure: "io.acme.orders.put", Outcome: "timeout", Duration: 5 * time.Second})

	fmt.Printf("ok %d, failed %d, total %v\n", ok.Load(), failed.Load(), time.Duration(total.Load()))
	// Output: ok 2, failed 1, total 5.005s
}
