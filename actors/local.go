package actors

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/macula-io/macula/ring"
)

// This file is the local runtime: the actors of this node, their mailboxes
// and who runs them.
//
// An actor is an entry in its kind's table, in the stripe of its shard. It
// holds no goroutine while idle. A message to an idle actor with an empty
// mailbox runs at once in the sender's goroutine (a call) or in a worker
// (a cast); a message to a busy actor waits in its mailbox, and whoever runs
// the actor when the message before it ends runs it next: the sender of a
// call, after its own message, hands the actor to a worker if its mailbox is
// not empty, and the worker drains it. So one goroutine at a time runs an
// actor, messages to different actors never wait for each other, and no
// goroutine exists for an actor that has nothing to do.
//
// Lock order: shardTable.mu, then actor.mu. System.wmu is taken alone.

// kindKey names a registered kind.
type kindKey struct{ capability, kind string }

// kindTable holds the actors of one kind on this node.
type kindTable struct {
	key     kindKey
	factory Factory
	shards  [ring.Shards]shardTable
}

// shardTable holds the actors of one kind in one shard.
type shardTable struct {
	// mu guards m.
	mu sync.Mutex
	m  map[string]*actor
}

type actorState uint8

const (
	// idle: nobody runs the actor and its mailbox is empty.
	idle actorState = iota
	// running: one goroutine owns the actor: it runs messages, then hands
	// the actor on (release) when its own message is done.
	running
	// dead: removed from its table; a sender that finds it looks again.
	dead
)

// actor is one actor of this node, active or not yet started.
type actor struct {
	kt *kindTable // set at creation, read-only after
	id string     // set at creation, read-only after

	// mu guards state, box and last.
	mu    sync.Mutex
	state actorState
	box   mailbox
	last  int64 // time of the last message, unix ns

	// Owned by the goroutine that set state to running (or, before the
	// actor is published in its table, by its creator).
	impl     Actor
	inc      uint64
	crash    *crashRecord
	snapshot []byte // state to restore instead of Init (a move)
	restored bool   // the snapshot was handed over, even if empty

	// pub is inc while the actor is started, 0 otherwise: for readers
	// that do not own the actor (Actors).
	pub atomic.Uint64
}

// crashRecord remembers an actor's recent crashes, for the restart limit.
type crashRecord struct {
	times []int64 // unix ns, the last MaxRestarts crashes
}

// mailbox is a FIFO of envelopes; nil slice while empty.
type mailbox struct {
	q    []*envelope
	head int
}

func (m *mailbox) len() int { return len(m.q) - m.head }

func (m *mailbox) push(e *envelope) { m.q = append(m.q, e) }

func (m *mailbox) pop() *envelope {
	if m.head == len(m.q) {
		return nil
	}
	e := m.q[m.head]
	m.q[m.head] = nil
	m.head++
	if m.head == len(m.q) {
		// Empty: keep a small buffer, drop a big one (a burst is over).
		if cap(m.q) > 64 {
			m.q = nil
		} else {
			m.q = m.q[:0]
		}
		m.head = 0
	}
	return e
}

// envelope is a message waiting in a mailbox.
type envelope struct {
	ctx     context.Context // the caller's (a call) or nil (a cast)
	payload []byte
	initArg []byte
	cast    bool
	// st is waiting, taken (the runner has it) or abandoned (the caller
	// gave up first); one CAS decides.
	st atomic.Int32
	// Set by the runner before done is signalled.
	inc   uint64
	reply []byte
	err   error
	done  chan struct{} // capacity 1
}

const (
	envWaiting int32 = iota
	envTaken
	envAbandoned
)

var envelopes = sync.Pool{New: func() any { return &envelope{done: make(chan struct{}, 1)} }}

func getEnvelope() *envelope {
	e := envelopes.Get().(*envelope)
	e.st.Store(envWaiting)
	return e
}

// putEnvelope recycles e once neither the caller nor the runner uses it.
func putEnvelope(e *envelope) {
	*e = envelope{done: e.done}
	envelopes.Put(e)
}

