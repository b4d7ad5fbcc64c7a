package dht

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/test"
	libp2pquic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/macula-io/macula/internal/testnet"
)

func TestMain(m *testing.M) {
	testnet.VerifyTestMain(m)
}

func newHost(t *testing.T) host.Host { return testnet.Host(t) }

func newDHT(t *testing.T, h host.Host, realm string) *DHT {
	t.Helper()
	d, err := New(h, Config{Realm: realm, Logger: testnet.QuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	})
	return d
}

func connect(t *testing.T, a, b host.Host) { testnet.Connect(t, a, b) }

// waitRoutingTable waits until d's routing table holds want, among others.
func waitRoutingTable(t *testing.T, d *DHT, want ...peer.ID) {
	t.Helper()
	testnet.Eventually(t, 30*time.Second, func() error {
		rt := d.RoutingTablePeers()
		for _, p := range want {
			if !slices.Contains(rt, p) {
				return fmt.Errorf("the routing table %v lacks %s", rt, p)
			}
		}
		return nil
	})
}

func TestProvideLookupStats(t *testing.T) {
	ha, hb, hc := newHost(t), newHost(t), newHost(t)
	a, b, c := newDHT(t, ha, "io.acme.orders"), newDHT(t, hb, "io.acme.orders"), newDHT(t, hc, "io.acme.orders")
	connect(t, hb, ha)
	connect(t, hc, ha)
	waitRoutingTable(t, a, hb.ID(), hc.ID())
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	_ = b.RefreshRoutingTable(ctx)
	_ = c.RefreshRoutingTable(ctx)

	// On a loaded machine b may have found a slow to answer (a suspect for
	// a while, out of its routing table): then the announcement is pending
	// and retried.
	if err := b.Provide(ctx, "io.acme.orders.get_order"); err != nil && !errors.Is(err, ErrPending) {
		t.Fatal(err)
	}
	testnet.Eventually(t, 45*time.Second, func() error {
		if !b.Announced("io.acme.orders.get_order") {
			return errors.New("b's announcement to be done")
		}
		return nil
	})
	testnet.Eventually(t, 15*time.Second, func() error {
		lctx, lcancel := context.WithTimeout(ctx, 2*time.Second)
		defer lcancel()
		provs, err := c.Lookup(lctx, "io.acme.orders.get_order", 0)
		if err != nil {
			return err
		}
		if len(provs) != 1 || provs[0].ID != hb.ID() || len(provs[0].Addrs) == 0 {
			return fmt.Errorf("c finds providers %v, want b (%s) with its addresses", provs, hb.ID())
		}
		return nil
	})
	st, err := b.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Nodes < 1 || st.Buckets < 1 || st.Providing != 1 || st.ProviderKeys < 1 || st.Mode != ModeServer {
		t.Fatalf("b's stats = %+v", st)
	}
	if got := b.Providing(); len(got) != 1 || got[0] != "io.acme.orders.get_order" {
		t.Fatalf("Providing = %v", got)
	}
	// Someone among a and c holds b's record for others.
	sa, _ := a.Stats(ctx)
	sc, _ := c.Stats(ctx)
	if sa.ProviderKeys+sc.ProviderKeys < 1 {
		t.Fatalf("no peer stores b's provider record: a %+v c %+v", sa, sc)
	}
	lctx, lcancel := context.WithTimeout(ctx, time.Second)
	defer lcancel()
	if provs, err := c.Lookup(lctx, "nobody-provides-this", 0); err != nil || len(provs) != 0 {
		t.Fatalf("lookup of an unknown key = %v, %v", provs, err)
	}
}

func TestRealmsDoNotShareARoutingTable(t *testing.T) {
	ha, hb := newHost(t), newHost(t)
	a, b := newDHT(t, ha, "io.acme.orders"), newDHT(t, hb, "io.other.realm")
	idA, idB := identified(t, ha), identified(t, hb)
	connect(t, hb, ha)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Nobody to announce it to: pending.
	if err := b.Provide(ctx, "k"); !errors.Is(err, ErrPending) {
		t.Fatal(err)
	}
	// Each DHT takes peers from its host's identify events, in order: once
	// a peer of its own realm that identified after the other realm's is
	// in the table, the other realm's peer has been considered.
	idA(hb.ID())
	idB(ha.ID())
	ha2, hb2 := newHost(t), newHost(t)
	newDHT(t, ha2, "io.acme.orders")
	newDHT(t, hb2, "io.other.realm")
	connect(t, ha2, ha)
	connect(t, hb2, hb)
	waitRoutingTable(t, a, ha2.ID())
	waitRoutingTable(t, b, hb2.ID())
	if rt := a.RoutingTablePeers(); slices.Contains(rt, hb.ID()) {
		t.Fatalf("a peer of another realm in a's routing table %v", rt)
	}
	if rt := b.RoutingTablePeers(); slices.Contains(rt, ha.ID()) {
		t.Fatalf("a peer of another realm in b's routing table %v", rt)
	}
	lctx, lcancel := context.WithTimeout(ctx, time.Second)
	defer lcancel()
	if provs, _ := a.Lookup(lctx, "k", 0); len(provs) != 0 {
		t.Fatalf("a found %v from another realm", provs)
	}
	if !strings.Contains(string(ProtocolPrefix("io.acme.orders")), "io.acme.orders") {
		t.Fatal("protocol prefix lacks the realm")
	}
}

