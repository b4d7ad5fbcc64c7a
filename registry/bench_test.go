package registry

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkLookup looks names up from GOMAXPROCS goroutines (b.RunParallel),
// over 100,000 registered names, and reports lookups per second.
func BenchmarkLookup(b *testing.B) {
	r := newRegistry(b, nil)
	p := spawn(b, r)
	const n = 100_000
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "user/" + strconv.Itoa(i)
		if err := p.Register(keys[i], []byte(`{"v":1}`)); err != nil {
			b.Fatal(err)
		}
	}
	var seed atomic.Uint64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seed.Add(7919)) % n
		for pb.Next() {
			if _, err := r.Lookup(keys[i]); err != nil {
				b.Error(err)
				return
			}
			i++
			if i == n {
				i = 0
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
}

// BenchmarkLookupHot looks one name up from every goroutine.
func BenchmarkLookupHot(b *testing.B) {
	r := newRegistry(b, nil)
	p := spawn(b, r)
	mustRegister(b, p, "hot/key", "")
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := r.Lookup("hot/key"); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
}

// BenchmarkRegister registers new names from one process, one goroutine:
// local writes per second (each also logged for replication, no peer).
func BenchmarkRegister(b *testing.B) {
	r := newRegistry(b, func(c *Config) { c.MaxLocalEntries = 1 << 30 })
	p := spawn(b, r)
	keys := make([]string, b.N)
	for i := range keys {
		keys[i] = "user/" + strconv.Itoa(i)
	}
	meta := []byte(`{"v":1}`)
	b.ResetTimer()
	for i := range b.N {
		if err := p.Register(keys[i], meta); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
}

// BenchmarkRegisterParallel registers new names from GOMAXPROCS
// goroutines, each with its own process.
func BenchmarkRegisterParallel(b *testing.B) {
	r := newRegistry(b, func(c *Config) { c.MaxLocalEntries = 1 << 30 })
	var g atomic.Int64
	meta := []byte(`{"v":1}`)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		p, err := r.Spawn(context.Background(), ProcessConfig{})
		if err != nil {
			b.Error(err)
			return
		}
		prefix := "w" + strconv.Itoa(int(g.Add(1))) + "/"
		for i := 0; pb.Next(); i++ {
			if err := p.Register(prefix+strconv.Itoa(i), meta); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
}

// BenchmarkJoinLeave joins and leaves a group: two writes per op.
func BenchmarkJoinLeave(b *testing.B) {
	r := newRegistry(b, nil)
	p := spawn(b, r)
	b.ResetTimer()
	for range b.N {
		if err := p.Join("room/1", nil); err != nil {
			b.Fatal(err)
		}
		if err := p.Leave("room/1"); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(2*float64(b.N)/b.Elapsed().Seconds(), "writes/s")
}

// BenchmarkMembers10k reads the members of a 10,000-member group: after a
// change (the snapshot is rebuilt and sorted) and unchanged (a copy of the
// cached snapshot).
func BenchmarkMembers10k(b *testing.B) {
	r := newRegistry(b, nil)
	const n = 10_000
	procs := make([]*Process, n)
	for i := range procs {
		procs[i] = spawn(b, r)
		mustJoin(b, procs[i], "big/group", "m")
	}
	b.Run("unchanged", func(b *testing.B) {
		for range b.N {
			ms, _ := r.Members("big/group")
			if len(ms) != n {
				b.Fatal(len(ms))
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reads/s")
	})
	b.Run("after-change", func(b *testing.B) {
		for i := range b.N {
			b.StopTimer()
			mustJoin(b, procs[i%n], "big/group", fmt.Sprint(i))
			b.StartTimer()
			ms, _ := r.Members("big/group")
			if len(ms) != n {
				b.Fatal(len(ms))
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reads/s")
	})
}

// BenchmarkReplicate100k writes 100,000 names on one node of three (linked
// over loopback QUIC) and measures until both others hold all of them.
func BenchmarkReplicate100k(b *testing.B) {
	const n = 100_000
	ns := newNodes(b, 3, func(c *Config) { c.MaxLocalEntries = 1 << 30; c.MaxOriginEntries = 1 << 30 })
	p := spawn(b, ns[0].r)
	meta := []byte(`{"v":1}`)
	count := func(r *Registry, _ string) int { return r.Stats().Names }
	var total float64
	b.ResetTimer()
	for i := range b.N {
		prefix := "it" + strconv.Itoa(i) + "/"
		keys := make([]string, n)
		for j := range keys {
			keys[j] = prefix + strconv.Itoa(j)
		}
		start := time.Now()
		for _, k := range keys {
			if err := p.Register(k, meta); err != nil {
				b.Fatal(err)
			}
		}
		written := time.Since(start)
		for count(ns[1].r, prefix) < (i+1)*n || count(ns[2].r, prefix) < (i+1)*n {
			time.Sleep(5 * time.Millisecond)
		}
		d := time.Since(start)
		total += d.Seconds()
		b.Logf("100k names: written in %v, on both other nodes after %v", written.Round(time.Millisecond), d.Round(time.Millisecond))
	}
	b.ReportMetric(total/float64(b.N)*1000, "ms/100k")
	b.ReportMetric(float64(n)*float64(b.N)/total, "entries/s")
}
