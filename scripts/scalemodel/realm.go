package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sort"
	"time"

	kb "github.com/libp2p/go-libp2p-kbucket"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// natKind is how a node is reached (docs/nat.md).
type natKind uint8

const (
	natPublic    natKind = iota // reachable: DHT server, relay service
	natCone                     // behind a NAT hole punching crosses: direct after a relayed start
	natSymmetric                // behind a symmetric NAT: relayed to other symmetric nodes for good
)

// realmModel is a realm of N nodes: real peer IDs from Ed25519 keys, their
// kad-dht keys, a site each, and a NAT kind each.
type realmModel struct {
	n     int
	ids   []peer.ID
	index map[peer.ID]int
	kad   []kb.ID // kb.ConvertPeerID: SHA-256 of the peer ID
	site  []int
	nat   []natKind
	// oneWay[a][b] is the one-way latency between sites a and b.
	oneWay [][]time.Duration
	// servers are the DHT servers (the public nodes: nat/reach makes a
	// node a DHT server only while it is public), sorted by kad key.
	servers []int
}

// options of one model run.
type options struct {
	seed    uint64
	sites   int     // sites the nodes are spread over
	public  float64 // fraction of nodes that are public (DHT servers, relays possible)
	sym     float64 // fraction of nodes behind symmetric NAT
	relays  int     // relay nodes (the bootstrap list: node/config.go relayCandidates)
	lookups int     // DHT lookups simulated per N
	inUse   int     // peers a loaded node talks to (RPC callees, pub/sub subscribers)
	calls   float64 // calls a loaded node makes per second
	callKB  float64 // bytes of a call's request plus answer, KiB
	subs    float64 // subscribers of the model topic, as a fraction of N
	pubs    float64 // publishers of the model topic (and of other topics of the realm), as a fraction of N
	simTime time.Duration
	met     int // >0: routing tables from this many peers met, not a full refresh
}

func defaultOptions() options {
	return options{
		seed: 1, sites: 10, public: 0.4, sym: 0.2, relays: 4, lookups: 300,
		inUse: 10, calls: 10, callKB: 2, subs: 0.1, pubs: 0.01, simTime: 150 * time.Second,
	}
}

// newRealm makes a realm of n nodes.
func newRealm(n int, o options) (*realmModel, error) {
	rng := rand.New(rand.NewPCG(o.seed, uint64(n)))
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], o.seed)
	binary.LittleEndian.PutUint64(seed[8:], uint64(n))
	keys := rand.NewChaCha8(seed)
	r := &realmModel{n: n, index: make(map[peer.ID]int, n)}
	for i := 0; i < n; i++ {
		_, pub, err := crypto.GenerateEd25519Key(keys)
		if err != nil {
			return nil, err
		}
		id, err := peer.IDFromPublicKey(pub)
		if err != nil {
			return nil, err
		}
		if _, dup := r.index[id]; dup {
			return nil, fmt.Errorf("duplicate peer ID %s", id)
		}
		r.index[id] = i
		r.ids = append(r.ids, id)
		r.kad = append(r.kad, kb.ConvertPeerID(id))
		r.site = append(r.site, i%o.sites)
		switch u := rng.Float64(); {
		case u < o.public:
			r.nat = append(r.nat, natPublic)
		case u < o.public+o.sym:
			r.nat = append(r.nat, natSymmetric)
		default:
			r.nat = append(r.nat, natCone)
		}
	}
	// Node 0 is public whatever the draw: a realm needs a bootstrap node.
	r.nat[0] = natPublic
	// Sites across a continent and beyond: 0.5 ms within a site, 10 to 80
	// ms one way between two sites (20 to 160 ms round trips).
	r.oneWay = make([][]time.Duration, o.sites)
	for a := range r.oneWay {
		r.oneWay[a] = make([]time.Duration, o.sites)
	}
	for a := 0; a < o.sites; a++ {
		r.oneWay[a][a] = 500 * time.Microsecond
		for b := a + 1; b < o.sites; b++ {
			d := time.Duration(10+rng.IntN(71)) * time.Millisecond
			r.oneWay[a][b], r.oneWay[b][a] = d, d
		}
	}
	for i := 0; i < n; i++ {
		if r.nat[i] == natPublic {
			r.servers = append(r.servers, i)
		}
	}
	sort.Slice(r.servers, func(a, b int) bool {
		return bytes.Compare(r.kad[r.servers[a]], r.kad[r.servers[b]]) < 0
	})
	return r, nil
}

// rtt is the round trip between two nodes, plus a millisecond to answer.
func (r *realmModel) rtt(a, b int) time.Duration {
	return 2*r.oneWay[r.site[a]][r.site[b]] + time.Millisecond
}

// count returns how many nodes are of kind k.
func (r *realmModel) count(k natKind) int {
	c := 0
	for _, x := range r.nat {
		if x == k {
			c++
		}
	}
	return c
}
