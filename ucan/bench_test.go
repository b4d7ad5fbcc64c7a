package ucan

import (
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
// chain of two (the HTTP API's per-request cost).
func BenchmarkValidateInvocation(b *testing.B) {
	r, chain := benchChain(b)
	v := r.validator(b, didSelf, func(c *Config) { c.Now = time.Now })
	const n = 2000
	invs := make([][]byte, n)
	for i := range invs {
		inv, err := Invoke(keyNode, InvokeOptions{Executor: didSelf, Command: Call, Resource: place, Proof: chain})
		if err != nil {
			b.Fatal(err)
		}
		invs[i] = inv
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == n {
			b.StopTimer()
			v = r.validator(b, didSelf, func(c *Config) { c.Now = time.Now })
			i = 0
			b.StartTimer()
		}
		if _, err := v.ValidateInvocation(ctxBg, invs[i], chain, Call, place); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