// identified subscribes to h's identify events and returns a function that
// waits for the one of a peer.
func identified(t *testing.T, h host.Host) func(peer.ID) {
	t.Helper()
	sub, err := h.EventBus().Subscribe(new(event.EvtPeerIdentificationCompleted))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Close() })
	return func(p peer.ID) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case e := <-sub.Out():
				if e.(event.EvtPeerIdentificationCompleted).Peer == p {
					return
				}
			case <-timeout:
				t.Fatalf("%s never identified %s", h.ID(), p)
			}
		}
	}
}

func TestBadKeysAndConfig(t *testing.T) {
	h := newHost(t)
	d := newDHT(t, h, "io.acme.orders")
	ctx := context.Background()
	if err := d.Provide(ctx, ""); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("empty key: %v", err)
	}
	if _, err := d.Lookup(ctx, strings.Repeat("k", MaxKeyLen+1), 0); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("long key: %v", err)
	}
	if _, err := New(h, Config{}); err == nil {
		t.Fatal("New without a realm succeeded")
	}
	if _, err := New(h, Config{Realm: "io.acme.orders", Mode: "sideways"}); err == nil {
		t.Fatal("New with a bad mode succeeded")
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Provide(ctx, "k"); !errors.Is(err, ErrClosed) || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Provide after Close: %v, want ErrClosed and net.ErrClosed", err)
	}
}

// A key provided with nobody to announce it to is pending, and announced by
// a retry once a peer is there.
func TestProvidePendingThenAnnounced(t *testing.T) {
	ha, hb := newHost(t), newHost(t)
	a := newDHTWith(t, ha, Config{Realm: "io.acme.orders", RetryInterval: 50 * time.Millisecond})
	b := newDHT(t, hb, "io.acme.orders")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := a.Provide(ctx, "k")
	if !errors.Is(err, ErrPending) || a.Announced("k") {
		t.Fatalf("Provide alone: %v, announced %v", err, a.Announced("k"))
	}
	if got := a.Providing(); len(got) != 1 || got[0] != "k" {
		t.Fatalf("a pending key is not provided: %v", got)
	}
	connect(t, ha, hb)
	testnet.Eventually(t, 15*time.Second, func() error {
		if a.Announced("k") {
			return nil
		}
		return errors.New("the retry to announce k")
	})
	provs, err := b.Lookup(ctx, "k", 0)
	if err != nil || len(provs) != 1 || provs[0].ID != ha.ID() {
		t.Fatalf("b's lookup: %v %v", provs, err)
	}
	// A caller that stops waiting gets ErrPending with its own reason; the
	// key stays provided.
	done, stop := context.WithCancel(ctx)
	stop()
	if err := a.Provide(done, "k2"); !errors.Is(err, ErrPending) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Provide with a cancelled context: %v", err)
	}
	a.StopProviding("k")
	if a.Announced("k") {
		t.Fatal("a withdrawn key still counts as announced")
	}
}

// dialCounter is a connection gater that counts the dials to one peer.
type dialCounter struct {
	mu     sync.Mutex
	target peer.ID
	dials  int
}

func (g *dialCounter) count() int { g.mu.Lock(); defer g.mu.Unlock(); return g.dials }
func (g *dialCounter) InterceptPeerDial(p peer.ID) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if p == g.target {
		g.dials++
	}
	return true
}
func (g *dialCounter) InterceptAddrDial(peer.ID, ma.Multiaddr) bool { return true }
func (g *dialCounter) InterceptAccept(network.ConnMultiaddrs) bool  { return true }
func (g *dialCounter) InterceptSecured(network.Direction, peer.ID, network.ConnMultiaddrs) bool {
	return true
}
func (g *dialCounter) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) {
	return true, 0
}

