package pubsub

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/macula-io/macula/access"
	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/peerdid"
	"github.com/macula-io/macula/realm"
	"github.com/macula-io/macula/ucan"
)

// secureNode is a testNode of a secure realm: its own validator, as a node
// has, and the table of verdicts its pubsub enforces.
type secureNode struct {
	*testNode
	v   *ucan.Validator
	tab *access.Table
}

// newSecureNode starts a node whose own verdict is on chains.
func newSecureNode(t testing.TB, a *testnet.Authority, chains func(self peer.ID) []ucan.Chain) *secureNode {
	t.Helper()
	v, err := ucan.New(ucan.Config{Realm: testRealm, Authority: a.DID, Logger: testnet.QuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	tab := access.NewTable(nil) // the own verdict follows once the peer ID is known
	n := newNode(t, func(c *Config) { c.Access = tab })
	if !n.ps.secure {
		t.Fatal("a table without an open verdict must make pubsub check")
	}
	tab.SetSelf(validate(t, v, n.h.ID(), chains(n.h.ID())))
	return &secureNode{testNode: n, v: v, tab: tab}
}

func validate(t testing.TB, v *ucan.Validator, p peer.ID, chains []ucan.Chain) *ucan.Verdict {
	t.Helper()
	vd, err := v.Validate(context.Background(), peerdid.Of(p), chains)
	if err != nil {
		t.Fatalf("Validate: %v", err)
	}
	return vd
}

// admit records, in n's table, the verdict on what p presents, as the node
// does after the realm handshake.
func (n *secureNode) admit(t testing.TB, p peer.ID, chains ...ucan.Chain) {
	t.Helper()
	n.tab.Set(p, validate(t, n.v, p, chains))
}

const ordersPattern = "io.acme.orders.*"

// securePair starts a publisher granted Publish and a subscriber granted
// Subscribe on io.acme.orders.*, connected, each admitting the other with
// the chains returned by pubSees (what the subscriber sees of the
// publisher) and subSees (what the publisher sees of the subscriber); nil
// means the peer's real chains.
func securePair(t *testing.T, a *testnet.Authority, pubSees, subSees func(p peer.ID) []ucan.Chain) (pub, sub *secureNode, pubChain, subChain ucan.Chain) {
	t.Helper()
	pub = newSecureNode(t, a, func(p peer.ID) []ucan.Chain {
		pubChain = a.Grant(t, peerdid.Of(p), ucan.Publish, ordersPattern)
		return []ucan.Chain{pubChain}
	})
	sub = newSecureNode(t, a, func(p peer.ID) []ucan.Chain {
		subChain = a.Grant(t, peerdid.Of(p), ucan.Subscribe, ordersPattern)
		return []ucan.Chain{subChain}
	})
	if pubSees == nil {
		sub.admit(t, pub.h.ID(), pubChain)
	} else {
		sub.admit(t, pub.h.ID(), pubSees(pub.h.ID())...)
	}
	if subSees == nil {
		pub.admit(t, sub.h.ID(), subChain)
	} else {
		pub.admit(t, sub.h.ID(), subSees(sub.h.ID())...)
	}
	connect(t, sub.h, pub.h)
	return pub, sub, pubChain, subChain
}

// waitRoutable waits until pub routes to sub's pattern.
func waitRoutable(t *testing.T, pub, sub *secureNode) {
	t.Helper()
	testnet.Eventually(t, 10*time.Second, func() error {
		if ps, n := pub.ps.peerPatterns(sub.h.ID()), pub.ps.routablePeers(); len(ps) == 0 || n != 1 {
			return fmt.Errorf("the publisher knows the patterns %v of the subscriber and %d routable peers, want some and 1", ps, n)
		}
		return nil
	})
}

// TestAuthorizedPublish: a publisher granted io.acme.orders.* reaches a
// subscriber granted the same; a topic outside the grant is refused at
// Publish, and nothing is sent.
func TestAuthorizedPublish(t *testing.T) {
	a := testnet.NewAuthority(t)
	pub, sub, _, _ := securePair(t, a, nil, nil)
	_, c := subscribe(t, sub.ps, ordersPattern)
	waitRoutable(t, pub, sub)

	publish(t, pub.ps, "io.acme.orders.placed", []byte("ok"))
	c.waitLen(t, 5*time.Second, 1)
	if m := c.all()[0]; m.Topic != "io.acme.orders.placed" || string(m.Payload) != "ok" || m.PublisherPeer != pub.h.ID() {
		t.Fatalf("got %+v", m)
	}

	// "*" is one segment: io.acme.orders.eu.placed is outside the grant.
	err := pub.ps.Publish(context.Background(), "io.acme.orders.eu.placed", []byte("no"))
	if !errors.Is(err, ErrUnauthorized) || !errors.Is(err, ucan.ErrResource) {
		t.Fatalf("Publish outside the grant: %v, want ErrUnauthorized and ucan.ErrResource", err)
	}
	// An invalid topic is still reported as such.
	if err := pub.ps.Publish(context.Background(), "io.other.x", nil); !errors.Is(err, realm.ErrOutsideRealm) {
		t.Fatalf("Publish outside the realm: %v, want realm.ErrOutsideRealm", err)
	}
	// The subscriber may not publish at all.
	if err := sub.ps.Publish(context.Background(), "io.acme.orders.placed", nil); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("Publish without a publish grant: %v, want ErrUnauthorized", err)
	}
	if st := pub.ps.Stats(); st.Published != 1 || st.Sent != 1 {
		t.Fatalf("publisher stats %+v: want 1 published and sent", st)
	}
	// A sentinel: had the refused message gone out, it would arrive first.
	publish(t, pub.ps, "io.acme.orders.shipped", []byte("end"))
	c.waitLen(t, 5*time.Second, 2)
	if st := sub.ps.Stats(); st.FramesReceived != 2 || st.DroppedUnauthorized != 0 {
		t.Fatalf("subscriber stats %+v: want 2 frames, none refused", st)
	}
}

// TestSubscribeBeyondGrant: a subscription wider than the grant is refused
// and announces nothing; the publisher may not subscribe at all.
func TestSubscribeBeyondGrant(t *testing.T) {
	a := testnet.NewAuthority(t)
	pub, sub, _, _ := securePair(t, a, nil, nil)
	for _, pat := range []string{"io.acme.>", "io.acme.orders.>", "io.acme.orders.*.eu"} {
		if _, err := sub.ps.Subscribe(pat, func(Message) {}); !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("Subscribe(%q) with a grant of %s: %v, want ErrUnauthorized", pat, ordersPattern, err)
		}
		if _, _, err := sub.ps.SubscribeChan(pat, 0); !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("SubscribeChan(%q): %v, want ErrUnauthorized", pat, err)
		}
	}
	// An invalid pattern is still reported as such.
	if _, err := sub.ps.Subscribe("io.other.>", func(Message) {}); !errors.Is(err, realm.ErrOutsideRealm) {
		t.Fatalf("Subscribe outside the realm: %v, want realm.ErrOutsideRealm", err)
	}
	if _, err := pub.ps.Subscribe(ordersPattern, func(Message) {}); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("Subscribe without a subscribe grant: %v, want ErrUnauthorized", err)
	}
	// Narrower patterns are fine.
	subscribe(t, sub.ps, "io.acme.orders.placed")
	subscribe(t, sub.ps, ordersPattern)
	testnet.Eventually(t, 10*time.Second, func() error {
		got := pub.ps.peerPatterns(sub.h.ID())
		slices.Sort(got)
		if want := []string{ordersPattern, "io.acme.orders.placed"}; !slices.Equal(got, want) {
			return fmt.Errorf("the publisher knows the patterns %v of the subscriber, want %v", got, want)
		}
		return nil
	})
	if n := sub.ps.Stats().Subscriptions; n != 2 {
		t.Fatalf("%d subscriptions, want 2", n)
	}
}

