package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/macula-io/macula/actors"
	wire "github.com/macula-io/macula/api"
	"github.com/macula-io/macula/ring"
	"github.com/macula-io/macula/ucan"
)

// The actor routes (contract: Config.Actors nil answers 404 not_enabled):
//
//	POST /v1/actors/{capability}/{kind}/{id}   a call (the body is the payload; ?cast=true: a cast, 202)
//	GET  /v1/actors                            the actors active on this node (?limit=, default 1000)
//	GET  /v1/actors/log                        this node's activation log
//	GET  /v1/ring                              the owners of every capability's shards (?owners=true: each shard's)
const actorPattern = "POST /v1/actors/{capability}/{kind}/{id}"

// DefaultActorListLimit is the number of actors GET /v1/actors lists
// without ?limit=.
const DefaultActorListLimit = 1000

func (a *api) actorRoutes() {
	a.handleRaw(actorPattern, a.actorScope, a.postActor)
	a.bodyLimits[actorPattern] = int64(a.maxPayload)
	a.handle("GET /v1/actors", adminScope, a.getActors)
	a.handle("GET /v1/actors/log", adminScope, a.getActivationLog)
	a.handle("GET /v1/ring", adminScope, a.getRing)
}

// actorScope is ucan.Actor on "<realm>.<capability>.<kind>".
func (a *api) actorScope(r *http.Request) (scope, error) {
	return scope{cmd: ucan.Actor, res: actors.ActorResource(a.n.Realm(), r.PathValue("capability"), r.PathValue("kind"))}, nil
}

func (a *api) actorSystem() (*actors.System, error) {
	if a.actors == nil {
		return nil, newAPIError(http.StatusNotFound, wire.CodeNotEnabled, "this node runs no actor system")
	}
	return a.actors, nil
}

func (a *api) postActor(w http.ResponseWriter, r *http.Request) error {
	sys, err := a.actorSystem()
	if err != nil {
		return err
	}
	req := actors.Request{Capability: r.PathValue("capability"), Kind: r.PathValue("kind"), ID: r.PathValue("id")}
	cast, err := boolParam(r, "cast")
	if err != nil {
		return err
	}
	timeout, err := callTimeout(r)
	if err != nil {
		return err
	}
	if v := r.Header.Get(wire.InitArgHeader); v != "" {
		req.InitArg = []byte(v)
	} else if q := r.URL.Query(); q.Has("init") {
		req.InitArg = []byte(q.Get("init"))
	}
	if req.Payload, err = io.ReadAll(r.Body); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return newAPIError(http.StatusRequestEntityTooLarge, wire.CodeTooLarge, fmt.Sprintf("payload over the limit of %d bytes", a.maxPayload))
		}
		return badRequest("reading the payload: %v", err)
	}
	ctx, cancel := contextWithTimeout(r, timeout)
	defer cancel()
	what := req.Capability + "/" + req.Kind + "/" + req.ID
	if cast {
		if err := sys.Cast(ctx, req); err != nil {
			return actorError(what, timeout, err)
		}
		w.Header().Del("Content-Type")
		w.WriteHeader(http.StatusAccepted)
		return nil
	}
	ref, reply, err := sys.Call(ctx, req)
	if err != nil {
		return actorError(what, timeout, err)
	}
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		ct = wire.ContentTypeRaw
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set(wire.ActorNodeHeader, ref.Node.String())
	w.Header().Set(wire.ActorIncarnationHeader, strconv.FormatUint(ref.Incarnation, 10))
	w.Header().Set("Content-Length", strconv.Itoa(len(reply)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(reply)
	return nil
}

// actorError turns an error of System.Call or Cast into an API error.
func actorError(what string, timeout time.Duration, err error) error {
	msg := strings.TrimPrefix(err.Error(), "actors: ")
	var ae *actors.ActorError
	switch {
	case errors.Is(err, actors.ErrInvalid):
		return newAPIError(http.StatusBadRequest, wire.CodeInvalidName, msg)
	case errors.Is(err, actors.ErrUnauthorized):
		return newAPIError(http.StatusForbidden, wire.CodeUnauthorized, msg)
	case errors.Is(err, actors.ErrNotServed):
		return newAPIError(http.StatusNotFound, wire.CodeNotServed, msg)
	case errors.Is(err, actors.ErrUnknownKind):
		return newAPIError(http.StatusNotFound, wire.CodeUnknownKind, msg)
	case errors.Is(err, actors.ErrMailboxFull):
		return newAPIError(http.StatusTooManyRequests, wire.CodeMailboxFull, msg)
	case errors.Is(err, actors.ErrCrashed):
		return newAPIError(http.StatusUnprocessableEntity, wire.CodeActorCrashed, msg)
	case errors.Is(err, actors.ErrInit):
		return newAPIError(http.StatusUnprocessableEntity, wire.CodeActorInit, msg)
	case errors.Is(err, actors.ErrRestartLimit):
		return newAPIError(http.StatusServiceUnavailable, wire.CodeRestartLimit, msg)
	case errors.As(err, &ae):
		return &apiError{status: http.StatusUnprocessableEntity, code: wire.CodeRemoteError, message: msg,
			remote: &wire.RemoteDetail{Code: ae.Code, Message: ae.Message}}
	case errors.Is(err, actors.ErrTooLarge):
		return newAPIError(http.StatusRequestEntityTooLarge, wire.CodeTooLarge, msg)
	case errors.Is(err, actors.ErrTimeout):
		return newAPIError(http.StatusGatewayTimeout, wire.CodeTimeout, fmt.Sprintf("%s: no answer within %v (%s)", what, timeout, msg))
	case errors.Is(err, actors.ErrLost):
		return newAPIError(http.StatusBadGateway, wire.CodeDisconnected, msg)
	case errors.Is(err, actors.ErrUnavailable), errors.Is(err, actors.ErrClosed):
		return newAPIError(http.StatusServiceUnavailable, wire.CodeUnavailable, msg)
	}
	return err
}

func (a *api) getActors(r *http.Request) (int, any, error) {
	sys, err := a.actorSystem()
	if err != nil {
		return 0, nil, err
	}
	limit := DefaultActorListLimit
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			return 0, nil, badRequest("limit %q: want a positive number", s)
		}
		limit = n
	}
	list := sys.Actors(limit + 1)
	out := wire.ActorList{Actors: make([]wire.ActorInfo, 0, min(len(list), limit))}
	if len(list) > limit {
		list, out.Truncated = list[:limit], true
	}
	st := sys.Stats()
	out.Stats = wire.ActorStats{Active: st.Active, Queued: st.Queued, Kinds: st.Kinds, MovedOut: st.MovedOut, MovedIn: st.MovedIn,
		HandoffTimeouts: st.HandoffTimeouts, Conflicts: st.Conflicts, Redirects: st.Redirects}
	for _, x := range list {
		out.Actors = append(out.Actors, wire.ActorInfo{ActorRef: wireRef(x.Ref), Shard: x.Shard, Mailbox: x.Mailbox, IdleNs: int64(x.Idle)})
	}
	return http.StatusOK, out, nil
}