// churn starts a, b and c, lets them fill their routing tables, and stops
// c without a word (its port closes; a keeps it in its routing table). a
// counts its dials to c.
func churn(t *testing.T, cfg Config) (a, b *DHT, c peer.ID, dials *dialCounter) {
	t.Helper()
	dials = &dialCounter{}
	ha, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/udp/0/quic-v1"), libp2p.Transport(libp2pquic.NewTransport),
		libp2p.DisableRelay(), libp2p.DisableMetrics(), libp2p.ConnectionGater(dials))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ha.Close() })
	hb, hc := newHost(t), newHost(t)
	cfg.Realm = "io.acme.orders"
	a, b = newDHTWith(t, ha, cfg), newDHT(t, hb, "io.acme.orders")
	dc := newDHT(t, hc, "io.acme.orders")
	connect(t, ha, hb)
	connect(t, hc, ha)
	connect(t, hc, hb)
	waitRoutingTable(t, a, hb.ID(), hc.ID())
	waitRoutingTable(t, b, ha.ID(), hc.ID())
	waitRoutingTable(t, dc, ha.ID(), hb.ID())
	// Let the queries that filled the routing tables end: one that is
	// under way to c when it stops fails at once, and the asker drops c
	// from its routing table (the test needs a and b to keep it).
	for _, d := range []*DHT{a, b, dc} {
		select {
		case <-d.kad.RefreshRoutingTable():
		case <-time.After(30 * time.Second):
			t.Fatal("a routing table refresh did not end")
		}
	}
	dials.mu.Lock()
	dials.target = hc.ID()
	dials.mu.Unlock()
	c = hc.ID()
	dc.Close()
	hc.Close()
	testnet.Eventually(t, 15*time.Second, func() error {
		if ha.Network().Connectedness(c) != network.Connected {
			return nil
		}
		return errors.New("a to lose its connection to c")
	})
	if !slices.Contains(a.RoutingTablePeers(), c) {
		t.Fatal("c left a's routing table on disconnect; the test needs it there")
	}
	return a, b, c, dials
}

