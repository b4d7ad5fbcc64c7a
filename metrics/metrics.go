package metrics

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/macula-io/macula/actors"
	"github.com/macula-io/macula/event"
	"github.com/macula-io/macula/node"
	"github.com/macula-io/macula/registry"
	"github.com/macula-io/macula/rpc"
)

// OtherLabel is the value of a bounded label for names past
// Config.MaxLabelValues (see the package doc).
const OtherLabel = "_other"

// DefaultMaxLabelValues is Config.MaxLabelValues when it is 0.
const DefaultMaxLabelValues = 64

// Config tunes a Metrics. The zero value works.
type Config struct {
	// MaxLabelValues bounds the distinct values of each name label
	// (procedure, pattern, capability); names past it count under
	// OtherLabel. Default DefaultMaxLabelValues (64).
	MaxLabelValues int
}

// Sources are what a Metrics reads: the node (required), and the actor
// system and registry built on it (nil when the program runs none).
type Sources struct {
	Node     *node.Node
	Actors   *actors.System
	Registry *registry.Registry
}

// Metrics is a node's Prometheus collector and the tables behind it. Its
// methods are safe for concurrent use.
type Metrics struct {
	// Set in New, read-only after.
	src      Sources
	reg      prometheus.Registerer
	max      int
	attached *event.Attachment
	col      *collector

	procs  labelTable[*procStats]
	caps   labelTable[*atomic.Int64] // shards owned, by capability
	counts counters

	// APIRefusals counts, for the gateway, requests it refused: 0
	// unauthenticated (401), 1 unauthorized (403).
	apiRefusals [2]atomic.Uint64

	closeOnce sync.Once
}

// counters are the event counts with fixed labels.
type counters struct {
	opened       [2]atomic.Uint64 // by path: direct, relayed
	closed       [4]atomic.Uint64 // left, unresponsive, disconnected, other
	refusedPeers atomic.Uint64
	natProbes    [2]atomic.Uint64 // ok, error
	holePunches  [2]atomic.Uint64 // direct, failed
	memberEvents [4]atomic.Uint64 // joined, updated, left, failed
	actorEvents  [4]atomic.Uint64 // started, stopped, crashed, moved
}

var (
	pathValues        = []string{"direct", "relayed"}
	closeReasons      = []string{node.ReasonLeft, node.ReasonUnresponsive, node.ReasonDisconnected, "other"}
	natProbeOutcomes  = []string{"ok", "error"}
	holePunchOutcomes = []string{"direct", "failed"}
	memberEventValues = []string{"joined", "updated", "left", "failed"}
	actorEventValues  = []string{"started", "stopped", "crashed", "moved"}
	apiRefusalReasons = []string{"api_unauthenticated", "api_unauthorized"}
	errNoNode         = errors.New("metrics: Sources.Node is required")
	errNilRegisterer  = errors.New("metrics: a nil Registerer (pass the program's own registry, not the global one)")
)

// New makes the node's metrics and registers them on reg. It attaches a
// handler to the node's event bus; Close detaches it and unregisters.
func New(reg prometheus.Registerer, src Sources, cfg Config) (*Metrics, error) {
	if src.Node == nil {
		return nil, errNoNode
	}
	if reg == nil {
		return nil, errNilRegisterer
	}
	if cfg.MaxLabelValues < 0 {
		return nil, fmt.Errorf("metrics: MaxLabelValues %d: want 0 (the default) or more", cfg.MaxLabelValues)
	}
	m := &Metrics{src: src, reg: reg, max: cfg.MaxLabelValues}
	if m.max == 0 {
		m.max = DefaultMaxLabelValues
	}
	m.procs.init(m.max, func() *procStats { return &procStats{} })
	m.caps.init(m.max, func() *atomic.Int64 { return new(atomic.Int64) })
	m.col = newCollector(m)
	if err := reg.Register(m.col); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	m.attached = src.Node.Events().Attach(m.handle,
		event.ConnectionUp, event.ConnectionDown, event.PeerRefused, event.CallStop, event.CallServed,
		event.NATProbe, event.HolePunch, event.MemberJoined, event.MemberUpdated, event.MemberLeft,
		event.MemberFailed, event.ActorStarted, event.ActorStopped, event.ActorCrashed, event.ActorMoved,
		event.ShardsChanged)
	return m, nil
}

