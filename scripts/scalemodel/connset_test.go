package main

import (
	"math/rand/v2"
	"testing"
)

// TestConnSet checks the connection table against a map under random
// inserts and deletes.
func TestConnSet(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var s connSet
	ref := make(map[int32]int32)
	for k := 0; k < 200000; k++ {
		p := int32(rng.IntN(3000))
		switch rng.IntN(3) {
		case 0, 1:
			_, had := ref[p]
			if s.add(p, int32(k)) == had {
				t.Fatalf("add %d: had %v", p, had)
			}
			if !had {
				ref[p] = int32(k)
			}
		default:
			delete(ref, p)
			s.del(p)
		}
		if s.len() != len(ref) {
			t.Fatalf("len %d, want %d", s.len(), len(ref))
		}
	}
	for p, at := range ref {
		if got, ok := s.get(p); !ok || got != at {
			t.Fatalf("get %d: %d %v, want %d", p, got, ok, at)
		}
	}
	n := 0
	s.each(func(p, opened int32) {
		n++
		if ref[p] != opened {
			t.Fatalf("each: %d opened %d, want %d", p, opened, ref[p])
		}
	})
	if n != len(ref) {
		t.Fatalf("each: %d, want %d", n, len(ref))
	}
}
