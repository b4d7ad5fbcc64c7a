package ring

import (
	"cmp"
	"encoding/binary"
	"slices"

	"github.com/cespare/xxhash/v2"
)

// Shards is the number of shards of every capability.
const Shards = 4096

// capPercent is the load cap as a percentage of the mean: no node holds more
// than floor(Shards*capPercent/100/N) shards.
const capPercent = 105

// ShardOf returns the shard of an actor id: xxh64(id, seed 0) mod 4096. It is
// stable across processes, versions and languages.
func ShardOf(id string) int {
	return int(xxhash.Sum64String(id) % Shards)
}

// Placement is the owner of every shard of one capability, for one set of
// nodes. It is immutable and safe for concurrent use.
type Placement struct {
	capability string
	nodes      []string // sorted, distinct
	owner      [Shards]uint16
	load       []int // by index in nodes
}

// Place computes the placement of capability's shards on nodes (the nodes
// that serve it; order and duplicates do not matter). With no nodes, every
// shard is unowned. Node ids are opaque: the actors package passes libp2p
// peer ids.
func Place(capability string, nodes []string) *Placement {
	p := newPlacement(capability, nodes)
	n := len(p.nodes)
	if n == 0 {
		return p
	}
	scores := make([][]uint64, n)
	for i, id := range p.nodes {
		scores[i] = nodeScores(capability, id)
	}
	// Step 1: rendezvous. Ties between equal scores go to the smaller node
	// id, which is the smaller index since nodes are sorted.
	for s := range Shards {
		best, bi := scores[0][s], 0
		for i := 1; i < n; i++ {
			if v := scores[i][s]; v > best {
				best, bi = v, i
			}
		}
		p.owner[s] = uint16(bi)
		p.load[bi]++
	}
	p.balance(scores)
	return p
}

// maxLoad is the cap for n nodes; never below the ceiling of the mean, so
// that all shards fit.
func maxLoad(n int) int {
	c := Shards * capPercent / (100 * n)
	return max(c, (Shards+n-1)/n)
}

// balance is step 2 of Place: nodes over the cap shed their lowest-scoring
// shards, which go, in decreasing order of score, to the best node with room.
func (p *Placement) balance(scores [][]uint64) {
	n := len(p.nodes)
	c := maxLoad(n)
	var shed []int
	for i := range n {
		if p.load[i] <= c {
			continue
		}
		mine := make([]int, 0, p.load[i])
		for s := range Shards {
			if int(p.owner[s]) == i {
				mine = append(mine, s)
			}
		}
		sc := scores[i]
		slices.SortFunc(mine, func(a, b int) int {
			return cmp.Or(cmp.Compare(sc[a], sc[b]), cmp.Compare(a, b))
		})
		shed = append(shed, mine[:p.load[i]-c]...)
		p.load[i] = c
	}
	if len(shed) == 0 {
		return
	}
	type pair struct {
		score uint64
		shard uint16
		node  uint16
	}
	pairs := make([]pair, 0, len(shed)*(n-1))
	unplaced := make(map[int]bool, len(shed))
	for _, s := range shed {
		unplaced[s] = true
		for i := range n {
			if i != int(p.owner[s]) && p.load[i] < c {
				pairs = append(pairs, pair{scores[i][s], uint16(s), uint16(i)})
			}
		}
	}
	slices.SortFunc(pairs, func(a, b pair) int {
		return cmp.Or(cmp.Compare(b.score, a.score), cmp.Compare(a.node, b.node), cmp.Compare(a.shard, b.shard))
	})
	for _, pr := range pairs {
		if !unplaced[int(pr.shard)] || p.load[pr.node] >= c {
			continue
		}
		delete(unplaced, int(pr.shard))
		p.owner[pr.shard] = pr.node
		p.load[pr.node]++
		if len(unplaced) == 0 {
			return
		}
	}
	// Unreachable: the nodes under the cap have room for every shed shard,
	// since n*maxLoad(n) >= Shards.
	panic("ring: balancing left shards unplaced")
}

