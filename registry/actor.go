package registry

import (
	"context"
	"fmt"

	"github.com/macula-io/macula/actors"
)

// SpawnActor starts a process that stands for a virtual actor (package
// actors): every message sent or dispatched to the process is cast to the
// actor of req (its Capability, Kind and ID; the message as the payload;
// req.InitArg if the message starts it), wherever the actor runs and moves.
// So a name or a group membership can point at an actor: register the
// process, and Lookup, Dispatch and Send reach the actor. The process lives
// until ctx ends or it is closed, like any other; the actor's own life is
// the actor system's. A cast that fails (no node serves the capability, the
// actor's mailbox is full) is logged at the registry's verbose level and the
// message is lost, as a cast's may be.
func (r *Registry) SpawnActor(ctx context.Context, sys *actors.System, req actors.Request) (*Process, error) {
	if sys == nil {
		return nil, fmt.Errorf("registry: SpawnActor: no actor system")
	}
	if req.Capability == "" || req.Kind == "" || req.ID == "" {
		return nil, fmt.Errorf("registry: SpawnActor: the request needs a capability, a kind and an id")
	}
	return r.Spawn(ctx, ProcessConfig{Handler: func(ctx context.Context, m Message) {
		if m.Kind != MessageData {
			return
		}
		q := req
		q.Payload = m.Payload
		if err := sys.Cast(ctx, q); err != nil && r.log.on() {
			r.log.verbose("registry: cast to an actor failed", "capability", req.Capability, "kind", req.Kind, "id", req.ID, "err", err)
		}
	}})
}
