package main

import (
	"container/heap"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	kb "github.com/libp2p/go-libp2p-kbucket"

	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"

	"github.com/macula-io/macula/dht"
	"github.com/macula-io/macula/member"
)

const modelRealm = "io.acme.orders"

// result holds the figures of one realm size.
type result struct {
	N, Servers, Cone, Sym int

	// Membership overlay (member.Overlay).
	OverlayMean, OverlayMax float64
	HeartbeatsPerSec        float64 // frames a node sends per second, idle
	FloodHops               int     // hops along the first arrivals until every node has the news (the worst of the sources tried)
	OverlayDiameter         int     // fewest hops from a source to the farthest node (the worst of the sources tried)
	FloodTime               time.Duration
	FloodMsgs               int // frames realm-wide for one piece of news
	CrashKnown              time.Duration
	JoinViewBytes           int

	// DHT.
	RTMean                     float64 // peers in a server's routing table
	DHTProtected               float64 // of them, protected by kad-dht (first two buckets)
	Lookups                    int
	FoundFirst                 float64 // fraction of first-provider lookups that found it
	HopsMean                   float64
	HopsP95, HopsMax           int
	MsgsFirstMean              float64
	MsgsFirstP95               int
	TimeFirstP50, TimeFirstP95 time.Duration
	FoundAll                   float64 // full lookups that found the provider
	MsgsAllMean                float64
	TimeAllP50                 time.Duration
	ProvideMsgs                float64
	ClosestRight               float64 // fraction of the true k closest that a Provide's query found
	RefreshMsgs                float64 // requests of one routing-table refresh
	RefreshPerSec              float64 // a node's refresh requests per second (one refresh per rtRefresh)
	ReprovidePerSec            float64 // a node's reprovide messages per second (keysPerNode keys)
	ServerInPerSec             float64 // requests a DHT server answers per second, idle
	PingEvictPerSec            float64 // upper bound: every routing-table peer pinged once per threshold
	DHTLoadPerSec              float64 // DHT requests a node sends per second under the load
	ServerLoadPerSec           float64 // requests a server answers per second under the load

	// Pub/sub.
	Subs, Pubs, PubsRealm int
	SubProvideMsgs        float64
	PubLookupMsgs         float64
	PubLookupTime         time.Duration
	PubFoundAll           float64 // fraction of publisher lookups that found every subscriber
	NewSubKnown           time.Duration
	HotShare              float64 // fraction of a key's full lookups that reach its busiest server
	HotReqPerSec          float64 // requests a second at the busiest server of the realm-level key
	AnswerBytes           int     // one GET_PROVIDERS answer naming every subscriber

	// Registry.
	DigestBytes         int
	RegIdleBytesPerSec  float64 // if the full mesh held: every link's digest every 30 s
	RegBusyBytesPerSec  float64 // the same once anything changes in the realm every second: every link, every tick
	RegDeltaFramesPerWr int     // frames one write costs its node

	// Connections per node.
	ConnToday, ConnSparse connStats
	ConnIdle              connStats // registry over a sparse overlay, idle
	SessionBytesPerSec    float64   // digests of new registry sessions (one each way), today
	LivenessPerSec        float64   // liveness pings sent per node and second, today
	KeepAlivePerSec       float64   // QUIC keep-alives, upper bound, today

	// Relays.
	Private, ResWanted, ResCapacity, RelaysNeeded    int
	NoRelay                                          int // private nodes left without a reservation: nobody can dial them
	SymOverlayPairs, SymInUsePairs, SymRegistryPairs int
	CircuitsPerRelaySparse, CircuitsPerRelayToday    float64
	SymPeersMax                                      int // most symmetric peers one symmetric node needs relayed (today)
	RelayBytesPerSec                                 float64
	PunchCircuitsPerSec                              float64 // new private-private connections a second, realm-wide, today
}

// keysPerNode is what a node provides in the model: procedures and
// interest keys.
const keysPerNode = 10

