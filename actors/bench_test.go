package actors

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
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