// local is the node's own actors.
type local struct {
	s *System

	// kinds is the registered kinds (copy on write under regMu).
	kinds atomic.Pointer[map[kindKey]*kindTable]
	// anyCap holds the kinds registered for every capability
	// (RegisterAll), by kind (copy on write under regMu); kind makes
	// their tables on first use.
	anyCap atomic.Pointer[map[string]Factory]
	regMu  sync.Mutex

	incs   atomic.Uint64 // the last incarnation handed out
	active atomic.Int64  // started actors
	queued atomic.Int64  // messages in mailboxes

	// wmu guards workers and ready.
	wmu     sync.Mutex
	workers int      // goroutines draining mailboxes
	ready   []*actor // actors with mail, waiting for a worker
}

func (l *local) init(s *System) {
	l.s = s
	l.kinds.Store(&map[kindKey]*kindTable{})
	l.anyCap.Store(&map[string]Factory{})
	// Incarnations are unique across restarts of the node too: they start
	// from the clock.
	l.incs.Store(uint64(time.Now().UnixNano()))
}

func (l *local) register(capability, kind string, f Factory) error {
	l.regMu.Lock()
	defer l.regMu.Unlock()
	k := kindKey{capability, kind}
	old := *l.kinds.Load()
	if _, ok := old[k]; ok {
		return fmt.Errorf("%w: %s.%s", ErrAlreadyRegistered, capability, kind)
	}
	m := make(map[kindKey]*kindTable, len(old)+1)
	for kk, v := range old {
		m[kk] = v
	}
	m[k] = &kindTable{key: k, factory: f}
	if len(old) == 0 {
		// The first kind: the sweeper, asleep until now, keeps the
		// clock from here on.
		l.s.clock.Store(nowNano())
	}
	l.kinds.Store(&m)
	if len(old) == 0 {
		select {
		case l.s.firstKind <- struct{}{}:
		default:
		}
	}
	return nil
}

func (l *local) kind(capability, kind string) *kindTable {
	if kt := (*l.kinds.Load())[kindKey{capability, kind}]; kt != nil {
		return kt
	}
	f := (*l.anyCap.Load())[kind]
	if f == nil {
		return nil
	}
	_ = l.register(capability, kind, f) // ErrAlreadyRegistered: another goroutine did
	return (*l.kinds.Load())[kindKey{capability, kind}]
}

