package member

import (
	"cmp"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Overlay returns the links of the monitoring overlay among the live
// members ids, with rings rings: for each member, the members it links to
// (its successor and predecessor on each ring, without repeats, in that
// order), as each member's own view computes them when it holds ids as its
// live members. It does in O(N log N) for the whole realm what a node does
// for itself in one pass over its view (view.neighbours; TestOverlay checks
// that they agree), so that a model of a large realm (scripts/scalemodel)
// can build the overlay the code builds. ids must be distinct. (Two members
// at the same position of a ring, a 2^-64 chance per pair, may be ordered
// otherwise than neighbours orders them.)
func Overlay(ids []peer.ID, rings int) map[peer.ID][]peer.ID {
	out := make(map[peer.ID][]peer.ID, len(ids))
	if len(ids) < 2 {
		for _, id := range ids {
			out[id] = nil
		}
		return out
	}
	type pos struct {
		id  peer.ID
		key uint64
	}
	keys := make(map[peer.ID][]uint64, len(ids))
	for _, id := range ids {
		keys[id] = ringKeys(id, rings)
	}
	ring := make([]pos, len(ids))
	for r := 0; r < rings; r++ {
		for i, id := range ids {
			ring[i] = pos{id, keys[id][r]}
		}
		// Sorted by position, a member's successor is the next one and its
		// predecessor the one before, wrapping.
		slices.SortFunc(ring, func(a, b pos) int {
			if c := cmp.Compare(a.key, b.key); c != 0 {
				return c
			}
			return cmp.Compare(a.id, b.id)
		})
		n := len(ring)
		for i, p := range ring {
			succ := ring[(i+1)%n]
			pred := ring[(i+n-1)%n]
			for _, q := range []peer.ID{succ.id, pred.id} {
				if q != p.id && !slices.Contains(out[p.id], q) {
					out[p.id] = append(out[p.id], q)
				}
			}
		}
	}
	return out
}
