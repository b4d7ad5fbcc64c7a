package rpc

import (
	"context"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/macula-io/macula/ucan"
)

// providerRefused: a provider whose verdict does not grant ucan.Advertise
// on the procedure, or that has no verdict. Nothing was sent to it.
type providerRefused struct {
	peer peer.ID
	err  error
}

func (e *providerRefused) Error() string {
	return fmt.Sprintf("provider %s refused: %v", e.peer, e.err)
}

// Unwrap gives the ucan error.
func (e *providerRefused) Unwrap() error { return e.err }

// verdictPoll bounds the wait between two looks for a peer's verdict.
const verdictPoll = 16 * time.Millisecond

// checkProvider reports whether p may serve procedure: a peer without the
// right to advertise it cannot attract calls. It is called once a stream to
// p is up. The common case is one policy lookup and one ucan.Check; a peer
// without a verdict on a connection younger than DialTimeout is given until
// then (and at most until the call's deadline) to get one, since the node's
// realm handshake sets it a few milliseconds after the connection is up.
func (x *RPC) checkProvider(ctx context.Context, p peer.ID, procedure string, o *callOpts) error {
	vd := x.cfg.Access.Peer(p)
	if vd == nil {
		var connected bool
		if vd, connected = x.awaitVerdict(ctx, p, o); !connected {
			// The stream's connection is gone (it has not noticed yet):
			// unreachable, not refused.
			return fmt.Errorf("%w: %s: not connected", ErrDisconnected, p)
		}
	}
	if err := ucan.Check(vd, ucan.Advertise, procedure); err != nil {
		return &providerRefused{peer: p, err: err}
	}
	return nil
}

// awaitVerdict polls the policy for p's verdict until its newest
// connection is DialTimeout old, the call's deadline, or ctx ends. nil: no
// verdict came; connected is false when there is no connection to p.
func (x *RPC) awaitVerdict(ctx context.Context, p peer.ID, o *callOpts) (_ *ucan.Verdict, connected bool) {
	var opened time.Time
	for _, c := range x.h.Network().ConnsToPeer(p) {
		if t := c.Stat().Opened; t.After(opened) {
			opened = t
		}
	}
	if opened.IsZero() {
		return nil, false
	}
	until := opened.Add(x.cfg.DialTimeout)
	if o.deadline.Before(until) {
		until = o.deadline
	}
	var t *time.Timer
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	wait := time.Millisecond
	for {
		if vd := x.cfg.Access.Peer(p); vd != nil {
			return vd, true
		}
		left := time.Until(until)
		if left <= 0 {
			return nil, true
		}
		wait = min(wait, left)
		if t == nil {
			t = time.NewTimer(wait)
		} else {
			t.Reset(wait)
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil, true
		case <-x.ctx.Done():
			return nil, true
		}
		wait = min(2*wait, verdictPoll)
	}
}