func (l *local) registerAll(kind string, f Factory) error {
	l.regMu.Lock()
	defer l.regMu.Unlock()
	old := *l.anyCap.Load()
	if _, ok := old[kind]; ok {
		return fmt.Errorf("%w: %s for every capability", ErrAlreadyRegistered, kind)
	}
	m := make(map[string]Factory, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[kind] = f
	l.anyCap.Store(&m)
	return nil
}

// lookup returns the entry of id in st, creating an idle one. id may be a
// view of a message's bytes: a new entry keeps a copy.
func (st *shardTable) lookup(kt *kindTable, id string) *actor {
	st.mu.Lock()
	a := st.m[id]
	if a == nil {
		if st.m == nil {
			st.m = make(map[string]*actor)
		}
		id = strings.Clone(id)
		a = &actor{kt: kt, id: id}
		st.m[id] = a
	}
	st.mu.Unlock()
	return a
}

// admit enters one message for the actor id of kt in shard. For a call to
// an idle actor it takes the actor for the caller (inline: the caller runs
// the message with complete); otherwise it queues the message, and e is
// what a call waits on. The caller holds the shard's admission lock, so
// that no message enters a shard whose actors are moving.
func (l *local) admit(cc *callCtx, kt *kindTable, shard int, id string, cast bool, payload, initArg []byte) (a *actor, e *envelope, err error) {
	st := &kt.shards[shard]
	for {
		a = st.lookup(kt, id)
		a.mu.Lock()
		if a.state != dead {
			break
		}
		a.mu.Unlock()
	}
	if cc.fromPeer && cc.ctx.Err() != nil {
		// Checked under a.mu: a message of the same sender admitted
		// before this one came after the sender gave up on this one
		// (rpc's cancel precedes it on the stream), so this one must not
		// run after it.
		a.mu.Unlock()
		return nil, nil, fmt.Errorf("%w: %s.%s %q: its caller gave up before it was delivered", ErrTimeout, kt.key.capability, kt.key.kind, id)
	}
	a.last = l.s.clock.Load()
	if !cast && a.state == idle {
		// The common case: nobody runs the actor. The caller runs the
		// call in its own goroutine.
		a.state = running
		a.mu.Unlock()
		return a, nil, nil
	}
	if a.box.len() >= l.s.cfg.MailboxSize {
		n := a.box.len()
		a.mu.Unlock()
		return nil, nil, fmt.Errorf("%w: %s.%s %q holds %d messages", ErrMailboxFull, kt.key.capability, kt.key.kind, id, n)
	}
	e = getEnvelope()
	e.payload, e.initArg, e.cast = payload, initArg, cast
	if !cast {
		e.ctx = cc.bounded()
	}
	a.box.push(e)
	l.queued.Add(1)
	start := a.state == idle
	if start {
		a.state = running
	}
	a.mu.Unlock()
	if start {
		l.schedule(a)
	}
	if cast {
		return a, nil, nil
	}
	return a, e, nil
}

// complete finishes what admit began: it runs an inline call (e nil) or
// waits for a queued call's reply. It returns the incarnation that handled
// the call.
func (l *local) complete(ctx context.Context, a *actor, e *envelope, payload, initArg []byte) (uint64, []byte, error) {
	if e == nil {
		inc, reply, err := l.exec(ctx, a, false, payload, initArg)
		l.release(a)
		return inc, reply, err
	}
	select {
	case <-e.done:
		inc, reply, err := e.inc, e.reply, e.err
		putEnvelope(e)
		return inc, reply, err
	case <-ctx.Done():
		if e.st.CompareAndSwap(envWaiting, envAbandoned) {
			// The runner will skip it and recycle it.
			return 0, nil, ctxErr(ctx)
		}
		// Taken: it runs with our ctx, which has ended; its answer comes
		// soon, and the runner must not recycle e while we read it.
		<-e.done
		putEnvelope(e)
		return 0, nil, ctxErr(ctx)
	}
}

// release ends a goroutine's turn on a: it hands a to a worker when mail
// arrived meanwhile, and makes it idle otherwise.
func (l *local) release(a *actor) {
	a.mu.Lock()
	if a.box.len() == 0 {
		a.state = idle
		a.mu.Unlock()
		return
	}
	a.mu.Unlock()
	l.schedule(a)
}

// maxWorkers bounds the goroutines that drain mailboxes; past it, actors
// with mail wait in the ready list for a worker. Calls to idle actors run
// in their callers' goroutines and do not count.
const maxWorkers = 8192

// schedule makes a worker drain a's mailbox; a is running (owned by the
// scheduler until a worker takes it).
func (l *local) schedule(a *actor) {
	l.wmu.Lock()
	if l.workers >= maxWorkers {
		l.ready = append(l.ready, a)
		l.wmu.Unlock()
		return
	}
	l.workers++
	l.wmu.Unlock()
	l.s.wg.Add(1)
	go l.work(a)
}

// work drains a's mailbox, then the mailboxes of ready actors, then exits.
func (l *local) work(a *actor) {
	defer l.s.wg.Done()
	for a != nil {
		l.drain(a)
		l.wmu.Lock()
		if n := len(l.ready); n > 0 {
			a = l.ready[0]
			l.ready[0] = nil
			l.ready = l.ready[1:]
			if len(l.ready) == 0 {
				l.ready = nil
			}
		} else {
			a = nil
			l.workers--
		}
		l.wmu.Unlock()
	}
}

// drain runs a's messages until its mailbox is empty, then makes it idle.
func (l *local) drain(a *actor) {
	for {
		a.mu.Lock()
		e := a.box.pop()
		if e == nil {
			a.state = idle
			a.mu.Unlock()
			return
		}
		a.mu.Unlock()
		l.queued.Add(-1)
		if e.cast {
			ctx, cancel := context.WithTimeout(l.s.ctx, l.s.cfg.CastTimeout)
			_, _, _ = l.exec(ctx, a, true, e.payload, e.initArg)
			cancel()
			putEnvelope(e)
			continue
		}
		if !e.st.CompareAndSwap(envWaiting, envTaken) {
			putEnvelope(e) // the caller gave up
			continue
		}
		e.inc, e.reply, e.err = l.exec(e.ctx, a, false, e.payload, e.initArg)
		e.done <- struct{}{}
	}
}

// exec runs one message on a, which the calling goroutine owns: it starts
// the actor first if needed, and recovers a panic.
func (l *local) exec(ctx context.Context, a *actor, cast bool, payload, initArg []byte) (inc uint64, reply []byte, err error) {
	if a.impl == nil {
		if err := l.start(ctx, a, initArg); err != nil {
			return 0, nil, err
		}
	}
	inc = a.inc
	defer func() {
		if p := recover(); p != nil {
			l.crashed(a, p, debug.Stack())
			reply, err = nil, fmt.Errorf("%w: %s.%s %q: %v", ErrCrashed, a.kt.key.capability, a.kt.key.kind, a.id, p)
		}
	}()
	if cast {
		a.impl.HandleCast(ctx, payload)
		return inc, nil, nil
	}
	reply, err = a.impl.HandleCall(ctx, payload)
	if err != nil {
		var ae *ActorError
		if !errors.As(err, &ae) {
			err = &ActorError{Message: err.Error()}
		}
		return inc, nil, err
	}
	return inc, reply, nil
}

// start makes a's actor and runs Init (or Restore, after a move).
func (l *local) start(ctx context.Context, a *actor, initArg []byte) (err error) {
	now := nowNano()
	if c := a.crash; c != nil && len(c.times) >= l.s.cfg.MaxRestarts {
		if oldest := c.times[len(c.times)-l.s.cfg.MaxRestarts]; now-oldest < int64(l.s.cfg.RestartWindow) {
			return fmt.Errorf("%w: %s.%s %q crashed %d times within %v; it starts again in %v", ErrRestartLimit,
				a.kt.key.capability, a.kt.key.kind, a.id, l.s.cfg.MaxRestarts, l.s.cfg.RestartWindow,
				time.Duration(int64(l.s.cfg.RestartWindow)-(now-oldest)).Round(time.Millisecond))
		}
	}
	defer func() {
		if p := recover(); p != nil {
			a.impl = nil
			l.recordCrash(a)
			l.s.log.Error("actor panicked while starting", "capability", a.kt.key.capability, "kind", a.kt.key.kind, "id", a.id, "panic", p)
			err = fmt.Errorf("%w: %s.%s %q panicked while starting: %v", ErrInit, a.kt.key.capability, a.kt.key.kind, a.id, p)
		}
	}()
	impl := a.kt.factory(a.id)
	if impl == nil {
		return fmt.Errorf("%w: %s.%s: the factory returned nil", ErrInit, a.kt.key.capability, a.kt.key.kind)
	}
	if sn, ok := impl.(Snapshotter); ok && a.restored {
		// Arrived from another node: its state instead of Init.
		if err := sn.Restore(ctx, a.snapshot); err != nil {
			return fmt.Errorf("%w: %s.%s %q: restore: %v", ErrInit, a.kt.key.capability, a.kt.key.kind, a.id, err)
		}
	} else if in, ok := impl.(Initializer); ok {
		if err := in.Init(ctx, initArg); err != nil {
			return fmt.Errorf("%w: %s.%s %q: %v", ErrInit, a.kt.key.capability, a.kt.key.kind, a.id, err)
		}
	}
	a.impl = impl
	a.snapshot, a.restored = nil, false
	a.inc = l.incs.Add(1)
	l.active.Add(1)
	l.s.started(a)
	return nil
}

// crashed handles a panic of a's actor: Stop(Crashed), then forget it; the
// next message starts it again.
func (l *local) crashed(a *actor, p any, stack []byte) {
	l.s.log.Error("actor panicked", "capability", a.kt.key.capability, "kind", a.kt.key.kind, "id", a.id,
		"incarnation", a.inc, "panic", p, "stack", string(stack))
	l.s.crashedEvent(a, fmt.Sprint(p))
	l.stop(a, Crashed)
	l.recordCrash(a)
}

func (l *local) recordCrash(a *actor) {
	if a.crash == nil {
		a.crash = &crashRecord{}
	}
	c := a.crash
	c.times = append(c.times, nowNano())
	if n := l.s.cfg.MaxRestarts; len(c.times) > n {
		c.times = append(c.times[:0], c.times[len(c.times)-n:]...)
	}
}

// stop runs a's Stop hook (bounded by StopTimeout, panics recovered) and
// forgets its actor; the entry stays. The caller owns a.
func (l *local) stop(a *actor, reason StopReason) {
	impl := a.impl
	if impl == nil {
		return
	}
	a.impl = nil
	l.active.Add(-1)
	if st, ok := impl.(Stopper); ok {
		ctx, cancel := context.WithTimeout(context.Background(), l.s.cfg.StopTimeout)
		func() {
			defer func() {
				if p := recover(); p != nil {
					l.s.log.Error("actor panicked in Stop", "capability", a.kt.key.capability, "kind", a.kt.key.kind, "id", a.id, "panic", p)
				}
			}()
			st.Stop(ctx, reason)
		}()
		cancel()
	}
	l.s.stopped(a, reason)
}

// acquire takes an idle actor for the calling goroutine (state running):
// false when it is busy or dead.
func (a *actor) acquire() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.state != idle {
		return false
	}
	a.state = running
	return true
}