// TestReceiverDropsUnauthorizedPublisher: a publisher whose own verdict
// lets it publish, but whose verdict at the subscriber does not, has its
// messages dropped there and counted; once the subscriber holds a verdict
// that allows it (the peer presented new chains), messages get through.
func TestReceiverDropsUnauthorizedPublisher(t *testing.T) {
	a := testnet.NewAuthority(t)
	pub, sub, pubChain, _ := securePair(t, a, func(p peer.ID) []ucan.Chain {
		return []ucan.Chain{a.Grant(t, peerdid.Of(p), ucan.Subscribe, ordersPattern)}
	}, nil)
	_, c := subscribe(t, sub.ps, ordersPattern)
	waitRoutable(t, pub, sub)

	for i := 0; i < 10; i++ {
		publish(t, pub.ps, "io.acme.orders.placed", []byte("dropped"))
	}
	testnet.Eventually(t, 5*time.Second, func() error {
		if got := sub.ps.Stats().DroppedUnauthorized; got != 10 {
			return fmt.Errorf("messages refused: have %v, want 10", got)
		}
		return nil
	})

	// No verdict at all (the peer left the table) is refused too.
	sub.tab.Delete(pub.h.ID())
	publish(t, pub.ps, "io.acme.orders.placed", []byte("dropped"))
	testnet.Eventually(t, 5*time.Second, func() error {
		if got := sub.ps.Stats().DroppedUnauthorized; got != 11 {
			return fmt.Errorf("messages refused: have %v, want 11", got)
		}
		return nil
	})

	sub.admit(t, pub.h.ID(), pubChain)
	publish(t, pub.ps, "io.acme.orders.placed", []byte("ok"))
	c.waitLen(t, 5*time.Second, 1)
	if m := c.all()[0]; string(m.Payload) != "ok" {
		t.Fatalf("delivered %q, want only the allowed message", m.Payload)
	}
	if st := sub.ps.Stats(); st.FramesReceived != 12 || st.Delivered != 1 || st.DroppedUnauthorized != 11 {
		t.Fatalf("subscriber stats %+v", st)
	}
}

