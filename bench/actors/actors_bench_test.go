// Package actorsbench measures the actor system (issue 14, "Benchmark")
// against the goals set from the Elixir original (eigr/mesh 0.1.4: 16,428
// activations/s, 30,558 calls/s, 11,904 calls/s to one hot actor, about
// 11 KB per actor), in one process and one run:
//
//	cd bench && go test -run '^$' -bench Actors -benchtime 1x -timeout 30m ./actors/
//
// Cases on one node (a standalone actors.System, no network):
//
//   - activate-500: 500 callers, each call to a new id (the actor starts,
//     handles the call, stays idle);
//   - call-500: 500 callers calling 100,000 started actors at random;
//   - hot-200: 200 callers calling one actor;
//   - idle memory: the heap of 1,000,000 idle actors (a counter each), per
//     actor (-idle to change the number).
//
// Across two nodes on loopback (node a serves the capability, node b calls;
// real libp2p hosts, rpc streams and membership): actor calls of a 128-byte
// echo beside rpc.Call of a 128-byte echo procedure in the same run, with
// 1, 64 and 500 callers (-callers), in -rounds (3) rounds of alternating
// order, the median of each.
//
// Every case warms up for -warmup (0.5s) then measures for -dur (3s). It
// prints a table with calls/s, p50, p95, p99, CPU time per call and the
// ratios to the goals, and the load average (the machine is shared).
package actorsbench

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/macula-io/macula/actors"
)

var (
	flagDur     = flag.Duration("dur", 3*time.Second, "measured duration of each case")
	flagWarmup  = flag.Duration("warmup", 500*time.Millisecond, "warm-up before each case")
	flagIdle    = flag.Int("idle", 1_000_000, "idle actors for the memory case")
	flagCallers = flag.String("callers", "1,64,500", "concurrent callers of the two-node cases")
	flagRounds  = flag.Int("rounds", 3, "rounds of each two-node case, in alternating order; the median counts")
)

const payloadSize = 128