// retire removes a, which the caller owns, from its table when no mail came
// meanwhile; otherwise it hands a on. It reports whether a was removed.
func (l *local) retire(a *actor, shard int) bool {
	st := &a.kt.shards[shard]
	st.mu.Lock()
	a.mu.Lock()
	if a.box.len() > 0 {
		a.mu.Unlock()
		st.mu.Unlock()
		l.schedule(a)
		return false
	}
	a.state = dead
	if st.m[a.id] == a {
		delete(st.m, a.id)
	}
	a.mu.Unlock()
	st.mu.Unlock()
	return true
}

// passivate stops actors idle since before cutoff (unix ns) and removes
// their entries; entries of actors that never started or crashed go too.
// It returns how many actors it stopped.
func (l *local) passivate(cutoff int64) int {
	n := 0
	var batch []*actor
	for _, kt := range *l.kinds.Load() {
		for shard := range kt.shards {
			st := &kt.shards[shard]
			batch = batch[:0]
			st.mu.Lock()
			for _, a := range st.m {
				a.mu.Lock()
				if a.state == idle && a.last < cutoff {
					a.state = running
					batch = append(batch, a)
				}
				a.mu.Unlock()
			}
			st.mu.Unlock()
			for _, a := range batch {
				if a.impl == nil && a.restored {
					if l.s.route.serves(kt.key.capability, shard) {
						// Handed over from another node and idle
						// since: start it from its state, so that its
						// Stop hook sees the state it is about to lose.
						ctx, cancel := context.WithTimeout(l.s.ctx, l.s.cfg.StopTimeout)
						_ = l.start(ctx, a, nil)
						cancel()
					} else {
						// Kept after a failed handoff, and its shard
						// never came back: it must not start here.
						l.s.log.Warn("passivated the kept state of an actor whose shard is served elsewhere; it is dropped", "capability", kt.key.capability, "kind", kt.key.kind, "id", a.id)
					}
				}
				if a.impl != nil {
					l.stop(a, Passivated)
					n++
				}
				if !l.retire(a, shard) {
					continue
				}
			}
		}
	}
	return n
}

