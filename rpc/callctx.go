package rpc

import (
	"context"
	"sync"
	"time"
)

// callCtx is a handler's context: it ends when cancel is called (the caller
// cancelled, or its stream ended) or at its deadline. Unlike
// context.WithTimeout it arms no timer until somebody asks for Done: most
// handlers never look, and a timer per call is a measurable cost (timer
// heap locks). Err checks the clock instead. It does not derive from the
// service's context: every running call is in its serverConn's running map,
// and the end of a stream (including Close, which resets every served
// stream) cancels them all.
type callCtx struct {
	deadline time.Time // zero: none

	// mu guards the fields below. done, once made, is closed exactly when
	// err becomes non-nil.
	mu    sync.Mutex
	done  chan struct{}
	err   error
	timer *time.Timer
}

var _ context.Context = (*callCtx)(nil)

// newCallCtx returns the context of a call with timeout ns left (0: none).
func newCallCtx(timeout int64) *callCtx {
	c := &callCtx{}
	if timeout > 0 {
		c.deadline = time.Now().Add(time.Duration(timeout))
	}
	return c
}

func (c *callCtx) Deadline() (time.Time, bool) { return c.deadline, !c.deadline.IsZero() }

func (c *callCtx) Value(any) any { return nil }

func (c *callCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		c.done = make(chan struct{})
		switch {
		case c.err != nil:
			close(c.done)
		case !c.deadline.IsZero():
			d := time.Until(c.deadline)
			if d <= 0 {
				c.err = context.DeadlineExceeded
				close(c.done)
			} else {
				c.timer = time.AfterFunc(d, func() { c.cancel(context.DeadlineExceeded) })
			}
		}
	}
	return c.done
}

func (c *callCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil && !c.deadline.IsZero() && !time.Now().Before(c.deadline) {
		c.err = context.DeadlineExceeded
		if c.done != nil {
			close(c.done)
		}
	}
	return c.err
}

func (c *callCtx) String() string { return "rpc.callCtx" }

// cancel ends the context with err unless it has ended already.
func (c *callCtx) cancel(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
		if c.done != nil {
			close(c.done)
		}
	}
	t := c.timer
	c.timer = nil
	c.mu.Unlock()
	if t != nil {
		t.Stop()
	}
}