// Close detaches the event handler and unregisters the collector. It is
// safe to call more than once.
func (m *Metrics) Close() error {
	m.closeOnce.Do(func() {
		m.attached.Detach()
		m.reg.Unregister(m.col)
	})
	return nil
}

// Gatherer returns the registry New was given when it can be gathered
// (a *prometheus.Registry can), for GET /metrics; nil otherwise.
func (m *Metrics) Gatherer() prometheus.Gatherer {
	g, _ := m.reg.(prometheus.Gatherer)
	return g
}

// CountAPIRefusal counts a request the API refused: unauthenticated (401)
// or not (403, unauthorized).
func (m *Metrics) CountAPIRefusal(unauthenticated bool) {
	if unauthenticated {
		m.apiRefusals[0].Add(1)
	} else {
		m.apiRefusals[1].Add(1)
	}
}

// handle is the bus handler: it runs on the emitting goroutine, so it only
// counts.
func (m *Metrics) handle(e event.Event) {
	c := &m.counts
	switch e.Kind {
	case event.CallStop:
		m.procForCall(e.Procedure, e.Outcome).recordCall(e.Outcome, e.Duration)
	case event.CallServed:
		m.procForServed(e.Procedure, e.Outcome).recordServed(e.Outcome, e.Duration)
	case event.ConnectionUp:
		c.opened[indexOr(pathValues, e.Path, 0)].Add(1)
	case event.ConnectionDown:
		c.closed[indexOr(closeReasons, e.Reason, 3)].Add(1)
	case event.PeerRefused:
		c.refusedPeers.Add(1)
	case event.NATProbe:
		if e.Reason == "" {
			c.natProbes[0].Add(1)
		} else {
			c.natProbes[1].Add(1)
		}
	case event.HolePunch:
		c.holePunches[indexOr(holePunchOutcomes, e.Outcome, 1)].Add(1)
	case event.MemberJoined, event.MemberUpdated, event.MemberLeft, event.MemberFailed:
		c.memberEvents[e.Kind-event.MemberJoined].Add(1)
	case event.ActorStarted, event.ActorStopped, event.ActorCrashed, event.ActorMoved:
		c.actorEvents[e.Kind-event.ActorStarted].Add(1)
	case event.ShardsChanged:
		m.caps.get(e.Capability).Store(int64(e.Shards))
	}
}

// procForCall is the row of a call made from here: its own when the
// procedure is known to exist (see the package doc), else _other.
func (m *Metrics) procForCall(name, outcome string) *procStats {
	if p := m.procs.lookup(name); p != nil {
		return p
	}
	if outcome == rpc.OutcomeOK || outcome == rpc.OutcomeRemoteError {
		return m.procs.get(name)
	}
	return m.procs.get(OtherLabel)
}

// procForServed is the row of a call that arrived here: its own when its
// handler ran (the procedure is advertised here), else _other unless the
// name has a row already (a refusal names whatever the caller sent).
func (m *Metrics) procForServed(name, outcome string) *procStats {
	if p := m.procs.lookup(name); p != nil {
		return p
	}
	switch outcome {
	case rpc.ServedOK, rpc.ServedRemoteError, rpc.ServedTimeout, rpc.ServedCancelled:
		return m.procs.get(name)
	}
	return m.procs.get(OtherLabel)
}

func indexOr(values []string, v string, dflt int) int {
	if i := slices.Index(values, v); i >= 0 {
		return i
	}
	return dflt
}

// latencyBounds are the histogram bounds in seconds: rpc.LatencyBuckets.
var latencyBounds = func() []float64 {
	out := make([]float64, len(rpc.LatencyBuckets))
	for i, d := range rpc.LatencyBuckets {
		out[i] = d.Seconds()
	}
	return out
}()

// histo is a latency histogram with rpc.LatencyBuckets: count per bucket
// (the last is +Inf) and the sum.
type histo struct {
	buckets [17]atomic.Uint64
	sumNs   atomic.Int64
}

func (h *histo) observe(d time.Duration) {
	i := 0
	for i < len(rpc.LatencyBuckets) && d > rpc.LatencyBuckets[i] {
		i++
	}
	h.buckets[i].Add(1)
	h.sumNs.Add(int64(d))
}

