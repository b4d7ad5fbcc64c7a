package main

import (
	"bytes"
	"container/heap"
	"math/rand/v2"
	"slices"
	"time"

	kb "github.com/libp2p/go-libp2p-kbucket"
	pstore "github.com/libp2p/go-libp2p/p2p/host/peerstore"
)

// dhtSim runs kad-dht's query algorithm (go-libp2p-kad-dht v0.42.2
// query.go: runLookupWithFollowup, alpha requests in flight, the end when
// the beta closest peers heard of have answered, then a follow-up request
// to every one of the k closest not asked yet) over the realm's DHT
// servers, each with a real routing table (go-libp2p-kbucket's
// RoutingTable, filled as a refreshed table is: up to k peers of every
// common-prefix length with the node) and real answers (the server's
// NearestPeers(target, k+1) without itself and the requester, kad-dht
// dht.go closestPeersToQuery).
type dhtSim struct {
	r   *realmModel
	rng *rand.Rand
	met int
	rts map[int]*kb.RoutingTable
	// store holds the provider records: server -> target -> providers.
	store map[int]map[string][]int
	// recv counts the requests each node received.
	recv []int
}

func newDHTSim(r *realmModel, o options) *dhtSim {
	return &dhtSim{
		r: r, rng: rand.New(rand.NewPCG(o.seed, uint64(r.n)+7)), met: o.met,
		rts:   make(map[int]*kb.RoutingTable),
		store: make(map[int]map[string][]int),
		recv:  make([]int, r.n),
	}
}

var metrics = pstore.NewMetrics()

// prefixRange returns the range of d.r.servers (sorted by kad key) whose
// keys share their first bits bits with key.
func (d *dhtSim) prefixRange(key kb.ID, bits int) (int, int) {
	lo := slices.Clone([]byte(key))
	hi := slices.Clone([]byte(key))
	for b := bits; b < 8*len(lo); b++ {
		mask := byte(0x80) >> (b % 8)
		lo[b/8] &^= mask
		hi[b/8] |= mask
	}
	s := d.r.servers
	i, _ := slices.BinarySearchFunc(s, lo, func(n int, t []byte) int { return bytes.Compare(d.r.kad[n], t) })
	j, found := slices.BinarySearchFunc(s, hi, func(n int, t []byte) int { return bytes.Compare(d.r.kad[n], t) })
	if found {
		j++
	}
	return i, j
}

// flip returns key with bit b inverted.
func flip(key kb.ID, b int) kb.ID {
	out := slices.Clone([]byte(key))
	out[b/8] ^= byte(0x80) >> (b % 8)
	return out
}

// rt returns node i's routing table, built on first use. kad-dht's refresh
// (every rtRefresh) looks up a random key of every common-prefix length
// with the node up to its deepest bucket, and its table takes the first k
// peers it meets of each length: so a refreshed table holds k random
// servers of each length, or all of them where there are fewer. With
// -met M the table is a young node's instead: M random servers met and the
// k closest (its self-lookup at bootstrap).
func (d *dhtSim) rt(i int) *kb.RoutingTable {
	if t := d.rts[i]; t != nil {
		return t
	}
	self := d.r.kad[i]
	t, err := kb.NewRoutingTable(kBucket, self, time.Minute, metrics, time.Hour, nil)
	if err != nil {
		panic(err)
	}
	add := func(n int) {
		if n != i {
			_, _ = t.TryAddPeer(d.r.ids[n], true, true)
		}
	}
	s := d.r.servers
	if d.met > 0 {
		for k := 0; k < d.met && len(s) > 0; k++ {
			add(s[d.rng.IntN(len(s))])
		}
		for _, n := range d.trueClosest(self, kBucket+1) {
			add(n)
		}
	} else {
		for c := 0; c < 8*len(self); c++ {
			if a, b := d.prefixRange(self, c); b-a == 0 || (b-a == 1 && s[a] == i) {
				break // no other server shares c bits with i
			}
			a, b := d.prefixRange(flip(self, c), c+1)
			idx := make([]int, 0, b-a)
			for k := a; k < b; k++ {
				idx = append(idx, s[k])
			}
			d.rng.Shuffle(len(idx), func(x, y int) { idx[x], idx[y] = idx[y], idx[x] })
			for _, n := range idx[:min(len(idx), kBucket)] {
				add(n)
			}
		}
	}
	d.rts[i] = t
	return t
}