// stopAll stops every actor (the system is closing): each is taken when the
// messages it already has are done; no new message is admitted (closing).
func (l *local) stopAll() {
	for _, kt := range *l.kinds.Load() {
		for shard := range kt.shards {
			for _, a := range takeShard(kt, shard) {
				l.stop(a, Closed)
				l.retire(a, shard)
			}
		}
	}
}

// takeShard returns the actors of kt in shard, each owned by the caller
// (state running) once the messages already in its mailbox are done. The
// caller makes sure that no new message enters the shard meanwhile.
func takeShard(kt *kindTable, shard int) []*actor {
	st := &kt.shards[shard]
	st.mu.Lock()
	all := make([]*actor, 0, len(st.m))
	for _, a := range st.m {
		all = append(all, a)
	}
	st.mu.Unlock()
	out := all[:0]
	for _, a := range all {
		wait := 100 * time.Microsecond
		for !a.acquire() {
			a.mu.Lock()
			gone := a.state == dead
			a.mu.Unlock()
			if gone {
				break
			}
			time.Sleep(wait)
			wait = min(2*wait, 10*time.Millisecond)
		}
		if !a.isDead() {
			out = append(out, a)
		}
	}
	return out
}

func (a *actor) isDead() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.state == dead
}

func nowNano() int64 { return time.Now().UnixNano() }

func ctxErr(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return ErrTimeout
	}
	return ctx.Err()
}