// TestPublisherWithholdsFromUnauthorizedSubscriber: a subscriber whose own
// verdict lets it subscribe, but whose verdict at the publisher does not,
// announces its interest and gets nothing.
func TestPublisherWithholdsFromUnauthorizedSubscriber(t *testing.T) {
	a := testnet.NewAuthority(t)
	pub, sub, _, subChain := securePair(t, a, nil, func(p peer.ID) []ucan.Chain {
		return []ucan.Chain{a.Grant(t, peerdid.Of(p), ucan.Subscribe, "io.acme.orders.shipped")}
	})
	_, c := subscribe(t, sub.ps, ordersPattern)
	waitRoutable(t, pub, sub)

	for i := 0; i < 10; i++ {
		publish(t, pub.ps, "io.acme.orders.placed", []byte("withheld"))
	}
	if st := pub.ps.Stats(); st.WithheldUnauthorized != 10 || st.Published != 10 {
		t.Fatalf("publisher stats %+v: want 10 published, 10 withheld", st)
	}
	// Its narrower grant still covers io.acme.orders.shipped.
	publish(t, pub.ps, "io.acme.orders.shipped", []byte("shipped"))
	pub.admit(t, sub.h.ID(), subChain)
	publish(t, pub.ps, "io.acme.orders.placed", []byte("placed"))
	c.waitLen(t, 5*time.Second, 2)
	var got []string
	for _, m := range c.all() {
		got = append(got, string(m.Payload))
	}
	if !slices.Equal(got, []string{"shipped", "placed"}) {
		t.Fatalf("delivered %q", got)
	}
	if st := sub.ps.Stats(); st.FramesReceived != 2 {
		t.Fatalf("the subscriber received %d frames, want 2", st.FramesReceived)
	}
}

