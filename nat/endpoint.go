package nat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v3"
)

// endpoint runs STUN transactions over one socket and owns its read loop.
// The socket may carry other traffic (QUIC hands a shared socket everything
// that is not QUIC): the loop keeps STUN messages only and matches responses
// to transactions by ID.
type endpoint struct {
	conn net.PacketConn // set in newEndpoint, read-only after; closed by close
	log  *slog.Logger   // read-only
	// onRequest, if set, is called from the read loop with every STUN
	// request that is not one we watch for. Read-only after newEndpoint.
	onRequest func(m *stun.Message, from netip.AddrPort)
	closing   atomic.Bool
	stop      chan struct{} // closed by close: wakes the read loop's backoff
	done      chan struct{} // closed when the read loop has returned

	mu      sync.Mutex // guards the fields below
	pending map[[stun.TransactionIDSize]byte]*txn
	watch   map[[stun.TransactionIDSize]byte]chan struct{}
	ignored uint64 // datagrams that were no answer to anything of ours
}

// txn is one transaction in flight.
type txn struct {
	dst     netip.AddrPort // read-only
	replies chan reply     // capacity 1; a second answer (to a retransmission) is dropped
	strays  int            // guarded by endpoint.mu: datagrams from dst that were no valid answer
}

type reply struct {
	m    *stun.Message
	from netip.AddrPort
}

// result is a successful Binding transaction.
type result struct {
	binding
	from netip.AddrPort // where the response came from
	rtt  time.Duration  // from the first transmission
}

func newEndpoint(conn net.PacketConn, log *slog.Logger, onRequest func(*stun.Message, netip.AddrPort)) *endpoint {
	e := &endpoint{
		conn:      conn,
		log:       log,
		onRequest: onRequest,
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
		pending:   make(map[[stun.TransactionIDSize]byte]*txn),
		watch:     make(map[[stun.TransactionIDSize]byte]chan struct{}),
	}
	go e.readLoop()
	return e
}

// close closes the socket and waits for the read loop. Safe to call twice.
func (e *endpoint) close() error {
	if e.closing.Swap(true) {
		<-e.done
		return nil
	}
	close(e.stop)
	err := e.conn.Close()
	<-e.done
	return err
}

func (e *endpoint) readLoop() {
	defer close(e.done)
	buf := make([]byte, maxMessage+1) // one more: a longer datagram is refused, not truncated
	var backoff time.Duration
	for {
		n, addr, err := e.conn.ReadFrom(buf)
		if err != nil {
			if e.closing.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			// A transient error (or a shared conn whose owner is going
			// away): back off, up to a second, until close.
			backoff = min(max(2*backoff, 10*time.Millisecond), time.Second)
			e.log.Debug("nat: read error", "err", err, "backoff", backoff)
			select {
			case <-e.stop:
				return
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		e.handle(buf[:n], addrPortOf(addr))
	}
}

// handle sorts one datagram: a response to a transaction, a watched request,
// another request (to onRequest), or nothing of ours.
func (e *endpoint) handle(b []byte, from netip.AddrPort) {
	if !stun.IsMessage(b) {
		e.stray(from)
		return
	}
	m, err := decode(b)
	if err != nil {
		e.stray(from)
		return
	}
	switch m.Type.Class {
	case stun.ClassRequest:
		e.mu.Lock()
		ch, watched := e.watch[m.TransactionID]
		if watched {
			delete(e.watch, m.TransactionID)
		}
		e.mu.Unlock()
		if watched {
			close(ch)
			return
		}
		if e.onRequest != nil {
			e.onRequest(m, from)
		} else {
			e.stray(from)
		}
	case stun.ClassSuccessResponse, stun.ClassErrorResponse:
		e.mu.Lock()
		t := e.pending[m.TransactionID]
		if t == nil {
			e.strayLocked(from)
		}
		e.mu.Unlock()
		if t != nil {
			select {
			case t.replies <- reply{m: m, from: from}:
			default:
			}
		}
	default:
		e.stray(from)
	}
}

func (e *endpoint) stray(from netip.AddrPort) {
	e.mu.Lock()
	e.strayLocked(from)
	e.mu.Unlock()
}

// strayLocked counts a datagram that answered nothing: against every
// transaction to its sender (so that a server that sends garbage is told
// from one that sends nothing), or as ignored.
func (e *endpoint) strayLocked(from netip.AddrPort) {
	found := false
	for _, t := range e.pending {
		if t.dst == from {
			t.strays++
			found = true
		}
	}
	if !found {
		e.ignored++
	}
}

// roundTrip runs one Binding transaction with dst: the request, then
// retransmissions after rto, 2*rto, ... (retransmits of them), then a last
// wait as long as the one before doubled. It returns the first answer with
// our transaction ID, parsed.
func (e *endpoint) roundTrip(ctx context.Context, dst netip.AddrPort, change changeFlags, rto time.Duration, retransmits int) (result, error) {
	if e.closing.Load() {
		return result{}, ErrClosed
	}
	req, err := newRequest(change)
	if err != nil {
		return result{}, err
	}
	t := &txn{dst: dst, replies: make(chan reply, 1)}
	e.mu.Lock()
	e.pending[req.TransactionID] = t
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.pending, req.TransactionID)
		e.mu.Unlock()
	}()

	to := net.UDPAddrFromAddrPort(dst)
	start := time.Now()
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	sent := 0
	for attempt := 0; attempt <= retransmits; attempt++ {
		if _, err := e.conn.WriteTo(req.Raw, to); err != nil {
			if e.closing.Load() {
				return result{}, ErrClosed
			}
			return result{}, fmt.Errorf("%w: %v", ErrUnreachable, err)
		}
		sent++
		if timer == nil {
			timer = time.NewTimer(rto << attempt)
		} else {
			timer.Reset(rto << attempt)
		}
		select {
		case <-ctx.Done():
			return result{}, ctx.Err()
		case r := <-t.replies:
			b, err := parseResponse(r.m)
			if err != nil {
				return result{}, err
			}
			return result{binding: b, from: r.from, rtt: time.Since(start)}, nil
		case <-timer.C:
		}
	}
	e.mu.Lock()
	strays := t.strays
	e.mu.Unlock()
	elapsed := time.Since(start).Round(time.Millisecond)
	if strays > 0 {
		return result{}, fmt.Errorf("%w: %d datagrams that are not STUN responses to our request, none valid in %v", ErrBadResponse, strays, elapsed)
	}
	return result{}, fmt.Errorf("%w to %d requests in %v", ErrTimeout, sent, elapsed)
}

// watchFor returns a channel closed when a request with txid arrives, and a
// function that stops watching.
func (e *endpoint) watchFor(txid [stun.TransactionIDSize]byte) (<-chan struct{}, func()) {
	ch := make(chan struct{})
	e.mu.Lock()
	e.watch[txid] = ch
	e.mu.Unlock()
	return ch, func() {
		e.mu.Lock()
		delete(e.watch, txid)
		e.mu.Unlock()
	}
}

// ignoredCount returns how many datagrams answered nothing of ours.
func (e *endpoint) ignoredCount() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.ignored
}

// addrPortOf converts a net.Addr from ReadFrom; IPv4-mapped addresses are
// unmapped so that they compare equal to the IPv4 ones we send to.
func addrPortOf(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.UDPAddr:
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	case nil:
		return netip.AddrPort{}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