// runModel computes the figures for a realm of n nodes.
func runModel(n int, o options) (*result, error) {
	r, err := newRealm(n, o)
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(o.seed, uint64(n)+3))
	res := &result{N: n, Servers: len(r.servers), Cone: r.count(natCone), Sym: r.count(natSymmetric)}

	// --- membership -------------------------------------------------------
	ov := member.Overlay(r.ids, rings)
	links := make([][]int, n)
	for i, id := range r.ids {
		for _, p := range ov[id] {
			links[i] = append(links[i], r.index[p])
		}
	}
	// A link is kept when either end wants it; on rings both ends do.
	adj := make([]map[int]bool, n)
	for i := range adj {
		adj[i] = make(map[int]bool)
	}
	for i, l := range links {
		for _, p := range l {
			adj[i][p], adj[p][i] = true, true
		}
	}
	for i := range adj {
		d := float64(len(adj[i]))
		res.OverlayMean += d / float64(n)
		res.OverlayMax = max(res.OverlayMax, d)
	}
	// One heartbeat per link and ProbeInterval from the end with the lower
	// ID over a direct connection, both ends over a relay (two nodes behind
	// symmetric NATs: their packets are the relay's).
	var beats float64
	for i := range adj {
		for p := range adj[i] {
			if i < p {
				beats++
				if r.nat[i] == natSymmetric && r.nat[p] == natSymmetric {
					beats++
				}
			}
		}
	}
	res.HeartbeatsPerSec = beats / float64(n) / probeInterval.Seconds()
	for k := 0; k < 5; k++ {
		hops, at, msgs := flood(r, adj, rng.IntN(n))
		res.FloodHops = max(res.FloodHops, hops)
		res.FloodTime = max(res.FloodTime, at)
		res.FloodMsgs = msgs
		res.OverlayDiameter = max(res.OverlayDiameter, eccentricity(adj, rng.IntN(n)))
	}
	res.CrashKnown = probeTimeout + res.FloodTime
	res.JoinViewBytes = n * memberRecordBytes

	// --- DHT ----------------------------------------------------------------
	d := newDHTSim(r, o)
	var hops, msgsFirst []int
	var tFirst, tAll []time.Duration
	var found, foundAll, msgsAll, provideMsgs, closestRight float64
	for l := 0; l < o.lookups; l++ {
		prov := rng.IntN(n)
		key := dht.KeyCID(modelRealm, fmt.Sprintf("rpc:%s.proc%d", modelRealm, l))
		target := kb.ConvertKey(string(key.Hash()))
		pr, pm := d.provide(prov, target)
		provideMsgs += float64(pm)
		truth := d.trueClosest(target, kBucket)
		hit := 0
		for _, s := range pr.closest {
			if slices.Contains(truth, s) {
				hit++
			}
		}
		closestRight += float64(hit) / float64(len(truth))
		from := rng.IntN(n)
		for from == prov {
			from = rng.IntN(n)
		}
		q := d.query(from, target, firstProvider)
		if q.found && q.providers[prov] {
			found++
			hops = append(hops, q.hops)
			tFirst = append(tFirst, q.first)
		}
		msgsFirst = append(msgsFirst, q.msgs)
		qa := d.query(from, target, allProviders)
		if qa.providers[prov] {
			foundAll++
		}
		msgsAll += float64(qa.msgs)
		tAll = append(tAll, qa.done)
	}
	L := float64(o.lookups)
	res.Lookups = o.lookups
	res.FoundFirst, res.FoundAll = found/L, foundAll/L
	res.HopsMean = meanInt(hops)
	res.HopsP95, res.HopsMax = pctInt(hops, 0.95), pctInt(hops, 1)
	res.MsgsFirstMean, res.MsgsFirstP95 = meanInt(msgsFirst), pctInt(msgsFirst, 0.95)
	res.TimeFirstP50, res.TimeFirstP95 = pctDur(tFirst, 0.5), pctDur(tFirst, 0.95)
	res.MsgsAllMean = msgsAll / L
	res.TimeAllP50 = pctDur(tAll, 0.5)
	res.ProvideMsgs = provideMsgs / L
	res.ClosestRight = closestRight / L

	sample := min(20, len(r.servers))
	var rtSize, refresh float64
	for k := 0; k < sample; k++ {
		s := r.servers[rng.IntN(len(r.servers))]
		rtSize += float64(d.rt(s).Size())
		refresh += float64(d.refresh(s))
	}
	res.RTMean = rtSize / float64(sample)
	res.RefreshMsgs = refresh / float64(sample)
	res.RefreshPerSec = res.RefreshMsgs / rtRefresh.Seconds()
	res.ReprovidePerSec = keysPerNode * res.ProvideMsgs / reprovide.Seconds()
	// Every node (servers and clients) refreshes and reprovides; only the
	// servers answer.
	res.ServerInPerSec = float64(n) * (res.RefreshPerSec + res.ReprovidePerSec) / float64(len(r.servers))
	// kad-dht dht.go: maxLastSuccessfulOutboundThreshold = log(1/k) /
	// log(1-alpha/k) * RefreshInterval (43 min with the defaults).
	thr := math.Log(1/float64(kBucket)) / math.Log(1-float64(alpha)/float64(kBucket)) * rtRefresh.Seconds()
	res.PingEvictPerSec = res.RTMean / thr
	protected := make([][]int, n)
	var protSum float64
	for i := 0; i < n; i++ {
		if r.nat[i] == natPublic || n <= 2000 {
			protected[i] = d.protectedPeers(i)
		} else {
			// Clients' tables are built only where a lookup needed them;
			// a client protects as many as a server (its first two
			// buckets hold k servers each in any realm of 2k servers).
			protected[i] = d.protectedPeers(r.servers[i%len(r.servers)])
		}
		protSum += float64(len(protected[i]))
	}
	res.DHTProtected = protSum / float64(n)

	// --- pub/sub ------------------------------------------------------------
	res.Subs = max(1, int(o.subs*float64(n)))
	res.Pubs = max(1, int(o.pubs*float64(n)))
	res.PubsRealm = res.Pubs
	topicKey := dht.KeyCID(modelRealm, "pubsub:"+modelRealm+".placed")
	tt := kb.ConvertKey(string(topicKey.Hash()))
	subs := rng.Perm(n)[:res.Subs]
	for _, s := range subs {
		_, pm := d.provide(s, tt)
		res.SubProvideMsgs += float64(pm) / float64(len(subs))
	}
	before := slices.Clone(d.recv)
	var pubTimes []time.Duration
	for k := 0; k < res.Pubs; k++ {
		q := d.query(rng.IntN(n), tt, allProviders)
		res.PubLookupMsgs += float64(q.msgs) / float64(res.Pubs)
		pubTimes = append(pubTimes, q.done)
		all := true
		for _, s := range subs {
			if !q.providers[s] {
				all = false
			}
		}
		if all {
			res.PubFoundAll += 1 / float64(res.Pubs)
		}
	}
	hot := 0
	for i := range d.recv {
		hot = max(hot, d.recv[i]-before[i])
	}
	res.HotShare = float64(hot) / float64(res.Pubs)
	res.PubLookupTime = pctDur(pubTimes, 0.5)
	// A subscriber the publisher is not connected to: the next refresh
	// (at most InterestRefresh), the lookup, a dial (QUIC, realm
	// handshake, identify: about 3 round trips) and the interest set.
	res.NewSubKnown = interestRefresh + res.PubLookupTime + 7*r.oneWay[0][len(r.oneWay)-1]
	// Every publisher of every topic of the realm looks up the realm-level
	// key "pubsub:<realm>" (a topic's first prefix) every InterestRefresh:
	// the same k servers answer them all.
	res.HotReqPerSec = float64(res.PubsRealm) / interestRefresh.Seconds() * res.HotShare
	res.AnswerBytes = res.Subs * (len(r.ids[0]) + peerAddrs)

	// --- registry -----------------------------------------------------------
	res.DigestBytes = digestBytes(n, len(r.ids[0]))
	res.RegIdleBytesPerSec = float64(n-1) * float64(res.DigestBytes) / (quietTicks * antiEntropy.Seconds())
	res.RegBusyBytesPerSec = float64(n-1) * float64(res.DigestBytes) / antiEntropy.Seconds()
	res.RegDeltaFramesPerWr = n - 1

	// --- connections ----------------------------------------------------------
	relays := assignRelays(r, o)
	in := connInput{keep: make([][]int, n), kadProt: protected, inUse: make([][]int, n), tags: make([]map[int32]int, n),
		servers: r.servers}
	for i := 0; i < n; i++ {
		in.tags[i] = make(map[int32]int)
	}
	for i := 0; i < n; i++ {
		in.keep[i] = append(slices.Clone(links[i]), relays[i]...)
		for _, x := range relays[i] {
			in.tags[x][int32(i)] = relayv2.ReservationTagWeight
		}
		if r.nat[i] != natPublic && len(relays[i]) == 0 {
			res.NoRelay++
		}
		for len(in.inUse[i]) < min(o.inUse, n-1) {
			if p := rng.IntN(n); p != i && !slices.Contains(in.inUse[i], p) {
				if len(in.inUse[i])%2 == 0 {
					in.tags[i][int32(p)] = pubsubTagValue // a subscriber of this node's topics
				}
				in.inUse[i] = append(in.inUse[i], p)
			}
		}
	}
	// DHT requests under load: a routing-table refresh every rtRefresh,
	// and rpc's lookup of each procedure in use every ProviderTTL (one
	// procedure per RPC callee, half the peers in use).
	res.DHTLoadPerSec = res.RefreshPerSec + float64(o.inUse/2)/providerTTL.Seconds()*res.MsgsFirstMean
	res.ServerLoadPerSec = float64(n) * res.DHTLoadPerSec / float64(len(r.servers))
	in.dhtRate = res.DHTLoadPerSec
	in.registry = true
	res.ConnToday = simulateConns(r, in, o.simTime, o.seed)
	in.registry = false
	res.ConnSparse = simulateConns(r, in, o.simTime, o.seed)
	// Idle: no calls, no publishing; the DHT refreshes its table.
	idle := in
	idle.inUse = make([][]int, n)
	idle.dhtRate = res.RefreshPerSec
	res.ConnIdle = simulateConns(r, idle, o.simTime, o.seed)
	res.SessionBytesPerSec = res.ConnToday.newPerSec * 2 * float64(res.DigestBytes)
	res.LivenessPerSec = float64(o.inUse) / livenessActive.Seconds()
	res.KeepAlivePerSec = res.ConnToday.mean / quicKeepAlive.Seconds()

	// --- relays ---------------------------------------------------------------
	res.Private = n - res.Servers
	res.ResWanted = numRelays * res.Private
	res.ResCapacity = relayRes.MaxReservations * o.relays
	res.RelaysNeeded = (res.ResWanted + relayRes.MaxReservations - 1) / relayRes.MaxReservations
	sym := func(i int) bool { return r.nat[i] == natSymmetric }
	for i := range adj {
		for p := range adj[i] {
			if i < p && sym(i) && sym(p) {
				res.SymOverlayPairs++
			}
		}
	}
	seen := make(map[[2]int]bool)
	var symCalls float64
	for i := range in.inUse {
		for _, p := range in.inUse[i] {
			if sym(i) && sym(p) {
				seen[[2]int{min(i, p), max(i, p)}] = true
				symCalls += 1 / float64(len(in.inUse[i]))
			}
		}
	}
	res.SymInUsePairs = len(seen)
	res.SymRegistryPairs = res.Sym * (res.Sym - 1) / 2
	res.CircuitsPerRelaySparse = float64(res.SymOverlayPairs+res.SymInUsePairs) / float64(o.relays)
	res.CircuitsPerRelayToday = float64(res.SymRegistryPairs+res.SymInUsePairs) / float64(o.relays)
	res.SymPeersMax = max(0, res.Sym-1)
	// Each symmetric node's calls to symmetric peers cross a relay: in
	// and out of it.
	res.RelayBytesPerSec = symCalls * o.calls * o.callKB * 1024 * 2 / float64(o.relays)
	priv := float64(res.Private) / float64(n)
	res.PunchCircuitsPerSec = res.ConnToday.newPerSec * float64(n) / 2 * priv * priv
	return res, nil
}

