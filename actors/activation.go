package actors

import (
	"cmp"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Activation is one record of the activation log: an incarnation of an
// actor started (Started) or stopped (Reason says why) on Node at Time.
type Activation struct {
	Capability  string    `json:"capability"`
	Kind        string    `json:"kind"`
	ID          string    `json:"id"`
	Node        peer.ID   `json:"node"`
	Incarnation uint64    `json:"incarnation"`
	Time        time.Time `json:"time"`
	Started     bool      `json:"started,omitempty"`
	Reason      string    `json:"reason,omitempty"`
}

// logStripes spreads the log over independent buffers so that activations
// of different actors do not contend on one lock.
const logStripes = 32

// activationLog keeps the last records of this node, for the
// single-activation checker.
type activationLog struct {
	stripes [logStripes]logStripe
}

type logStripe struct {
	// mu guards buf, next and full.
	mu   sync.Mutex
	buf  []Activation // grows by append up to max, then a ring
	max  int
	next int
	full bool
}

// init sets the log's size. Nothing is allocated until records come: a
// node that runs no actor keeps no log (the whole log, allocated at once,
// was a quarter of an idle node's heap).
func (l *activationLog) init(size int) {
	if size <= 0 {
		return
	}
	per := max(size/logStripes, 1)
	for i := range l.stripes {
		l.stripes[i].max = per
	}
}

func (l *activationLog) add(a Activation) {
	st := &l.stripes[a.Incarnation%logStripes]
	st.mu.Lock()
	if st.max > 0 {
		if len(st.buf) < st.max {
			st.buf = append(st.buf, a)
		} else {
			st.buf[st.next] = a
			st.next = (st.next + 1) % st.max
			st.full = true
		}
	}
	st.mu.Unlock()
}

// all returns the records, oldest first; truncated reports whether older
// ones were dropped.
func (l *activationLog) all() (out []Activation, truncated bool) {
	for i := range l.stripes {
		st := &l.stripes[i]
		st.mu.Lock()
		out = append(out, st.buf...)
		truncated = truncated || st.full
		st.mu.Unlock()
	}
	slices.SortStableFunc(out, func(a, b Activation) int { return a.Time.Compare(b.Time) })
	return out, truncated
}

// ActivationLog returns this node's activation log, oldest first (at most
// Config.LogSize records), and whether older records were dropped.
func (s *System) ActivationLog() ([]Activation, bool) { return s.alog.all() }

// CheckReport is what CheckSingleActivation found.
type CheckReport struct {
	// Actors is the number of actor ids in the log; Incarnations the
	// incarnations seen.
	Actors       int `json:"actors"`
	Incarnations int `json:"incarnations"`
	// Overlaps lists the pairs of incarnations of one actor that were
	// active at the same time on different nodes (at most 100), and
	// OverlapCount how many there were in all.
	Overlaps     []Overlap `json:"overlaps,omitempty"`
	OverlapCount int       `json:"overlap_count"`
	// MaxOverlap is the longest of them; TotalOverlap their sum.
	MaxOverlap   time.Duration `json:"max_overlap_ns"`
	TotalOverlap time.Duration `json:"total_overlap_ns"`
}

// Overlap is two incarnations of one actor active at once.
type Overlap struct {
	Capability string        `json:"capability"`
	Kind       string        `json:"kind"`
	ID         string        `json:"id"`
	A, B       Incarnation   `json:"-"`
	Duration   time.Duration `json:"duration_ns"`
}

// Incarnation is one activation interval of an actor: from Start to Stop
// (zero Stop: still active at the end of the log, End).
type Incarnation struct {
	Node        peer.ID
	Incarnation uint64
	Start, Stop time.Time
}

func (o Overlap) String() string {
	return fmt.Sprintf("%s.%s %q: %s#%d and %s#%d overlapped %v", o.Capability, o.Kind, o.ID,
		o.A.Node, o.A.Incarnation, o.B.Node, o.B.Incarnation, o.Duration)
}

func (r CheckReport) String() string {
	return fmt.Sprintf("%d actors, %d incarnations: %d overlaps on different nodes (max %v, total %v)",
		r.Actors, r.Incarnations, r.OverlapCount, r.MaxOverlap, r.TotalOverlap)
}

// CheckSingleActivation checks the merged activation logs of several nodes
// (clocks compared as they are: on one machine they agree; across machines
// their skew adds to every overlap). An incarnation with no stop record is
// taken to run until end (pass the time the logs were read; for a node that
// was killed, give its records a stop at the kill time). It reports every
// pair of incarnations of one actor that ran at the same time on
// different nodes.
func CheckSingleActivation(records []Activation, end time.Time) CheckReport {
	type key struct{ capability, kind, id string }
	type incKey struct {
		node peer.ID
		inc  uint64
	}
	spans := map[key]map[incKey]*Incarnation{}
	for _, r := range records {
		k := key{r.Capability, r.Kind, r.ID}
		m := spans[k]
		if m == nil {
			m = map[incKey]*Incarnation{}
			spans[k] = m
		}
		ik := incKey{r.Node, r.Incarnation}
		sp := m[ik]
		if sp == nil {
			sp = &Incarnation{Node: r.Node, Incarnation: r.Incarnation}
			m[ik] = sp
		}
		if r.Started {
			sp.Start = r.Time
		} else {
			sp.Stop = r.Time
		}
	}
	var rep CheckReport
	rep.Actors = len(spans)
	for k, m := range spans {
		list := make([]Incarnation, 0, len(m))
		for _, sp := range m {
			s := *sp
			if s.Stop.IsZero() {
				s.Stop = end
			}
			list = append(list, s)
		}
		rep.Incarnations += len(list)
		slices.SortFunc(list, func(a, b Incarnation) int {
			return cmp.Or(a.Start.Compare(b.Start), cmp.Compare(a.Incarnation, b.Incarnation))
		})
		for i := range list {
			for j := i + 1; j < len(list); j++ {
				a, b := list[i], list[j]
				if !b.Start.Before(a.Stop) {
					break // sorted by start: no later one overlaps a
				}
				if a.Node == b.Node {
					continue
				}
				stop := a.Stop
				if b.Stop.Before(stop) {
					stop = b.Stop
				}
				d := stop.Sub(b.Start)
				rep.OverlapCount++
				rep.TotalOverlap += d
				rep.MaxOverlap = max(rep.MaxOverlap, d)
				if len(rep.Overlaps) < 100 {
					rep.Overlaps = append(rep.Overlaps, Overlap{Capability: k.capability, Kind: k.kind, ID: k.id, A: a, B: b, Duration: d})
				}
			}
		}
	}
	return rep
}