// TestRevocationStopsDelivery: revoking the publisher's grant at the
// subscriber drops its next message; revoking it at the publisher refuses
// the next Publish. Revoking the subscriber's grant at the publisher stops
// sending to it.
func TestRevocationStopsDelivery(t *testing.T) {
	a := testnet.NewAuthority(t)
	pub, sub, pubChain, subChain := securePair(t, a, nil, nil)
	_, c := subscribe(t, sub.ps, ordersPattern)
	waitRoutable(t, pub, sub)

	publish(t, pub.ps, "io.acme.orders.placed", []byte("1"))
	c.waitLen(t, 5*time.Second, 1)

	rec := a.Revoke(t, pubChain)
	if err := sub.v.AddRevocation(rec); err != nil {
		t.Fatal(err)
	}
	publish(t, pub.ps, "io.acme.orders.placed", []byte("2"))
	testnet.Eventually(t, 5*time.Second, func() error {
		if got := sub.ps.Stats().DroppedUnauthorized; got != 1 {
			return fmt.Errorf("messages refused after the revocation: have %v, want 1", got)
		}
		return nil
	})

	if err := pub.v.AddRevocation(rec); err != nil {
		t.Fatal(err)
	}
	err := pub.ps.Publish(context.Background(), "io.acme.orders.placed", []byte("3"))
	if !errors.Is(err, ErrUnauthorized) || !errors.Is(err, ucan.ErrRevoked) {
		t.Fatalf("Publish after revocation: %v, want ErrUnauthorized and ucan.ErrRevoked", err)
	}
	if c.len() != 1 {
		t.Fatalf("%d messages delivered, want 1", c.len())
	}

	// The subscriber's side: a fresh publish grant for the publisher, then
	// the subscriber's own grant revoked at the publisher.
	fresh := a.Grant(t, peerdid.Of(pub.h.ID()), ucan.Publish, ordersPattern)
	pub.tab.SetSelf(validate(t, pub.v, pub.h.ID(), []ucan.Chain{fresh}))
	sub.admit(t, pub.h.ID(), fresh)
	publish(t, pub.ps, "io.acme.orders.placed", []byte("4"))
	c.waitLen(t, 5*time.Second, 2)
	if err := pub.v.AddRevocation(a.Revoke(t, subChain)); err != nil {
		t.Fatal(err)
	}
	publish(t, pub.ps, "io.acme.orders.placed", []byte("5"))
	if n := pub.ps.Stats().WithheldUnauthorized; n != 1 {
		t.Fatalf("%d messages withheld after revoking the subscriber, want 1", n)
	}
}

// TestOpenPolicyChecksNothing: access.Open, like nil, is an open realm.
func TestOpenPolicyChecksNothing(t *testing.T) {
	h := newHost(t)
	for _, pol := range []access.Policy{nil, access.Open(h.ID())} {
		ps, err := New(h, nopRouter{}, nil, Config{Realm: testRealm, Access: pol, Logger: testnet.QuietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		if ps.secure {
			t.Errorf("Access %T: pubsub checks", pol)
		}
		if _, err := ps.Subscribe("io.acme.>", func(Message) {}); err != nil {
			t.Error(err)
		}
		if err := ps.Publish(context.Background(), "io.acme.orders.x.y", nil); err != nil {
			t.Error(err)
		}
		ps.Close()
	}
}

// nopRouter is a Router with no DHT behind it.
type nopRouter struct{}

func (nopRouter) Provide(context.Context, string) error { return nil }
func (nopRouter) StopProviding(string)                  {}
func (nopRouter) Lookup(context.Context, string, int) ([]peer.AddrInfo, error) {
	return nil, nil
}

// A node's own subscription stops getting messages once the node's own
// subscribe right is revoked, even from a publisher that has not heard of
// the revocation.
func TestOwnSubscriptionStopsOnRevocation(t *testing.T) {
	a := testnet.NewAuthority(t)
	pub, sub, _, subChain := securePair(t, a, nil, nil)
	_, c := subscribe(t, sub.ps, ordersPattern)
	waitRoutable(t, pub, sub)
	publish(t, pub.ps, "io.acme.orders.placed", []byte("1"))
	c.waitLen(t, 5*time.Second, 1)

	if err := sub.v.AddRevocation(a.Revoke(t, subChain)); err != nil {
		t.Fatal(err)
	}
	publish(t, pub.ps, "io.acme.orders.placed", []byte("2"))
	testnet.Eventually(t, 5*time.Second, func() error {
		if n := sub.ps.Stats().WithheldUnauthorized; n != 1 {
			return fmt.Errorf("%d messages withheld from the revoked subscription, want 1", n)
		}
		return nil
	})
	if c.len() != 1 {
		t.Fatalf("%d messages delivered, want 1", c.len())
	}
}
