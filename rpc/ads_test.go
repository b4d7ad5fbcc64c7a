package rpc

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/macula-io/macula/dht"
	"github.com/macula-io/macula/event"
	"github.com/macula-io/macula/internal/testnet"
)

// slowRouter is the DHT with lookups that can be made to hang, or to find
// nothing, and counted.
type slowRouter struct {
	*dht.DHT
	mode    atomic.Int32 // 0: the DHT's answer; 1: hang until ctx ends or unhang; 2: nothing
	lookups atomic.Int32
	release chan struct{}
}

// set changes the mode and ends the lookups that hang.
func (r *slowRouter) set(mode int32) {
	if mode == routerHang {
		r.release = make(chan struct{}) // before the mode: lookups read it after
	}
	if r.mode.Swap(mode) == routerHang {
		close(r.release)
	}
}

const (
	routerReal = iota
	routerHang
	routerEmpty
)

func (r *slowRouter) Lookup(ctx context.Context, key string, limit int) ([]peer.AddrInfo, error) {
	r.lookups.Add(1)
	switch r.mode.Load() {
	case routerHang:
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-r.release:
			return nil, nil
		}
	case routerEmpty:
		return nil, nil
	}
	return r.DHT.Lookup(ctx, key, limit)
}

// newRoutedNode is newNode with a slowRouter in front of the DHT.
func newRoutedNode(t *testing.T) (*tnode, *slowRouter) {
	t.Helper()
	h := testnet.Host(t)
	d, err := dht.New(h, dht.Config{Realm: testRealm, Logger: testnet.QuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	r := &slowRouter{DHT: d}
	bus := event.NewBus()
	x, err := New(h, r, bus, Config{Realm: testRealm, Logger: testnet.QuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	n := &tnode{h: h, d: d, rpc: x, bus: bus}
	t.Cleanup(func() { n.close() })
	return n, r
}

// linkedTo reports whether n knows from its link that p advertises proc.
func linkedTo(n *tnode, proc string, p peer.ID) bool {
	n.rpc.mu.Lock()
	defer n.rpc.mu.Unlock()
	return slices.Contains(n.rpc.linked[proc], p)
}

// A connected peer's procedures are known from its link: a call needs no
// DHT (here the DHT hangs), a withdrawal is known at once, and a new
// procedure too.
func TestProceduresFromLinks(t *testing.T) {
	a, ra := newRoutedNode(t)
	b := newNode(t, nil)
	mesh(t, a, b)
	ra.set(routerHang)
	// An internal procedure is not announced (a peer would refuse the name
	// and close the stream).
	if err := b.rpc.Handle("/test/internal", echo); err != nil {
		t.Fatal(err)
	}
	advertise(t, b, "io.acme.orders.first", echo)
	testnet.Eventually(t, 20*time.Second, func() error {
		if linkedTo(a, "io.acme.orders.first", b.h.ID()) {
			return nil
		}
		return errors.New("a to learn b's procedure from the link")
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	reply, err := a.rpc.Call(ctx, "io.acme.orders.first", []byte("hi"))
	if err != nil || string(reply) != "hi" {
		t.Fatalf("call with a hanging DHT: %q, %v", reply, err)
	}
	// Another procedure, advertised after the link exists.
	advertise(t, b, "io.acme.orders.second", echo)
	testnet.Eventually(t, 20*time.Second, func() error {
		if linkedTo(a, "io.acme.orders.second", b.h.ID()) {
			return nil
		}
		return errors.New("a to learn the second procedure")
	})
	if _, err := a.rpc.Call(ctx, "io.acme.orders.second", nil); err != nil {
		t.Fatal(err)
	}
	a.rpc.mu.Lock()
	_, internalSeen := a.rpc.peerAds[b.h.ID()].procs["/test/internal"]
	a.rpc.mu.Unlock()
	if internalSeen {
		t.Fatal("b announced its internal procedure")
	}
	// Withdrawn: a knows without asking anyone.
	if err := b.rpc.Unadvertise("io.acme.orders.first"); err != nil {
		t.Fatal(err)
	}
	testnet.Eventually(t, 20*time.Second, func() error {
		if !linkedTo(a, "io.acme.orders.first", b.h.ID()) {
			return nil
		}
		return errors.New("a to learn of the withdrawal")
	})
	ra.set(routerEmpty)
	if _, err := a.rpc.Call(ctx, "io.acme.orders.first", nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("call to a withdrawn procedure: %v", err)
	}
	// b's stream closes: its procedures go with it.
	b.close()
	testnet.Eventually(t, 20*time.Second, func() error {
		if !linkedTo(a, "io.acme.orders.second", b.h.ID()) {
			return nil
		}
		return errors.New("a to forget b's procedures")
	})
}

// A DHT record outlives its advertisement; a caller linked to the provider
// knows better and does not send it the call.
func TestLinkOverridesStaleRecord(t *testing.T) {
	a, ra := newRoutedNode(t)
	b := newNode(t, nil)
	mesh(t, a, b)
	advertise(t, b, "io.acme.orders.keep", echo)
	advertise(t, b, "io.acme.orders.stale", echo)
	testnet.Eventually(t, 20*time.Second, func() error {
		if linkedTo(a, "io.acme.orders.keep", b.h.ID()) {
			return nil
		}
		return errors.New("a to link to b")
	})
	if err := b.rpc.Unadvertise("io.acme.orders.stale"); err != nil {
		t.Fatal(err)
	}
	testnet.Eventually(t, 20*time.Second, func() error {
		if !linkedTo(a, "io.acme.orders.stale", b.h.ID()) {
			return nil
		}
		return errors.New("a to learn of the withdrawal")
	})
	// The DHT still names b (records are withdrawn by expiry only).
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	provs, err := ra.DHT.Lookup(ctx, providerKey("io.acme.orders.stale"), 0)
	if err != nil || len(provs) != 1 || provs[0].ID != b.h.ID() {
		t.Fatalf("the DHT no longer names b (%v, %v): the test needs the stale record", provs, err)
	}
	served := b.rpc.Stats().Served
	if _, err := a.rpc.Call(ctx, "io.acme.orders.stale", nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("call: %v, want not found", err)
	}
	if got := b.rpc.Stats().Served; got != served {
		t.Fatalf("b was sent the call (served %d -> %d)", served, got)
	}
}

// PeerGone drops a provider at once, and a DHT lookup that names it again
// does not bring it back until it connects again.
func TestPeerGone(t *testing.T) {
	a, ra := newRoutedNode(t)
	b, c := newNode(t, nil), newNode(t, nil)
	mesh(t, a, b, c)
	advertise(t, b, "io.acme.orders.shared", echo)
	advertise(t, c, "io.acme.orders.shared", echo)
	testnet.Eventually(t, 20*time.Second, func() error {
		if linkedTo(a, "io.acme.orders.shared", b.h.ID()) && linkedTo(a, "io.acme.orders.shared", c.h.ID()) {
			return nil
		}
		return errors.New("a is not linked to both")
	})
	a.rpc.PeerGone(b.h.ID())
	ra.set(routerReal)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	served := b.rpc.Stats().Served
	for range 10 {
		a.rpc.mu.Lock()
		if ps := a.rpc.providers["io.acme.orders.shared"]; ps != nil {
			ps.fetched = time.Time{} // every call refreshes from the DHT
		}
		a.rpc.mu.Unlock()
		if _, err := a.rpc.Call(ctx, "io.acme.orders.shared", nil); err != nil {
			t.Fatal(err)
		}
	}
	if got := b.rpc.Stats().Served; got != served {
		t.Fatalf("a called the peer it was told is gone (%d calls)", got-served)
	}
}

// Advertise says whether the DHT announcement is done, and a pending one is
// retried until it is.
func TestAdvertisePendingThenAnnounced(t *testing.T) {
	a := newNode(t, nil) // alone: nobody to announce to
	advertise(t, a, "io.acme.orders.lonely", echo)
	if a.rpc.Announced("io.acme.orders.lonely") {
		t.Fatal("announced with no peer")
	}
	b := newNode(t, nil)
	mesh(t, a, b)
	testnet.Eventually(t, 20*time.Second, func() error {
		if a.rpc.Announced("io.acme.orders.lonely") {
			return nil
		}
		return errors.New("the announcement")
	})
	if a.rpc.Announced("io.acme.orders.nothing") {
		t.Fatal("a procedure never advertised counts as announced")
	}
}

func TestProcedureListRoundTrip(t *testing.T) {
	procs := []string{"io.acme.orders.a", "io.acme.orders.bb", "io.acme.orders.ccc"}
	b, rest := appendProcedures(nil, procs, 1<<10)
	if len(rest) != 0 {
		t.Fatalf("rest %v", rest)
	}
	got, err := parseProcedures(b)
	if err != nil || !slices.Equal(got, procs) {
		t.Fatalf("parse = %v, %v", got, err)
	}
	// A short limit splits the list.
	b, rest = appendProcedures(nil, procs, 40)
	if got, _ := parseProcedures(b); len(got) != 2 || len(rest) != 1 {
		t.Fatalf("split: %v + %v", got, rest)
	}
}

func FuzzParseProcedures(f *testing.F) {
	b, _ := appendProcedures(nil, []string{"io.acme.orders.x", "io.acme.orders.y"}, 1<<10)
	f.Add(b)
	f.Add([]byte{0})
	f.Add([]byte{5, 'a'})
	f.Fuzz(func(t *testing.T, b []byte) {
		procs, err := parseProcedures(b)
		if err != nil {
			return
		}
		again, rest := appendProcedures(nil, procs, len(b)+1)
		if len(rest) != 0 || !bytes.Equal(again, b) {
			t.Fatalf("round trip: %x -> %v -> %x", b, procs, again)
		}
	})
}