// assignRelays gives every private node up to numRelays reservations with
// the realm's relays, the first o.relays public nodes (node/config.go
// relayCandidates: the bootstrap list), as far as each relay has room
// (relayv2 MaxReservations).
func assignRelays(r *realmModel, o options) [][]int {
	var relays []int
	for j := 0; j < r.n && len(relays) < o.relays; j++ {
		if r.nat[j] == natPublic {
			relays = append(relays, j)
		}
	}
	held := make([]int, len(relays))
	out := make([][]int, r.n)
	for i := 0; i < r.n; i++ {
		if r.nat[i] == natPublic {
			continue
		}
		for k := 0; k < len(relays) && len(out[i]) < numRelays; k++ {
			x := (i + k) % len(relays)
			if held[x] < relayRes.MaxReservations {
				held[x]++
				out[i] = append(out[i], relays[x])
			}
		}
	}
	return out
}

// digestBytes is the size of one registry digest frame of a cluster of n
// nodes (registry/wire.go appendDigest: cluster str8, resync byte, count,
// and per stream origin str8, epoch and version as uvarints; the epoch is
// a hybrid-clock stamp, milliseconds << 16, 9 bytes; versions of a few
// hundred changes, 2 bytes).
func digestBytes(n, idLen int) int {
	var buf [binary.MaxVarintLen64]byte
	stamp := uint64(time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC).UnixMilli()) << 16
	perStream := 1 + idLen + binary.PutUvarint(buf[:], stamp) + binary.PutUvarint(buf[:], 300)
	return frameHeader + 1 + 1 + binary.PutUvarint(buf[:], uint64(n)) + n*perStream
}

