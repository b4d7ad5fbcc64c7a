package member

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/macula-io/macula/internal/testnet"
)

// cpuTime is the process's user and system CPU time so far.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkIdleRealm measures what an idle realm costs with the default
// timers: n members in one process, joined through one of them, measured
// once the join is over, beside the same n hosts connected the same way
// without membership. It reports, per member, the CPU used (as a share of
// one core) and the frames sent per second, and the links kept. Run with
// -benchtime=1x (each iteration idles for 10 s):
//
//	go test ./member -run '^$' -bench IdleRealm -benchtime 1x
func BenchmarkIdleRealm(b *testing.B) {
	const window = 10 * time.Second
	defaults := func(c *Config) {
		def := DefaultConfig(c.Realm, c.Name)
		c.ProbeInterval, c.ProbeTimeout, c.SuspicionTimeout = def.ProbeInterval, def.ProbeTimeout, def.SuspicionTimeout
		c.LinkLinger, c.ReconnectInterval = def.LinkLinger, def.ReconnectInterval
	}
	for _, n := range []int{10, 50} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			// The hosts alone, for the baseline.
			hosts := make([]*testMember, n)
			for i := range hosts {
				hosts[i] = &testMember{h: testnet.Host(b)}
				if i > 0 {
					connect(b, hosts[i].h, hosts[0].h)
				}
			}
			time.Sleep(2 * time.Second)
			c0 := cpuTime(b)
			time.Sleep(window)
			base := cpuTime(b) - c0
			for _, h := range hosts {
				h.h.Close()
			}

			ms := star(b, n, defaults)
			eventually(b, 60*time.Second, "links trimmed to the overlay", func() bool {
				for _, x := range ms {
					if st := x.m.Stats(); st.Links > 2*DefaultRings || st.Links < st.Neighbours {
						return false
					}
				}
				return true
			})
			var frames0 uint64
			for _, x := range ms {
				frames0 += x.m.Stats().FramesOut
			}
			b.ResetTimer()
			c0 = cpuTime(b)
			start := time.Now()
			for i := 0; i < b.N; i++ {
				time.Sleep(window)
			}
			used := cpuTime(b) - c0
			elapsed := time.Since(start)
			b.StopTimer()
			var frames uint64
			links := 0
			for _, x := range ms {
				st := x.m.Stats()
				frames += st.FramesOut
				links += st.Links
			}
			baseShare := float64(base) / float64(window) / float64(n)
			share := float64(used)/float64(elapsed)/float64(n) - baseShare
			b.ReportMetric(100*share, "%core/member")
			b.ReportMetric(100*baseShare, "%core/host")
			b.ReportMetric(float64(frames-frames0)/elapsed.Seconds()/float64(n), "frames/s/member")
			b.ReportMetric(float64(links)/float64(n), "links/member")
		})
	}
}
