package pubsub

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/macula-io/macula/dht"
	"github.com/macula-io/macula/event"
	"github.com/macula-io/macula/internal/testnet"
)

// *dht.DHT is the Router the node wires in.
var _ Router = (*dht.DHT)(nil)

const testRealm = "io.acme.orders"

func TestMain(m *testing.M) {
	testnet.VerifyTestMain(m)
}

func newHost(t testing.TB) host.Host { return testnet.Host(t) }

// testNode is a bare host with the realm's DHT and pubsub, as node wires
// them.
type testNode struct {
	h   host.Host
	d   *dht.DHT
	ps  *PubSub
	bus *event.Bus
}

func newNode(t testing.TB, mod func(*Config)) *testNode {
	t.Helper()
	return newNodeOn(t, newHost(t), mod)
}

// newNodeOn is newNode on a host of the test's own.
func newNodeOn(t testing.TB, h host.Host, mod func(*Config)) *testNode {
	t.Helper()
	d, err := dht.New(h, dht.Config{Realm: testRealm, Logger: testnet.QuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	bus := event.NewBus()
	t.Cleanup(bus.Close)
	cfg := Config{Realm: testRealm, Logger: testnet.QuietLogger(), InterestRefresh: 200 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	ps, err := New(h, d, bus, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ps.Close(); err != nil {
			t.Error(err)
		}
	})
	return &testNode{h: h, d: d, ps: ps, bus: bus}
}

func connect(t testing.TB, a, b host.Host) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err != nil {
		t.Fatal(err)
	}
}

// collector records the messages a handler gets.
type collector struct {
	mu   sync.Mutex
	msgs []Message
}

func (c *collector) handle(m Message) {
	c.mu.Lock()
	c.msgs = append(c.msgs, m)
	c.mu.Unlock()
}

func (c *collector) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.msgs)
}

// waitLen waits until c holds want messages.
func (c *collector) waitLen(t testing.TB, d time.Duration, want int) {
	t.Helper()
	testnet.Eventually(t, d, func() error {
		if n := c.len(); n != want {
			return fmt.Errorf("%d messages, want %d", n, want)
		}
		return nil
	})
}

func (c *collector) all() []Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Message(nil), c.msgs...)
}

func subscribe(t testing.TB, ps *PubSub, pattern string) (*Subscription, *collector) {
	t.Helper()
	c := &collector{}
	s, err := ps.Subscribe(pattern, c.handle)
	if err != nil {
		t.Fatalf("Subscribe(%q): %v", pattern, err)
	}
	return s, c
}

func publish(t testing.TB, ps *PubSub, topic string, payload []byte) {
	t.Helper()
	if err := ps.Publish(context.Background(), topic, payload); err != nil {
		t.Fatalf("Publish(%q): %v", topic, err)
	}
}