// trueClosest returns the count servers closest to target, by XOR.
func (d *dhtSim) trueClosest(target kb.ID, count int) []int {
	all := slices.Clone(d.r.servers)
	slices.SortFunc(all, func(a, b int) int {
		return bytes.Compare(kb.Xor(d.r.kad[a], target), kb.Xor(d.r.kad[b], target))
	})
	return all[:min(count, len(all))]
}

// queryMode is what a query is for.
type queryMode uint8

const (
	// closestPeers: GetClosestPeers, for a Provide or a refresh (FIND_NODE,
	// to the end and the follow-up).
	closestPeers queryMode = iota
	// firstProvider: Macula's Lookup with a limit (the API's, rpc's): the
	// query is cancelled once settleAnswers peers answered since the last
	// new provider, or LookupSettle after it (after the first answer, for
	// providers of the node's own store).
	firstProvider
	// allProviders: a Lookup without a limit (pubsub's interest lookups):
	// to the end and the follow-up.
	allProviders
)

type peerState uint8

const (
	heard peerState = iota
	waiting
	queried
)

type qpeer struct {
	node  int
	dist  []byte
	state peerState
	depth int // 1 for the seeds; one more than the peer that named it
}

type event struct {
	at   time.Duration
	node int
}

type events []event

func (e events) Len() int           { return len(e) }
func (e events) Less(i, j int) bool { return e[i].at < e[j].at }
func (e events) Swap(i, j int)      { e[i], e[j] = e[j], e[i] }
func (e *events) Push(x any)        { *e = append(*e, x.(event)) }
func (e *events) Pop() any {
	old := *e
	x := old[len(old)-1]
	*e = old[:len(old)-1]
	return x
}

// queryResult is what one query did.
type queryResult struct {
	msgs      int           // requests sent
	hops      int           // the depth of the first answer naming a provider; 0: local, or none
	found     bool          // a provider was found
	first     time.Duration // when the first provider was known
	done      time.Duration // when the query ended
	providers map[int]bool
	closest   []int // the k closest servers that answered (closestPeers)
}

