package actors

import (
	"context"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/macula-io/macula/rpc"
)

// Quick benchmarks of the local runtime; the full benchmark (concurrency
// 500, latency percentiles, two nodes) is bench/actors.

func BenchmarkCallExisting(b *testing.B) {
	s := standalone(b, nil)
	ids := make([]string, 10000)
	ctx := context.Background()
	for i := range ids {
		ids[i] = "c" + strconv.Itoa(i)
		_, _, _ = s.Call(ctx, Request{Capability: "counter", Kind: "counter", ID: ids[i]})
	}
	var n atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(n.Add(1)) * 7919
		for pb.Next() {
			i++
			if _, _, err := s.Call(ctx, Request{Capability: "counter", Kind: "counter", ID: ids[i%len(ids)]}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkActivate(b *testing.B) {
	s := standalone(b, func(c *Config) { c.LogSize = -1 })
	ctx := context.Background()
	var n atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := "a" + strconv.FormatInt(n.Add(1), 10)
			if _, _, err := s.Call(ctx, Request{Capability: "counter", Kind: "counter", ID: id}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkHotActor(b *testing.B) {
	s := standalone(b, nil)
	ctx := context.Background()
	b.SetParallelism(100)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := s.Call(ctx, Request{Capability: "counter", Kind: "counter", ID: "hot"}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkRemoteCall: node b calls echo actors owned by node a, beside
// rpc.CallPeer of an echo on the same stream (the floor).
func BenchmarkRemoteCall(b *testing.B) {
	c := newCluster(b)
	a := c.add("a", nil, "game")
	bn := c.add("b", nil)
	c.sync()
	c.waitView()
	must(b, a.sys.Register("game", "echo", func(string) Actor {
		return callFunc(func(_ context.Context, msg []byte) ([]byte, error) { return msg, nil })
	}))
	must(b, a.rpc.Handle("/bench/echo", func(_ context.Context, req *rpc.Request) ([]byte, error) { return req.Payload, nil }))
	ctx := context.Background()
	ids := make([]string, 1000)
	for i := range ids {
		ids[i] = "e" + strconv.Itoa(i)
		if _, _, err := bn.sys.Call(ctx, Request{Capability: "game", Kind: "echo", ID: ids[i]}); err != nil {
			b.Fatal(err)
		}
	}
	payload := make([]byte, 128)
	b.Run("actor", func(b *testing.B) {
		b.ReportAllocs()
		defer reportCPU(b)()
		b.SetParallelism(32)
		var n atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			i := int(n.Add(1)) * 7919
			for pb.Next() {
				i++
				if _, _, err := bn.sys.Call(ctx, Request{Capability: "game", Kind: "echo", ID: ids[i%len(ids)], Payload: payload}); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("rpc", func(b *testing.B) {
		b.ReportAllocs()
		defer reportCPU(b)()
		b.SetParallelism(32)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := bn.rpc.CallPeer(ctx, a.h.ID(), "/bench/echo", payload); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

// reportCPU reports the process's CPU time per operation (user and
// system): on a shared machine it varies less than ns/op.
func reportCPU(b *testing.B) func() {
	start := cpuTime()
	return func() { b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op") }
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