// Goals: 10x the original's published rates, 1 KB per idle actor.
const (
	goalActivations = 164_280
	goalCalls       = 305_580
	goalHot         = 119_040
	goalBytes       = 1024
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// counter counts its calls; echo answers its message.
type counter struct{ n uint64 }

func (c *counter) HandleCall(context.Context, []byte) ([]byte, error) {
	c.n++
	return nil, nil
}
func (c *counter) HandleCast(context.Context, []byte) { c.n++ }

type echo struct{}

func (echo) HandleCall(_ context.Context, msg []byte) ([]byte, error) { return msg, nil }
func (echo) HandleCast(context.Context, []byte)                       {}

type result struct {
	name    string
	callers int
	calls   int
	errs    int64
	elapsed time.Duration
	p50     time.Duration
	p95     time.Duration
	p99     time.Duration
	cpu     time.Duration
	goal    float64 // calls/s wanted; 0 none
	ref     string  // the case to compare with (same run), if any
}

func (r result) rps() float64 { return float64(r.calls) / r.elapsed.Seconds() }

// measure runs callers goroutines calling fn back to back; only calls
// started in the measured window count.
func measure(name string, callers int, fn func(caller, seq int) error) result {
	warm, dur := *flagWarmup, *flagDur
	cpuBefore := cpuTime()
	var total atomic.Int64
	start := time.Now()
	mStart := start.Add(warm)
	end := mStart.Add(dur)
	lat := make([][]time.Duration, callers)
	var errs atomic.Int64
	var wg sync.WaitGroup
	for i := range callers {
		lat[i] = make([]time.Duration, 0, 1<<12)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; ; k++ {
				t0 := time.Now()
				if !t0.Before(end) {
					return
				}
				err := fn(i, k)
				d := time.Since(t0)
				total.Add(1)
				if err != nil {
					if errs.Add(1) == 1 {
						fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
					}
					continue
				}
				if !t0.Before(mStart) {
					lat[i] = append(lat[i], d)
				}
			}
		}()
	}
	wg.Wait()
	cpu := cpuTime() - cpuBefore
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	q := func(p float64) time.Duration {
		if len(all) == 0 {
			return 0
		}
		return all[min(len(all)-1, int(p*float64(len(all))))]
	}
	return result{name: name, callers: callers, calls: len(all), errs: errs.Load(), elapsed: dur,
		p50: q(0.5), p95: q(0.95), p99: q(0.99), cpu: cpu / time.Duration(max(total.Load(), 1))}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func standalone(b *testing.B) *actors.System {
	s, err := actors.New(actors.Config{Logger: quiet()}, nil, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Register("bench", "counter", func(string) actors.Actor { return &counter{} }); err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkActors runs every case once, whatever b.N, and prints the table.
func BenchmarkActors(b *testing.B) {
	var rs []result
	mem := 0.0
	b.Run("one-node", func(b *testing.B) {
		rs = append(rs, oneNode(b)...)
		mem = idleMemory(b)
	})
	b.Run("two-nodes", func(b *testing.B) {
		rs = append(rs, twoNodes(b)...)
	})
	printTable(os.Stdout, rs, mem)
}

func oneNode(b *testing.B) []result {
	var rs []result
	ctx := context.Background()
	{
		s := standalone(b)
		var next atomic.Int64
		r := measure("activate", 500, func(int, int) error {
			id := "a" + strconv.FormatInt(next.Add(1), 10)
			_, _, err := s.Call(ctx, actors.Request{Capability: "bench", Kind: "counter", ID: id})
			return err
		})
		r.goal = goalActivations
		rs = append(rs, r)
		s.Close()
	}
	{
		s := standalone(b)
		ids := make([]string, 100_000)
		for i := range ids {
			ids[i] = "c" + strconv.Itoa(i)
			if _, _, err := s.Call(ctx, actors.Request{Capability: "bench", Kind: "counter", ID: ids[i]}); err != nil {
				b.Fatal(err)
			}
		}
		r := measure("call", 500, func(caller, seq int) error {
			id := ids[(caller*7919+seq*104729)%len(ids)]
			_, _, err := s.Call(ctx, actors.Request{Capability: "bench", Kind: "counter", ID: id})
			return err
		})
		r.goal = goalCalls
		rs = append(rs, r)
		r = measure("hot", 200, func(int, int) error {
			_, _, err := s.Call(ctx, actors.Request{Capability: "bench", Kind: "counter", ID: "hot"})
			return err
		})
		r.goal = goalHot
		rs = append(rs, r)
		s.Close()
	}
	return rs
}

// idleMemory returns the heap per idle actor, in bytes.
func idleMemory(b *testing.B) float64 {
	s := standalone(b)
	defer s.Close()
	ctx := context.Background()
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := ms.HeapAlloc
	n := *flagIdle
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				if _, _, err := s.Call(ctx, actors.Request{Capability: "bench", Kind: "counter", ID: "player_" + strconv.Itoa(i)}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	if st := s.Stats(); st.Active != int64(n) {
		b.Fatalf("%d active actors, want %d", st.Active, n)
	}
	goroutines := runtime.NumGoroutine()
	per := float64(int64(ms.HeapAlloc)-int64(before)) / float64(n)
	fmt.Printf("idle memory: %d actors, %.0f bytes each (heap), %d goroutines in the process\n", n, per, goroutines)
	return per
}

func callerCounts(b *testing.B) []int {
	var out []int
	for _, s := range strings.Split(*flagCallers, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			b.Fatalf("-callers %q", *flagCallers)
		}
		out = append(out, n)
	}
	return out
}

func printTable(w io.Writer, rs []result, mem float64) {
	load := ""
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	fmt.Fprintf(w, "\nActors, %v per case after %v warm-up, GOMAXPROCS=%d, load average %s\n", *flagDur, *flagWarmup, runtime.GOMAXPROCS(0), load)
	fmt.Fprintf(w, "%-16s %7s %9s %9s %8s %8s %8s %9s %6s  %s\n", "case", "callers", "calls", "calls/s", "p50", "p95", "p99", "cpu/call", "errors", "vs")
	for _, r := range rs {
		vs := ""
		if r.goal > 0 {
			vs = fmt.Sprintf("%.2fx the goal (%.0f/s)", r.rps()/r.goal, r.goal)
		}
		if r.ref != "" {
			for _, o := range rs {
				if o.name == r.ref && o.callers == r.callers {
					vs = fmt.Sprintf("%.2fx %s", r.rps()/o.rps(), o.name)
				}
			}
		}
		fmt.Fprintf(w, "%-16s %7d %9d %9.0f %8s %8s %8s %9s %6d  %s\n", r.name, r.callers, r.calls, r.rps(), us(r.p50), us(r.p95), us(r.p99), us1(r.cpu), r.errs, vs)
	}
	if mem > 0 {
		fmt.Fprintf(w, "idle actor: %.0f bytes (goal %d: %.2fx)\n", mem, goalBytes, mem/goalBytes)
	}
}

func us(d time.Duration) string  { return fmt.Sprintf("%.0fus", float64(d.Nanoseconds())/1e3) }
func us1(d time.Duration) string { return fmt.Sprintf("%.1fus", float64(d.Nanoseconds())/1e3) }
