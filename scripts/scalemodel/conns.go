package main

import (
	"math/rand/v2"
	"slices"
	"time"
)

// connInput is what each node keeps connections for.
type connInput struct {
	// keep[i]: peers node i keeps connected and protects in the connection
	// manager: its overlay links (member) and its relays (autorelay).
	keep [][]int
	// kadProt[i]: the routing-table peers of node i's first two buckets,
	// which kad-dht protects while they are connected (it does not keep
	// them connected).
	kadProt [][]int
	// inUse[i]: the peers node i calls or publishes to, connected again at
	// once when lost (the next call dials), unprotected.
	inUse [][]int
	// tags[i]: the connection manager's value of node i's peers: pubsub
	// tags a subscriber's link 20, a relay its reservations 10
	// (circuitv2 ReservationTagWeight); an RPC callee or a registry link
	// has no tag.
	tags []map[int32]int
	// dhtRate is the DHT requests a node sends per second; each goes to a
	// random server or, as often, to one of its kadProt peers (the first
	// hop of half the lookups), and dials it if not connected.
	dhtRate float64
	servers []int
	// registry: the registry dials every live member it is not connected
	// to (registry/sync.go dialMembers: at most maxDials in flight, a dial
	// a tick); false models a registry that links over a sparse overlay.
	registry bool
}

// connStats is what the connection manager made of it, per node, over the
// last minute of the simulation.
type connStats struct {
	mean, max    float64 // connections per node
	newPerSec    float64 // connections opened per node and second (each a registry session: hello and digests both ways)
	trimPerSec   float64 // connections the connection manager closed, per node and second
	overHighFrac float64 // fraction of (node, second) samples above the high water
	// refusedPerSec: dials per node and second that the resource manager
	// refused (a side at its inbound or outbound limit), over the whole run.
	refusedPerSec float64
}

// simulateConns runs the realm's connections second by second for dur:
// the dials above, and go-libp2p's connection manager (p2p/net/connmgr,
// BasicConnMgr.getConnsToClose) on every node every trimEvery while it
// holds more than highWater connections: it skips protected peers and
// those first seen within the grace period, and, if at least lowWater
// remain, closes the lowest valued of them until lowWater remain. Closing
// a connection closes it for both ends. Dials succeed within the second
// (the model's assumption: no failures, relayed dials included).
func simulateConns(r *realmModel, in connInput, dur time.Duration, seed uint64) connStats {
	rng := rand.New(rand.NewPCG(seed, uint64(r.n)+11))
	n := r.n
	conns := make([]connSet, n) // peer -> second first seen
	prot := make([]connSet, n)
	tag := make([]map[int32]int, n)
	phase := make([]int, n)
	for i := 0; i < n; i++ {
		for _, p := range in.keep[i] {
			prot[i].add(int32(p), 0)
		}
		for _, p := range in.kadProt[i] {
			prot[i].add(int32(p), 0)
		}
		tag[i] = in.tags[i]
		phase[i] = rng.IntN(int(trimEvery / time.Second))
	}
	dhtCredit := make([]float64, n)
	// The resource manager's system limits (node/limits.go maxConns):
	// half of them inbound, half outbound. A dial past them fails.
	const outFlag = 1 << 30
	out := make([]int, n)
	inb := make([]int, n)
	refused := 0
	connect := func(a, b int, now int32) bool {
		if a == b {
			return false
		}
		if _, ok := conns[a].get(int32(b)); ok {
			return false
		}
		if out[a] >= maxConns/2 || inb[b] >= maxConns/2 {
			refused++
			return false
		}
		conns[a].add(int32(b), now|outFlag)
		conns[b].add(int32(a), now)
		out[a]++
		inb[b]++
		return true
	}
	disconnect := func(a int, b int32, opened int32) {
		conns[a].del(b)
		conns[b].del(int32(a))
		if opened&outFlag != 0 {
			out[a]--
			inb[b]--
		} else {
			out[b]--
			inb[a]--
		}
	}
	secs := int(dur / time.Second)
	window := 60
	var st connStats
	var samples, over float64
	var opened, trimmed int
	type cand struct {
		p      int32
		value  int
		opened int32
		tie    uint32
	}
	var cands []cand
	// lost[i]: node i lost a connection since it last made its wanted
	// ones again (all of them at the start).
	lost := make([]bool, n)
	for i := range lost {
		lost[i] = true
	}
	for t := 0; t < secs; t++ {
		now := int32(t)
		measuring := t >= secs-window
		for i := 0; i < n; i++ {
			if lost[i] {
				lost[i] = false
				for _, p := range in.keep[i] {
					if connect(i, p, now) && measuring {
						opened++
					}
				}
				for _, p := range in.inUse[i] {
					if connect(i, p, now) && measuring {
						opened++
					}
				}
			}
			for dhtCredit[i] += in.dhtRate; dhtCredit[i] >= 1; dhtCredit[i]-- {
				var p int
				if len(in.kadProt[i]) > 0 && rng.IntN(2) == 0 {
					p = in.kadProt[i][rng.IntN(len(in.kadProt[i]))]
				} else {
					p = in.servers[rng.IntN(len(in.servers))]
				}
				if connect(i, p, now) && measuring {
					opened++
				}
			}
			if in.registry && conns[i].len() < n-1 {
				// maxDials dials of random unconnected members a second.
				for d, tries := 0, 0; d < maxDials && tries < 8*maxDials; tries++ {
					p := rng.IntN(n)
					if p != i {
						if connect(i, p, now) {
							d++
							if measuring {
								opened++
							}
						}
					}
				}
			}
		}
		for i := 0; i < n; i++ {
			if (t+phase[i])%int(trimEvery/time.Second) != 0 || conns[i].len() <= highWater {
				continue
			}
			cands = cands[:0]
			conns[i].each(func(p, seen int32) {
				if _, ok := prot[i].get(p); ok || int(now-seen&^outFlag) < int(grace/time.Second) {
					return
				}
				cands = append(cands, cand{p, tag[i][p], seen, rng.Uint32()})
			})
			if len(cands) < lowWater {
				continue // "too many are in the grace period"
			}
			slices.SortFunc(cands, func(a, b cand) int {
				if a.value != b.value {
					return a.value - b.value
				}
				return int(a.tie>>1) - int(b.tie>>1)
			})
			for _, c := range cands[:len(cands)-lowWater] {
				disconnect(i, c.p, c.opened)
				lost[i], lost[c.p] = true, true
				if measuring {
					trimmed++
				}
			}
		}
		if measuring {
			for i := 0; i < n; i++ {
				c := float64(conns[i].len())
				st.mean += c
				st.max = max(st.max, c)
				samples++
				if conns[i].len() > highWater {
					over++
				}
			}
		}
	}
	st.mean /= samples
	st.overHighFrac = over / samples
	// Each opening counts once for the pair: per node, twice that over n.
	st.newPerSec = 2 * float64(opened) / float64(window) / float64(n)
	st.trimPerSec = 2 * float64(trimmed) / float64(window) / float64(n)
	st.refusedPerSec = float64(refused) / float64(secs) / float64(n)
	return st
}
