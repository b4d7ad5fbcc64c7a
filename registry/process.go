package registry

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Addr is the address of a process: its node and its number there. It
// works from any node of the realm (Send, Dispatch); numbers start from the
// node's start time in nanoseconds, so an address does not come back to
// life when its node restarts.
type Addr struct {
	Node peer.ID
	ID   uint64
}

// String formats the address as "<peer ID>/<number>".
func (a Addr) String() string {
	if a.Node == "" {
		return "-"
	}
	return a.Node.String() + "/" + strconv.FormatUint(a.ID, 10)
}

// IsZero reports whether a is the zero address.
func (a Addr) IsZero() bool { return a.Node == "" && a.ID == 0 }

// ParseAddr parses the form String gives.
func ParseAddr(s string) (Addr, error) {
	node, id, ok := strings.Cut(s, "/")
	if !ok {
		return Addr{}, fmt.Errorf("%w: %s: want <peer ID>/<number>", ErrBadAddr, quote(s))
	}
	p, err := peer.Decode(node)
	if err != nil {
		return Addr{}, fmt.Errorf("%w: %s: %v", ErrBadAddr, quote(s), err)
	}
	n, err := strconv.ParseUint(id, 10, 64)
	if err != nil || n == 0 {
		return Addr{}, fmt.Errorf("%w: %s: the number after / must be a positive integer", ErrBadAddr, quote(s))
	}
	return Addr{Node: p, ID: n}, nil
}

// MarshalText encodes the address as String does.
func (a Addr) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText decodes an address from the form String gives.
func (a *Addr) UnmarshalText(b []byte) error {
	v, err := ParseAddr(string(b))
	if err != nil {
		return err
	}
	*a = v
	return nil
}

// less orders addresses by node, then number.
func (a Addr) less(b Addr) bool {
	if a.Node != b.Node {
		return a.Node < b.Node
	}
	return a.ID < b.ID
}

// MessageKind says what a message is.
type MessageKind uint8

const (
	// MessageData is a message sent with Send or Dispatch.
	MessageData MessageKind = iota + 1
	// MessageLost tells a process that a name it held was given to
	// another process by conflict resolution: Key and Cluster name it,
	// Winner is the process that keeps it, Reason says why.
	MessageLost
)

func (k MessageKind) String() string {
	switch k {
	case MessageData:
		return "data"
	case MessageLost:
		return "lost"
	}
	return fmt.Sprintf("MessageKind(%d)", uint8(k))
}

// Message is what a process receives.
type Message struct {
	Kind MessageKind
	// From is the sending process; zero when the sender used
	// Registry.Send or Registry.Dispatch rather than a process's.
	From Addr
	// Key and Cluster: the key a Dispatch went to, or the name lost.
	Key     string
	Cluster string
	// Payload is the message (MessageData). The receiver owns it.
	Payload []byte
	// Winner and Reason, for MessageLost.
	Winner Addr
	Reason string
}

// ProcessConfig describes a process to Spawn.
type ProcessConfig struct {
	// Handler, if not nil, gets the process's messages one at a time, on
	// a goroutine of the process, with the process's lifetime as ctx. A
	// panic in it ends the process (its entries are removed with reason
	// process_ended). If nil, the messages are read from Messages.
	Handler func(ctx context.Context, m Message)
	// Mailbox bounds the queued messages; 0 means Config.Mailbox. When it
	// is full the newest message is dropped.
	Mailbox int
}

// Process is a local process: a mailbox and a lifetime. Its names and
// memberships last until it ends: when the context given to Spawn is done,
// when Close is called, when its handler panics, or when the registry
// closes. Its methods are safe for concurrent use.
type Process struct {
	r          *Registry
	addr       Addr // read-only
	hasHandler bool // read-only
	ctx        context.Context
	stop       context.CancelCauseFunc
	done       chan struct{} // closed once the process has ended and its entries are gone

	// mu guards mbox against closing while a sender uses it.
	mu     sync.RWMutex
	mbox   chan Message
	closed bool

	ended   atomic.Bool
	dropped atomic.Uint64
	cause   error // set before done is closed
}

// Addr returns the process's address.
func (p *Process) Addr() Addr { return p.addr }

// Context returns the process's lifetime: it is done when the process ends.
func (p *Process) Context() context.Context { return p.ctx }

// Done is closed once the process has ended and its names and memberships
// are removed.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err returns why the process ended, or nil while it runs.
func (p *Process) Err() error {
	select {
	case <-p.done:
		return p.cause
	default:
		return nil
	}
}

// Messages returns the mailbox of a process spawned without a Handler. It
// is closed when the process ends. (For a process with a Handler it
// returns nil.)
func (p *Process) Messages() <-chan Message {
	return p.mboxOut()
}

// Dropped counts the messages dropped because the mailbox was full.
func (p *Process) Dropped() uint64 { return p.dropped.Load() }

// Close ends the process: its names and memberships are removed (reason
// process_ended) and its mailbox closed. It waits until they are gone. Safe
// to call more than once.
func (p *Process) Close() error {
	p.stop(errClosedProcess)
	<-p.done
	return nil
}

var errClosedProcess = errors.New("closed")

// deliver queues a message without blocking; it reports false when the
// mailbox is full (the message is dropped and counted) and ErrProcessEnded
// when the process has ended.
func (p *Process) deliver(m Message) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return ErrProcessEnded
	}
	select {
	case p.mbox <- m:
		return nil
	default:
		p.dropped.Add(1)
		return ErrMailboxFull
	}
}

// closeMailbox closes the mailbox once no sender holds it.
func (p *Process) closeMailbox() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.mbox)
	}
	p.mu.Unlock()
}

// mboxOut is set for channel processes only.
func (p *Process) mboxOut() <-chan Message {
	if p.hasHandler {
		return nil
	}
	return p.mbox
}

// Register registers the process under key (one process per key in the
// realm or the cluster of opts), with meta as its metadata. Registering a
// key the process already holds replaces the metadata (monitors get
// registered with the previous metadata). A key held by another process in
// this node's view is ErrTaken (a *TakenError naming it).
func (p *Process) Register(key string, meta []byte, opts ...Option) error {
	return p.r.write(p, kindName, key, meta, opts)
}

// Unregister removes the process's name key. ErrNotFound if it does not
// hold it.
func (p *Process) Unregister(key string, opts ...Option) error {
	return p.r.remove(p, kindName, key, opts)
}

// Join makes the process a member of the group key, with meta. Joining again
// replaces the metadata.
func (p *Process) Join(key string, meta []byte, opts ...Option) error {
	return p.r.write(p, kindMember, key, meta, opts)
}

// Leave removes the process from the group key. ErrNotMember if it is not
// in it.
func (p *Process) Leave(key string, opts ...Option) error {
	return p.r.remove(p, kindMember, key, opts)
}

// Send sends payload to the process at to, with this process as the
// sender. See Registry.Send.
func (p *Process) Send(ctx context.Context, to Addr, payload []byte) error {
	return p.r.send(ctx, p.addr, to, payload)
}

// Dispatch sends payload to the members of key, with this process as the
// sender. See Registry.Dispatch.
func (p *Process) Dispatch(ctx context.Context, key string, payload []byte, opts ...Option) (int, error) {
	return p.r.dispatch(ctx, p.addr, key, payload, opts)
}