func wireRef(r actors.Ref) wire.ActorRef {
	return wire.ActorRef{Node: r.Node.String(), Capability: r.Capability, Kind: r.Kind, ID: r.ID, Incarnation: r.Incarnation}
}

func (a *api) getActivationLog(*http.Request) (int, any, error) {
	sys, err := a.actorSystem()
	if err != nil {
		return 0, nil, err
	}
	recs, truncated := sys.ActivationLog()
	out := wire.ActivationLog{Records: make([]wire.Activation, 0, len(recs)), Truncated: truncated}
	for _, x := range recs {
		out.Records = append(out.Records, wire.Activation{Capability: x.Capability, Kind: x.Kind, ID: x.ID, Node: x.Node.String(),
			Incarnation: x.Incarnation, Time: x.Time, Started: x.Started, Reason: x.Reason})
	}
	return http.StatusOK, out, nil
}

func (a *api) getRing(r *http.Request) (int, any, error) {
	sys, err := a.actorSystem()
	if err != nil {
		return 0, nil, err
	}
	owners, err := boolParam(r, "owners")
	if err != nil {
		return 0, nil, err
	}
	out := wire.Ring{Node: a.n.ID().String(), Shards: ring.Shards, Capabilities: []wire.CapabilityRing{}}
	for _, p := range sys.Placements() {
		cr := wire.CapabilityRing{Capability: p.Capability(), MaxOverMean: p.MaxOverMean(), Digest: fmt.Sprintf("%016x", p.Digest())}
		nodes := p.Nodes()
		index := make(map[string]int, len(nodes))
		for i, n := range nodes {
			index[n] = i
			cr.Nodes = append(cr.Nodes, wire.RingNode{ID: peerString(n), Shards: p.Load(n)})
		}
		if owners {
			cr.Owners = make([]int, ring.Shards)
			for s := range ring.Shards {
				o, _ := p.Owner(s)
				cr.Owners[s] = index[o]
			}
		}
		out.Capabilities = append(out.Capabilities, cr)
	}
	return http.StatusOK, out, nil
}

// contextWithTimeout bounds a request's context by timeout.
func contextWithTimeout(r *http.Request, timeout time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), timeout)
}

// peerString is the base58 text of a peer ID in its binary form (the
// placement's node ids).
func peerString(id string) string { return peer.ID(id).String() }