// nodeScores returns a node's score for every shard: its position in the
// node's permutation of the shards in the high 12 bits, a hash below it so
// that equal positions of two nodes rarely tie.
func nodeScores(capability, node string) []uint64 {
	seed := nodeSeed(capability, node)
	perm := make([]uint64, Shards)
	for i := range perm {
		perm[i] = uint64(i)
	}
	st := seed
	for i := Shards - 1; i > 0; i-- {
		// Lemire's multiply-shift instead of a division: uniform enough
		// (bias below 2^-20) and several times faster.
		j := int((splitmix(&st) >> 32) * uint64(i+1) >> 32)
		perm[i], perm[j] = perm[j], perm[i]
	}
	for s := range perm {
		perm[s] = perm[s]<<52 | mix(seed^uint64(s)*0x9e3779b97f4a7c15)>>12
	}
	return perm
}

// nodeSeed is xxh64 of capability, a zero byte, and the node id.
func nodeSeed(capability, node string) uint64 {
	d := xxhash.New()
	d.WriteString(capability)
	d.Write([]byte{0})
	d.WriteString(node)
	return d.Sum64()
}

// splitmix advances a splitmix64 state and returns the next output.
func splitmix(st *uint64) uint64 {
	*st += 0x9e3779b97f4a7c15
	return mix(*st)
}

// mix is splitmix64's finalizer.
func mix(z uint64) uint64 {
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// Modulo is the placement of the original (eigr/mesh): shard s on
// nodes[s mod N] of the sorted nodes. It is here for comparison only.
func Modulo(capability string, nodes []string) *Placement {
	p := newPlacement(capability, nodes)
	if len(p.nodes) == 0 {
		return p
	}
	for s := range Shards {
		i := s % len(p.nodes)
		p.owner[s] = uint16(i)
		p.load[i]++
	}
	return p
}

func newPlacement(capability string, nodes []string) *Placement {
	ns := slices.Clone(nodes)
	slices.Sort(ns)
	ns = slices.Compact(ns)
	return &Placement{capability: capability, nodes: ns, load: make([]int, len(ns))}
}

// Capability returns the capability the placement is for.
func (p *Placement) Capability() string { return p.capability }

// Nodes returns the nodes of the placement, sorted.
func (p *Placement) Nodes() []string { return slices.Clone(p.nodes) }

// Len returns the number of nodes.
func (p *Placement) Len() int { return len(p.nodes) }

// Owner returns the node that owns shard; false when there are no nodes or
// shard is out of range.
func (p *Placement) Owner(shard int) (string, bool) {
	if len(p.nodes) == 0 || shard < 0 || shard >= Shards {
		return "", false
	}
	return p.nodes[p.owner[shard]], true
}

// OwnerOf returns the node that owns the actor id's shard.
func (p *Placement) OwnerOf(id string) (string, bool) { return p.Owner(ShardOf(id)) }

// Load returns the number of shards node owns (0 for a node not in the
// placement).
func (p *Placement) Load(node string) int {
	if i, ok := slices.BinarySearch(p.nodes, node); ok {
		return p.load[i]
	}
	return 0
}

// ShardsOf returns the shards that node owns, in increasing order.
func (p *Placement) ShardsOf(node string) []int {
	i, ok := slices.BinarySearch(p.nodes, node)
	if !ok {
		return nil
	}
	out := make([]int, 0, p.load[i])
	for s := range Shards {
		if int(p.owner[s]) == i {
			out = append(out, s)
		}
	}
	return out
}

// MaxOverMean returns the largest load divided by the mean load (0 with no
// nodes).
func (p *Placement) MaxOverMean() float64 {
	if len(p.nodes) == 0 {
		return 0
	}
	return float64(slices.Max(p.load)) * float64(len(p.nodes)) / Shards
}

// Digest returns a hash of the placement (capability, nodes and every
// owner), so that two nodes can compare their views cheaply.
func (p *Placement) Digest() uint64 {
	d := xxhash.New()
	d.WriteString(p.capability)
	d.Write([]byte{0})
	var b [2]byte
	for _, n := range p.nodes {
		binary.BigEndian.PutUint16(b[:], uint16(len(n)))
		d.Write(b[:])
		d.WriteString(n)
	}
	for s := range Shards {
		if len(p.nodes) > 0 {
			binary.BigEndian.PutUint16(b[:], p.owner[s])
			d.Write(b[:])
		}
	}
	return d.Sum64()
}

// Changes returns the shards whose owner differs between a and b (a shard
// owned in one and unowned in the other counts), in increasing order.
func Changes(a, b *Placement) []int {
	var out []int
	for s := range Shards {
		oa, _ := a.Owner(s)
		ob, _ := b.Owner(s)
		if oa != ob {
			out = append(out, s)
		}
	}
	return out
}
