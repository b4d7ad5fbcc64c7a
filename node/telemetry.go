package node

import (
	"time"

	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"

	"github.com/macula-io/macula/event"
)

// holePunchEvents turns libp2p's hole punching trace (DCUtR) into the
// node's hole_punch events. It runs on the hole punching service's
// goroutines; Emit never blocks.
type holePunchEvents struct{ bus *event.Bus }

func (t holePunchEvents) Trace(e *holepunch.Event) {
	end, ok := e.Evt.(*holepunch.EndHolePunchEvt)
	if !ok || !t.bus.Wants(event.HolePunch) {
		return
	}
	ev := event.Event{Kind: event.HolePunch, Time: time.Unix(0, e.Timestamp), Peer: e.Remote.String(), Duration: end.EllapsedTime, Outcome: "direct"}
	if !end.Success {
		ev.Outcome, ev.Reason = "failed", end.Error
	}
	t.bus.Emit(ev)
}
