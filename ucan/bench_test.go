package ucan

import (
	"encoding/binary"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The cost of validation, for the RPC issue's budget (secure-realm
// throughput at least 90% of open-realm): a chain is validated once per
// connection, then every call pays Check alone.
//
//	go test -run '^$' -bench . -benchmem ./ucan/

func benchChain(b *testing.B) (*testRealm, Chain) {
	r := newTestRealm(b)
	toA := r.issue(b, r.auth, IssueOptions{Audience: didA, Command: All, Resource: "io.acme.>"})
	return r, r.issue(b, keyA, IssueOptions{Audience: didNode, Command: Call, Resource: orders, Proof: toA})
}

// BenchmarkValidateFirst: a chain of two delegations seen for the first
// time (decode, two signature checks, the rules).
func BenchmarkValidateFirst(b *testing.B) {
	r, chain := benchChain(b)
	b.ReportAllocs()
	for b.Loop() {
		v := r.validator(b, "", nil)
		if _, err := v.Validate(ctxBg, didNode, []Chain{chain}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkValidateCached: the same chain presented again (a new connection
// of the same peer): token and verdict caches.
func BenchmarkValidateCached(b *testing.B) {
	r, chain := benchChain(b)
	v := r.validator(b, "", nil)
	if _, err := v.Validate(ctxBg, didNode, []Chain{chain}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Validate(ctxBg, didNode, []Chain{chain}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheck: the per-call cost against a cached verdict.
func BenchmarkCheck(b *testing.B) {
	r, chain := benchChain(b)
	v := r.validator(b, "", func(c *Config) { c.Now = time.Now })
	vd, err := v.Validate(ctxBg, didNode, []Chain{chain})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := Check(vd, Call, place); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckParallel: Check from every core on one shared verdict.
func BenchmarkCheckParallel(b *testing.B) {
	r, chain := benchChain(b)
	v := r.validator(b, "", func(c *Config) { c.Now = time.Now })
	vd, err := v.Validate(ctxBg, didNode, []Chain{chain})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := Check(vd, Call, place); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkValidateInvocation: a bearer invocation with a cached proof
// chain of two (the HTTP API's per-request cost), its replay cache in
// memory only, and kept in a file (a node with a data directory: one
// write(2) more per invocation).
func BenchmarkValidateInvocation(b *testing.B) {
	b.Run("memory", func(b *testing.B) { benchInvocations(b, "") })
	b.Run("file", func(b *testing.B) { benchInvocations(b, b.TempDir()) })
}

func benchInvocations(b *testing.B, dir string) {
	r, chain := benchChain(b)
	open := func() *Validator {
		return r.validator(b, didSelf, func(c *Config) {
			c.Now = time.Now
			if dir != "" {
				c.ReplayFile = filepath.Join(dir, "replay")
				os.Remove(c.ReplayFile) // a fresh cache each round
			}
		})
	}
	v := open()
	const n = 2000
	invs := make([][]byte, n)
	for i := range invs {
		inv, err := Invoke(keyNode, InvokeOptions{Executor: didSelf, Command: Call, Resource: place, Proof: chain})
		if err != nil {
			b.Fatal(err)
		}
		invs[i] = inv
	}
	// The first write of a run rewrites the file durably: not per request.
	if _, err := v.ValidateInvocation(ctxBg, invs[0], chain, Call, place); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 1
	for b.Loop() {
		if i == n {
			b.StopTimer()
			v.Close()
			v = open()
			if _, err := v.ValidateInvocation(ctxBg, invs[0], chain, Call, place); err != nil {
				b.Fatal(err)
			}
			i = 1
			b.StartTimer()
		}
		if _, err := v.ValidateInvocation(ctxBg, invs[i], chain, Call, place); err != nil {
			b.Fatal(err)
		}
		i++
	}
	v.Close()
}

// BenchmarkReplayAdd: recording one used invocation, the part of
// ValidateInvocation that the replay file changes, in a steady state of
// about 10 000 live entries (the clock moves 1 µs per invocation, each
// kept 10 ms): a map and a heap in memory, plus a 50-byte append to the
// file and, now and then, its compaction.
func BenchmarkReplayAdd(b *testing.B) {
	for _, file := range []bool{false, true} {
		b.Run(map[bool]string{false: "memory", true: "file"}[file], func(b *testing.B) {
			r := newReplayCache(1 << 20)
			start := time.Now()
			if file {
				if err := openReplayFile(r, filepath.Join(b.TempDir(), "replay"), start, time.Minute, 5*time.Minute, slog.New(slog.DiscardHandler)); err != nil {
					b.Fatal(err)
				}
			}
			var id contentID
			b.ReportAllocs()
			i := uint64(0)
			for b.Loop() {
				i++
				now := start.Add(time.Duration(i) * time.Microsecond)
				binary.BigEndian.PutUint64(id[:], i)
				if err := r.add(id, now.Add(10*time.Millisecond), start, now); err != nil {
					b.Fatal(err)
				}
			}
			r.close(start)
		})
	}
}