// snapshot returns the cumulative counts Prometheus wants, the total and
// the sum in seconds.
func (h *histo) snapshot() (map[float64]uint64, uint64, float64) {
	cum := make(map[float64]uint64, len(latencyBounds))
	var n uint64
	for i := range h.buckets {
		n += h.buckets[i].Load()
		if i < len(latencyBounds) {
			cum[latencyBounds[i]] = n
		}
	}
	return cum, n, time.Duration(h.sumNs.Load()).Seconds()
}

// raw returns the per-bucket counts (not cumulative).
func (h *histo) raw() []uint64 {
	out := make([]uint64, len(h.buckets))
	for i := range h.buckets {
		out[i] = h.buckets[i].Load()
	}
	return out
}

// procStats are one procedure's counts, on both sides of its calls.
type procStats struct {
	calls  [7]atomic.Uint64 // by rpc.Outcomes index
	served [8]atomic.Uint64 // by rpc.ServedOutcomes index
	callH  histo
	servH  histo
}

func (p *procStats) recordCall(outcome string, d time.Duration) {
	p.calls[indexOr(rpc.Outcomes, outcome, len(rpc.Outcomes)-1)].Add(1)
	p.callH.observe(d)
}

func (p *procStats) recordServed(outcome string, d time.Duration) {
	p.served[indexOr(rpc.ServedOutcomes, outcome, 1)].Add(1)
	if d > 0 {
		p.servH.observe(d)
	}
}

// labelTable maps bounded names to their rows: the first max names get
// their own, the rest share OtherLabel's. Reads take no lock.
type labelTable[T any] struct {
	mk   func() T
	max  int
	rows sync.Map // string -> T
	n    atomic.Int32
	// mu serializes inserts.
	mu sync.Mutex
}

func (t *labelTable[T]) init(max int, mk func() T) { t.max, t.mk = max, mk }

// lookup returns name's row, or the zero T when it has none.
func (t *labelTable[T]) lookup(name string) T {
	if v, ok := t.rows.Load(name); ok {
		return v.(T)
	}
	var zero T
	return zero
}

// get returns name's row, making it if there is room, else OtherLabel's.
func (t *labelTable[T]) get(name string) T {
	if v, ok := t.rows.Load(name); ok {
		return v.(T)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if v, ok := t.rows.Load(name); ok {
		return v.(T)
	}
	if name != OtherLabel && int(t.n.Load()) >= t.max {
		name = OtherLabel
		if v, ok := t.rows.Load(name); ok {
			return v.(T)
		}
	}
	v := t.mk()
	t.rows.Store(name, v)
	if name != OtherLabel {
		t.n.Add(1)
	}
	return v
}

// each calls f for every row, sorted by name.
func (t *labelTable[T]) each(f func(name string, v T)) {
	var names []string
	t.rows.Range(func(k, _ any) bool { names = append(names, k.(string)); return true })
	slices.Sort(names)
	for _, n := range names {
		f(n, t.lookup(n))
	}
}

// ProcedureStats are one procedure's counts (one row of the procedure
// label, OtherLabel included), for the dashboard.
type ProcedureStats struct {
	Procedure string
	// Calls made from this node, by rpc.Outcomes; their latency buckets
	// (rpc.LatencyBuckets, the last one for slower calls) and sum.
	Calls       map[string]uint64
	CallBuckets []uint64
	CallSum     time.Duration
	// Served calls, by rpc.ServedOutcomes; their latency.
	Served        map[string]uint64
	ServedBuckets []uint64
	ServedSum     time.Duration
}

// Procedures returns every procedure row, sorted by name.
func (m *Metrics) Procedures() []ProcedureStats {
	var out []ProcedureStats
	m.procs.each(func(name string, p *procStats) {
		ps := ProcedureStats{Procedure: name, Calls: map[string]uint64{}, Served: map[string]uint64{},
			CallBuckets: p.callH.raw(), CallSum: time.Duration(p.callH.sumNs.Load()),
			ServedBuckets: p.servH.raw(), ServedSum: time.Duration(p.servH.sumNs.Load())}
		for i, o := range rpc.Outcomes {
			ps.Calls[o] = p.calls[i].Load()
		}
		for i, o := range rpc.ServedOutcomes {
			ps.Served[o] = p.served[i].Load()
		}
		out = append(out, ps)
	})
	return out
}

// NewRegistry returns a new registry (never the global one) with the Go
// runtime's and the process's collectors (go_*, process_*), for a program
// that has none of its own.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}