// query runs one query from node from for target (a kad key; key is the
// string under which provider records are stored).
func (d *dhtSim) query(from int, target kb.ID, mode queryMode) queryResult {
	res := queryResult{providers: make(map[int]bool)}
	key := string(target)
	addProviders := func(at int) {
		for _, p := range d.store[at][key] {
			res.providers[p] = true
		}
	}
	now := time.Duration(0)
	stopAt := time.Duration(-1)
	answers := 0 // since the last new provider (firstProvider)
	if mode != closestPeers && d.r.nat[from] == natPublic {
		addProviders(from) // kad-dht asks its own provider store first
		if len(res.providers) > 0 {
			res.found = true // the bound starts at the first peer's answer
		}
	}
	peers := make(map[int]*qpeer)
	var order []*qpeer // sorted by distance when sorted is true
	sorted := true
	hear := func(n, depth int) {
		if n == from || peers[n] != nil {
			return
		}
		q := &qpeer{node: n, dist: kb.Xor(d.r.kad[n], target), depth: depth}
		peers[n] = q
		order = append(order, q)
		sorted = false
	}
	closest := func(count int, states ...peerState) []*qpeer {
		if !sorted {
			slices.SortFunc(order, func(a, b *qpeer) int { return bytes.Compare(a.dist, b.dist) })
			sorted = true
		}
		var out []*qpeer
		for _, q := range order {
			if len(out) == count {
				break
			}
			if slices.Contains(states, q.state) {
				out = append(out, q)
			}
		}
		return out
	}
	for _, p := range d.rt(from).NearestPeers(target, kBucket) {
		hear(d.r.index[p], 1)
	}
	var pending events
	send := func(q *qpeer) {
		q.state = waiting
		res.msgs++
		d.recv[q.node]++
		heap.Push(&pending, event{at: now + d.r.rtt(from, q.node), node: q.node})
	}
	answer := func(ev event) {
		q := peers[ev.node]
		q.state = queried
		if mode != closestPeers {
			before := len(res.providers)
			addProviders(ev.node)
			if len(res.providers) > before && !res.found {
				res.found, res.first, res.hops = true, now, q.depth
			}
			if mode == firstProvider && res.found {
				if len(res.providers) > before || stopAt < 0 {
					stopAt = now + lookupSettl
				}
				if len(res.providers) > before {
					answers = 0
				}
				if answers++; answers >= settleAnswers {
					stopAt = now
				}
			}
		}
		n := 0
		for _, p := range d.rt(ev.node).NearestPeers(target, kBucket+1) {
			c := d.r.index[p]
			if c == ev.node || c == from || n == kBucket {
				continue
			}
			n++
			hear(c, q.depth+1)
		}
	}
	stopped := func() bool { return stopAt >= 0 && (pending.Len() == 0 || pending[0].at > stopAt) }
	// The query proper.
	for {
		if stopped() {
			break
		}
		numWaiting := pending.Len()
		heardLeft := len(closest(1, heard)) > 0
		if !heardLeft && numWaiting == 0 {
			break // starvation
		}
		done := true
		for _, q := range closest(beta, heard, waiting, queried) {
			if q.state != queried {
				done = false
			}
		}
		if done && len(order) > 0 {
			break // the closest beta have answered
		}
		for _, q := range closest(alpha-numWaiting, heard) {
			send(q)
		}
		if pending.Len() == 0 {
			break
		}
		ev := heap.Pop(&pending).(event)
		now = ev.at
		answer(ev)
	}
	// Requests in flight are cancelled; the follow-up asks every one of
	// the k closest that has not answered (kad-dht asks those in flight
	// again).
	pending = pending[:0]
	if !stopped() {
		for _, q := range closest(kBucket, heard, waiting, queried) {
			if q.state != queried {
				send(q)
			}
		}
		for pending.Len() > 0 {
			if stopped() {
				break
			}
			ev := heap.Pop(&pending).(event)
			now = ev.at
			answer(ev)
		}
	}
	if stopAt >= 0 && now < stopAt {
		now = stopAt
	}
	res.done = now
	if mode == closestPeers {
		for _, q := range closest(kBucket, queried) {
			res.closest = append(res.closest, q.node)
		}
	}
	return res
}

// provide stores provider records of node from under target with the k
// closest servers its query found (kad-dht Provide: GetClosestPeers, then
// ADD_PROVIDER to each), and returns the query and the messages in all.
func (d *dhtSim) provide(from int, target kb.ID) (queryResult, int) {
	res := d.query(from, target, closestPeers)
	for _, s := range res.closest {
		m := d.store[s]
		if m == nil {
			m = make(map[string][]int)
			d.store[s] = m
		}
		m[string(target)] = append(m[string(target)], from)
		d.recv[s]++
	}
	return res, res.msgs + len(res.closest)
}

// refresh runs one routing-table refresh of node i (kad-dht rtrefresh:
// a lookup of its own key, then one of a random key at each tracked
// common-prefix length, up to maxCplForRefresh) and returns the requests.
func (d *dhtSim) refresh(i int) int {
	self := d.r.kad[i]
	msgs := d.query(i, self, closestPeers).msgs
	cpls := len(d.rt(i).GetTrackedCplsForRefresh())
	for c := 0; c < min(cpls, maxCplForRefresh+1); c++ {
		t := slices.Clone([]byte(self))
		for b := c + 1; b < 8*len(t); b++ {
			if d.rng.IntN(2) == 1 {
				t[b/8] ^= byte(0x80) >> (b % 8)
			}
		}
		msgs += d.query(i, flip(t, c), closestPeers).msgs
	}
	return msgs
}

// protectedPeers returns the peers of node i's routing table that kad-dht
// protects in the connection manager (common prefix under protectedBuckets).
func (d *dhtSim) protectedPeers(i int) []int {
	var out []int
	for _, p := range d.rt(i).ListPeers() {
		n := d.r.index[p]
		if kb.CommonPrefixLen(d.r.kad[i], d.r.kad[n]) < protectedBuckets {
			out = append(out, n)
		}
	}
	return out
}