// flood spreads one piece of news from src over the overlay as the
// membership does (every node forwards it once, on every link but the one
// it came on) and returns the hops and time until the last node has it,
// and the frames sent.
func flood(r *realmModel, adj []map[int]bool, src int) (int, time.Duration, int) {
	const perHop = 200 * time.Microsecond // checking a signature and queueing the frame
	at := make([]time.Duration, r.n)
	hop := make([]int, r.n)
	for i := range at {
		at[i] = -1
	}
	at[src] = 0
	var pq events
	heap.Push(&pq, event{0, src})
	from := make([]int, r.n)
	from[src] = -1
	msgs := 0
	done := make([]bool, r.n)
	for pq.Len() > 0 {
		ev := heap.Pop(&pq).(event)
		if done[ev.node] {
			continue
		}
		done[ev.node] = true
		for p := range adj[ev.node] {
			if p == from[ev.node] {
				continue
			}
			msgs++
			t := ev.at + r.oneWay[r.site[ev.node]][r.site[p]] + perHop
			if at[p] < 0 || t < at[p] {
				at[p], hop[p], from[p] = t, hop[ev.node]+1, ev.node
				heap.Push(&pq, event{t, p})
			}
		}
	}
	var maxAt time.Duration
	maxHop := 0
	for i := range at {
		maxAt = max(maxAt, at[i])
		maxHop = max(maxHop, hop[i])
	}
	return maxHop, maxAt, msgs
}

// eccentricity is the fewest hops from src to the farthest node.
func eccentricity(adj []map[int]bool, src int) int {
	dist := make([]int, len(adj))
	for i := range dist {
		dist[i] = -1
	}
	dist[src] = 0
	queue := []int{src}
	far := 0
	for len(queue) > 0 {
		x := queue[0]
		queue = queue[1:]
		far = max(far, dist[x])
		for p := range adj[x] {
			if dist[p] < 0 {
				dist[p] = dist[x] + 1
				queue = append(queue, p)
			}
		}
	}
	return far
}

func meanInt(xs []int) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := 0
	for _, x := range xs {
		s += x
	}
	return float64(s) / float64(len(xs))
}

func pctInt(xs []int, p float64) int {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

func pctDur(xs []time.Duration, p float64) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}
