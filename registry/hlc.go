package registry

import (
	"fmt"
	"sync/atomic"
	"time"
)

// Stamp is a hybrid logical clock reading (Kulkarni et al., "Logical
// Physical Clocks", 2014): the high 48 bits are milliseconds since the Unix
// epoch, the low 16 bits a counter that orders readings within one
// millisecond and readings that follow a clock ahead of ours. Every node
// keeps one clock; a reading is taken for each registration and the clock
// follows every stamp it receives from another node, so a registration made
// after its node learned of another registration always has the greater
// stamp, whatever the nodes' wall clocks say. Only registrations made
// without knowledge of each other (two sides of a partition) are ordered by
// their wall clocks, within their drift.
type Stamp uint64

const logicalBits = 16

// Time returns the physical part of the stamp.
func (s Stamp) Time() time.Time { return time.UnixMilli(int64(s >> logicalBits)) }

// Logical returns the counter part of the stamp.
func (s Stamp) Logical() uint16 { return uint16(s) }

func (s Stamp) String() string {
	return fmt.Sprintf("%s+%d", s.Time().UTC().Format("2006-01-02T15:04:05.000Z"), s.Logical())
}

func physical(t time.Time) Stamp { return Stamp(uint64(t.UnixMilli()) << logicalBits) }

// clock is a hybrid logical clock. It is safe for concurrent use.
type clock struct {
	last     atomic.Uint64
	now      func() time.Time // time.Now, or a test's
	maxDrift time.Duration
	ignored  atomic.Uint64 // stamps too far ahead to follow
}

// read returns a stamp greater than every stamp read or observed before.
func (c *clock) read() Stamp {
	pt := uint64(physical(c.now()))
	for {
		last := c.last.Load()
		next := max(pt, last+1)
		if c.last.CompareAndSwap(last, next) {
			return Stamp(next)
		}
	}
}

// observe makes the clock follow a stamp received from another node, unless
// it is more than maxDrift ahead of the local wall clock.
func (c *clock) observe(s Stamp) {
	if uint64(s) > uint64(physical(c.now().Add(c.maxDrift))) {
		c.ignored.Add(1)
		return
	}
	for {
		last := c.last.Load()
		if uint64(s) <= last || c.last.CompareAndSwap(last, uint64(s)) {
			return
		}
	}
}