// A routing-table entry that cannot be reached costs one query at most
// DialTimeout and is then evicted: the query's own deadline (longer) does
// not cancel the dial first, as it did when the swarm's 5 s local dial
// timeout was the only bound.
func TestUnreachableEntryEvicted(t *testing.T) {
	a, _, c, dials := churn(t, Config{DialTimeout: 500 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := a.Lookup(ctx, "some-key", 0); err != nil {
		t.Fatal(err)
	}
	if dials.count() == 0 {
		t.Fatal("the lookup did not try c")
	}
	if slices.Contains(a.RoutingTablePeers(), c) {
		t.Fatal("c, unreachable, is still in a's routing table after a query tried it")
	}
}

// A peer the node knows is gone is never dialed by a query, though b still
// has it in its routing table and names it to a.
func TestGonePeerNotDialed(t *testing.T) {
	var mu sync.Mutex
	gone := map[peer.ID]bool{}
	a, b, c, dials := churn(t, Config{Gone: func(p peer.ID) bool { mu.Lock(); defer mu.Unlock(); return gone[p] }})
	mu.Lock()
	gone[c] = true
	mu.Unlock()
	a.ForgetPeer(c)
	if slices.Contains(a.RoutingTablePeers(), c) {
		t.Fatal("ForgetPeer left c in the routing table")
	}
	if !slices.Contains(b.RoutingTablePeers(), c) {
		t.Fatal("b forgot c; the test needs b to name it")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 3 {
		if _, err := a.Lookup(ctx, fmt.Sprint("key-", i), 0); err != nil {
			t.Fatal(err)
		}
		if err := a.Provide(ctx, fmt.Sprint("key-", i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := dials.count(); n != 0 {
		t.Fatalf("a dialed the gone peer %d times", n)
	}
}

func newDHTWith(t *testing.T, h host.Host, cfg Config) *DHT {
	t.Helper()
	cfg.Logger = testnet.QuietLogger()
	d, err := New(h, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// silence makes h's DHT take requests and never answer them, as a node
// that was killed without a word looks while its connections stay open.
func silence(h host.Host, realm string) {
	proto := ProtocolPrefix(realm) + "/kad/1.0.0"
	h.SetStreamHandler(proto, func(s network.Stream) {
		_, _ = io.Copy(io.Discard, s) // until the asker resets the stream
		_ = s.Reset()
	})
	// Streams that peers keep open for their next requests end too.
	for _, c := range h.Network().Conns() {
		for _, s := range c.GetStreams() {
			if s.Protocol() == proto {
				_ = s.Reset()
			}
		}
	}
}

// A lookup does not wait for a connected peer that stops answering: the
// request to it fails after its bound, the peer becomes suspect (told to
// Unresponsive, out of the routing table and of queries), and lookups and
// announcements end without it. A provider the others know of is still
// found (no false not found), and Responsive brings the peer back.
func TestSilentPeerDoesNotStallQueries(t *testing.T) {
	const realm = "io.acme.orders"
	var mu sync.Mutex
	var told []peer.ID
	ha, hb, hc, hs := newHost(t), newHost(t), newHost(t), newHost(t)
	a := newDHTWith(t, ha, Config{Realm: realm, Unresponsive: func(p peer.ID) {
		mu.Lock()
		defer mu.Unlock()
		told = append(told, p)
	}})
	b, c, s := newDHT(t, hb, realm), newDHT(t, hc, realm), newDHT(t, hs, realm)
	all := []host.Host{ha, hb, hc, hs}
	for i, x := range all {
		for _, y := range all[i+1:] {
			connect(t, x, y)
		}
	}
	waitRoutingTable(t, a, hb.ID(), hc.ID(), hs.ID())
	for _, d := range []*DHT{b, c, s} {
		waitRoutingTable(t, d, ha.ID())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := b.Provide(ctx, "served-by-b"); err != nil {
		t.Fatal(err)
	}
	// a has measured s's round-trip time by now (the routing tables were
	// filled by queries); kad-dht's own bound would be 10 s.
	silence(hs, realm)

	// The lookups end (kad-dht's own sender would end them too, after 10
	// s): what shows that they did not wait for s is that s was found out.
	for _, key := range []string{"nobody-provides-this", "nor-this"} {
		lctx, lcancel := context.WithTimeout(ctx, 20*time.Second)
		t0 := time.Now()
		provs, err := a.Lookup(lctx, key, 0)
		ended := lctx.Err()
		lcancel()
		t.Logf("lookup of %s with a silent peer: %v", key, time.Since(t0).Round(time.Millisecond))
		if err != nil || len(provs) != 0 || ended != nil {
			t.Fatalf("lookup of %s with a silent peer: %v, %v; its deadline: %v", key, provs, err, ended)
		}
	}
	mu.Lock()
	gotTold := slices.Contains(told, hs.ID())
	mu.Unlock()
	if !gotTold || !a.suspected(hs.ID()) || slices.Contains(a.RoutingTablePeers(), hs.ID()) {
		t.Fatalf("the silent peer: told %v, suspect %v, routing table %v", gotTold, a.suspected(hs.ID()), a.RoutingTablePeers())
	}
	lctx, lcancel := context.WithTimeout(ctx, 20*time.Second)
	provs, err := a.Lookup(lctx, "served-by-b", 1)
	lcancel()
	if err != nil || len(provs) != 1 || provs[0].ID != hb.ID() {
		t.Fatalf("lookup of b's key with a silent peer: %v, %v", provs, err)
	}
	pctx, pcancel := context.WithTimeout(ctx, 20*time.Second)
	err = a.Provide(pctx, "served-by-a")
	pcancel()
	if err != nil {
		t.Fatalf("Provide with a silent peer: %v", err)
	}
	a.Responsive(hs.ID())
	if a.suspected(hs.ID()) || !slices.Contains(a.RoutingTablePeers(), hs.ID()) {
		t.Fatalf("after Responsive: suspect %v, routing table %v", a.suspected(hs.ID()), a.RoutingTablePeers())
	}
	_ = c
}

// kad-dht checks the routing-table filter when it finds a peer and adds
// the peer only once it answered a query: a peer that left meanwhile is
// added all the same (the node's TestCleanLeave saw it). The DHT takes it
// out again.
func TestGonePeerAddedLateIsEvicted(t *testing.T) {
	var mu sync.Mutex
	gone := map[peer.ID]bool{}
	ha, hb := newHost(t), newHost(t)
	a := newDHTWith(t, ha, Config{Realm: "io.acme.orders", Gone: func(p peer.ID) bool { mu.Lock(); defer mu.Unlock(); return gone[p] }})
	newDHT(t, hb, "io.acme.orders")
	connect(t, ha, hb)
	waitRoutingTable(t, a, hb.ID())
	mu.Lock()
	gone[hb.ID()] = true
	mu.Unlock()
	a.ForgetPeer(hb.ID())
	// The refresh that the emptier table starts would take b out too (its
	// query fails on the gone peer): let it end first, as it had in
	// TestCleanLeave when the late answer came.
	for range 2 {
		select {
		case <-a.kad.RefreshRoutingTable():
		case <-time.After(30 * time.Second):
			t.Fatal("a routing table refresh did not end")
		}
	}
	// What kad-dht's routing-table loop does when the late answer comes.
	if _, err := a.kad.RoutingTable().TryAddPeer(hb.ID(), true, false); err != nil {
		t.Fatal(err)
	}
	testnet.Eventually(t, 10*time.Second, func() error {
		if slices.Contains(a.RoutingTablePeers(), hb.ID()) {
			return errors.New("the gone peer to leave the routing table")
		}
		return nil
	})
	// A peer that is not gone stays.
	mu.Lock()
	gone[hb.ID()] = false
	mu.Unlock()
	if _, err := a.kad.RoutingTable().TryAddPeer(hb.ID(), true, false); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // what an eviction would take (not a timing assertion: it must not happen)
	if !slices.Contains(a.RoutingTablePeers(), hb.ID()) {
		t.Fatal("a peer that is not gone was evicted")
	}
}

// star starts n DHTs of one realm, each connected to the first.
func star(t *testing.T, n int) ([]host.Host, []*DHT) {
	hs := make([]host.Host, n)
	ds := make([]*DHT, n)
	for i := range hs {
		hs[i] = newHost(t)
		ds[i] = newDHT(t, hs[i], "io.acme.orders")
		if i > 0 {
			connect(t, hs[i], hs[0])
		}
	}
	return hs, ds
}

// lookupIDs looks key up on d with a limit (20, the API's default) and
// returns the providers' IDs, sorted.
func lookupIDs(ctx context.Context, d *DHT, key string) ([]peer.ID, error) {
	lctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	provs, err := d.Lookup(lctx, key, 20)
	ids := make([]peer.ID, 0, len(provs))
	for _, p := range provs {
		ids = append(ids, p.ID)
	}
	slices.Sort(ids)
	return ids, err
}

// A lookup with a limit ends on the answers that follow the first provider
// (settleAnswers) instead of a fixed wait: it must still return every
// provider of a key whose records the answering peers hold.
func TestLookupWithALimitFindsEveryProvider(t *testing.T) {
	const n, key = 6, "io.acme.orders.get_order"
	hs, ds := star(t, n)
	for i := 1; i < n; i++ {
		waitRoutingTable(t, ds[i], hs[0].ID())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for _, d := range ds {
		_ = d.RefreshRoutingTable(ctx)
	}
	providers := []int{1, 2, 3}
	for _, i := range providers {
		if err := ds[i].Provide(ctx, key); err != nil && !errors.Is(err, ErrPending) {
			t.Fatal(err)
		}
	}
	testnet.Eventually(t, 45*time.Second, func() error {
		for _, i := range providers {
			if !ds[i].Announced(key) {
				return fmt.Errorf("the announcement of provider %d", i)
			}
		}
		return nil
	})
	want := []peer.ID{hs[1].ID(), hs[2].ID(), hs[3].ID()}
	slices.Sort(want)
	for round := range 3 {
		for _, i := range []int{0, 4, 5, 1} {
			got, err := lookupIDs(ctx, ds[i], key)
			if err != nil || !slices.Equal(got, want) {
				t.Fatalf("round %d: node %d finds %v, %v; want %v", round, i, got, err, want)
			}
		}
	}
}

// The case that a wait by time got wrong: the looking node's own store
// names two providers of three, the third is known only to other peers. A
// lookup with a limit must wait for their answers, not return what its
// store said.
func TestLookupWithALimitWaitsForPeersAnswers(t *testing.T) {
	const n, key = 5, "io.acme.orders.get_order"
	hs, ds := star(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, d := range ds {
		_ = d.RefreshRoutingTable(ctx)
	}
	others := make([]peer.ID, 0, n-1)
	for _, h := range hs[1:] {
		others = append(others, h.ID())
	}
	waitRoutingTable(t, ds[0], others...)
	provs := make([]peer.AddrInfo, 3)
	for i := range provs {
		provs[i] = peer.AddrInfo{ID: test.RandPeerIDFatal(t), Addrs: []ma.Multiaddr{ma.StringCast(fmt.Sprintf("/ip4/192.0.2.%d/udp/7400/quic-v1", i+1))}}
	}
	mh := KeyCID("io.acme.orders", key).Hash()
	for i, d := range ds {
		for j, p := range provs {
			if i == 0 && j == 2 {
				continue // the looking node does not know the third
			}
			if err := d.kad.ProviderStore().AddProvider(ctx, mh, p); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := []peer.ID{provs[0].ID, provs[1].ID, provs[2].ID}
	slices.Sort(want)
	for round := range 5 {
		got, err := lookupIDs(ctx, ds[0], key)
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("round %d: the lookup finds %v, %v; want %v", round, got, err, want)
		}
	}
}
