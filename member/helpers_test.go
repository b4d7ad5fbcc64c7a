package member

import (
	"context"
	"errors"
	"github.com/libp2p/go-libp2p"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"

	"github.com/macula-io/macula/event"
	"github.com/macula-io/macula/internal/testnet"
)

const testRealm = "io.acme.orders"

func TestMain(m *testing.M) {
	testnet.VerifyTestMain(m)
}

func quietLogger() *slog.Logger { return testnet.QuietLogger() }

// fastConfig is a Config with timers short enough for tests to see
// failures and lingering links in a second or two, and long enough that a
// loaded test machine (the race detector, other tests) does not make a
// live member look failed.
func fastConfig(name string) Config {
	c := DefaultConfig(testRealm, name)
	c.ProbeInterval = 250 * time.Millisecond
	c.ProbeTimeout = 1500 * time.Millisecond
	c.SuspicionTimeout = 2 * time.Second
	c.LinkLinger = 500 * time.Millisecond
	c.ReconnectInterval = 300 * time.Millisecond
	c.Logger = quietLogger()
	return c
}

// testMember is a host with its membership.
type testMember struct {
	h   host.Host
	m   *Members
	bus *event.Bus
	// sockets, when newMember made the host: freezing them is the model of
	// a stopped process (freeze).
	sockets *testnet.Freezer
}

func newMember(t testing.TB, name string, mod func(*Config)) *testMember {
	t.Helper()
	f := &testnet.Freezer{}
	x := newMemberOn(t, testnet.HostWith(t, libp2p.DisableRelay(), f.Option()), name, mod)
	x.sockets = f
	return x
}

// freeze stops x as SIGSTOP or kill -9 would: its sockets drop everything
// (no QUIC acknowledgement either, which is a sign of life to its
// watchers) and its membership does nothing (its lock is held). thaw
// undoes it.
func (x *testMember) freeze() {
	x.sockets.Freeze()
	x.m.mu.Lock()
}

func (x *testMember) thaw() {
	x.m.mu.Unlock()
	x.sockets.Thaw()
}

func newMemberOn(t testing.TB, h host.Host, name string, mod func(*Config)) *testMember {
	t.Helper()
	cfg := fastConfig(name)
	if mod != nil {
		mod(&cfg)
	}
	bus := event.NewBus()
	t.Cleanup(bus.Close)
	m, err := New(h, bus, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return &testMember{h: h, m: m, bus: bus}
}

// connect connects a to b. It tries three times: on a machine loaded by
// other tests (the race detector, dozens of processes) a QUIC handshake on
// loopback has been seen to miss its timeout.
func connect(t testing.TB, a, b host.Host) {
	t.Helper()
	var err error
	for try := 1; try <= 3; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err = a.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()})
		cancel()
		if err == nil {
			return
		}
		t.Logf("connect %s -> %s, try %d: %v", a.ID(), b.ID(), try, err)
		a.Network().(interface{ Backoff() *swarm.DialBackoff }).Backoff().Clear(b.ID())
	}
	t.Fatal(err)
}

// eventually waits until cond holds, at most d (testnet.Eventually).
//
// Tests wait 30 s for what must happen: a member on a loaded machine raises
// its local health (late ticks) and then tolerates up to (1+maxHealth) *
// ProbeTimeout of silence before it suspects, plus SuspicionTimeout before
// a failure is confirmed; at a load of 100+ on 2 cores a 10 s wait for a
// failure has run out (TestSilentFailure).
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	testnet.Eventually(t, d, func() error {
		if cond() {
			return nil
		}
		return errors.New("waiting for " + what)
	})
}

// ids returns the IDs of members.
func ids(ms []Member) []peer.ID {
	out := make([]peer.ID, len(ms))
	for i, x := range ms {
		out[i] = x.ID
	}
	return out
}

// sees reports whether every member of ms lists exactly the peers want.
func sees(ms []*testMember, want ...*testMember) bool {
	var w []peer.ID
	for _, x := range want {
		w = append(w, x.h.ID())
	}
	slices.Sort(w)
	for _, x := range ms {
		if !slices.Equal(ids(x.m.List()), w) {
			return false
		}
	}
	return true
}
