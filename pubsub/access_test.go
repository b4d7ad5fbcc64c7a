package pubsub

import (
	"context"
	"crypto/ed25519"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/macula-io/macula/access"
	"github.com/macula-io/macula/peerdid"
	"github.com/macula-io/macula/realm"
	"github.com/macula-io/macula/ucan"
)

// authority is a secure realm's authority, which issues grants.
type authority struct{ key ed25519.PrivateKey }

func newAuthority(t testing.TB) *authority {
	t.Helper()
	key, err := ucan.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return &authority{key: key}
}

// grant issues p a root delegation of cmd on the pattern resource.
func (a *authority) grant(t testing.TB, p peer.ID, cmd ucan.Command, resource string) ucan.Chain {
	t.Helper()
	c, err := ucan.Issue(a.key, ucan.IssueOptions{
		Audience: peerdid.Of(p),
		Command:  cmd,
		Resource: resource,
		Expires:  time.Now().Add(time.Hour),
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// revoke makes the record revoking the leaf of c.
func (a *authority) revoke(t testing.TB, c ucan.Chain) []byte {
	t.Helper()
	rec, err := ucan.Revoke(a.key, c.Leaf())
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// secureNode is a testNode of a secure realm: its own validator, as a node
// has, and the table of verdicts its pubsub enforces.
type secureNode struct {
	*testNode
	v   *ucan.Validator
	tab *access.Table
}

// newSecureNode starts a node whose own verdict is on chains.
func newSecureNode(t testing.TB, a *authority, chains func(self peer.ID) []ucan.Chain) *secureNode {
	t.Helper()
	v, err := ucan.New(ucan.Config{Realm: testRealm, Authority: ucan.KeyDID(a.key), Logger: quietLogger()})
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
func securePair(t *testing.T, a *authority, pubSees, subSees func(p peer.ID) []ucan.Chain) (pub, sub *secureNode, pubChain, subChain ucan.Chain) {
	t.Helper()
	pub = newSecureNode(t, a, func(p peer.ID) []ucan.Chain {
		pubChain = a.grant(t, p, ucan.Publish, ordersPattern)
		return []ucan.Chain{pubChain}
	})
	sub = newSecureNode(t, a, func(p peer.ID) []ucan.Chain {
		subChain = a.grant(t, p, ucan.Subscribe, ordersPattern)
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
	waitFor(t, 10*time.Second, "the publisher to learn the subscriber's interest", func() bool {
		return len(pub.ps.peerPatterns(sub.h.ID())) > 0 && pub.ps.routablePeers() == 1
	})
}

// TestAuthorizedPublish: a publisher granted io.acme.orders.* reaches a
// subscriber granted the same; a topic outside the grant is refused at
// Publish, and nothing is sent.
func TestAuthorizedPublish(t *testing.T) {
	a := newAuthority(t)
	pub, sub, _, _ := securePair(t, a, nil, nil)
	_, c := subscribe(t, sub.ps, ordersPattern)
	waitRoutable(t, pub, sub)

	publish(t, pub.ps, "io.acme.orders.placed", []byte("ok"))
	waitFor(t, 5*time.Second, "the message", func() bool { return c.len() == 1 })
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
	waitFor(t, 5*time.Second, "the sentinel", func() bool { return c.len() == 2 })
	if st := sub.ps.Stats(); st.FramesReceived != 2 || st.DroppedUnauthorized != 0 {
		t.Fatalf("subscriber stats %+v: want 2 frames, none refused", st)
	}
}

// TestSubscribeBeyondGrant: a subscription wider than the grant is refused
// and announces nothing; the publisher may not subscribe at all.
func TestSubscribeBeyondGrant(t *testing.T) {
	a := newAuthority(t)
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
	waitFor(t, 10*time.Second, "the publisher to learn the allowed patterns", func() bool {
		got := pub.ps.peerPatterns(sub.h.ID())
		slices.Sort(got)
		return slices.Equal(got, []string{ordersPattern, "io.acme.orders.placed"})
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
	a := newAuthority(t)
	pub, sub, pubChain, _ := securePair(t, a, func(p peer.ID) []ucan.Chain {
		return []ucan.Chain{a.grant(t, p, ucan.Subscribe, ordersPattern)}
	}, nil)
	_, c := subscribe(t, sub.ps, ordersPattern)
	waitRoutable(t, pub, sub)

	for i := 0; i < 10; i++ {
		publish(t, pub.ps, "io.acme.orders.placed", []byte("dropped"))
	}
	waitFor(t, 5*time.Second, "the messages to be refused", func() bool { return sub.ps.Stats().DroppedUnauthorized == 10 })

	// No verdict at all (the peer left the table) is refused too.
	sub.tab.Delete(pub.h.ID())
	publish(t, pub.ps, "io.acme.orders.placed", []byte("dropped"))
	waitFor(t, 5*time.Second, "the message to be refused", func() bool { return sub.ps.Stats().DroppedUnauthorized == 11 })

	sub.admit(t, pub.h.ID(), pubChain)
	publish(t, pub.ps, "io.acme.orders.placed", []byte("ok"))
	waitFor(t, 5*time.Second, "the allowed message", func() bool { return c.len() == 1 })
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
	a := newAuthority(t)
	pub, sub, _, subChain := securePair(t, a, nil, func(p peer.ID) []ucan.Chain {
		return []ucan.Chain{a.grant(t, p, ucan.Subscribe, "io.acme.orders.shipped")}
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
	waitFor(t, 5*time.Second, "the allowed messages", func() bool { return c.len() == 2 })
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
	a := newAuthority(t)
	pub, sub, pubChain, subChain := securePair(t, a, nil, nil)
	_, c := subscribe(t, sub.ps, ordersPattern)
	waitRoutable(t, pub, sub)

	publish(t, pub.ps, "io.acme.orders.placed", []byte("1"))
	waitFor(t, 5*time.Second, "the first message", func() bool { return c.len() == 1 })

	rec := a.revoke(t, pubChain)
	if err := sub.v.AddRevocation(rec); err != nil {
		t.Fatal(err)
	}
	publish(t, pub.ps, "io.acme.orders.placed", []byte("2"))
	waitFor(t, 5*time.Second, "the revoked message to be refused", func() bool { return sub.ps.Stats().DroppedUnauthorized == 1 })

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
	fresh := a.grant(t, pub.h.ID(), ucan.Publish, ordersPattern)
	pub.tab.SetSelf(validate(t, pub.v, pub.h.ID(), []ucan.Chain{fresh}))
	sub.admit(t, pub.h.ID(), fresh)
	publish(t, pub.ps, "io.acme.orders.placed", []byte("4"))
	waitFor(t, 5*time.Second, "the message under the fresh grant", func() bool { return c.len() == 2 })
	if err := pub.v.AddRevocation(a.revoke(t, subChain)); err != nil {
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
		ps, err := New(h, nopRouter{}, nil, Config{Realm: testRealm, Access: pol, Logger: quietLogger()})
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
	a := newAuthority(t)
	pub, sub, _, subChain := securePair(t, a, nil, nil)
	_, c := subscribe(t, sub.ps, ordersPattern)
	waitRoutable(t, pub, sub)
	publish(t, pub.ps, "io.acme.orders.placed", []byte("1"))
	waitFor(t, 5*time.Second, "the first message", func() bool { return c.len() == 1 })

	if err := sub.v.AddRevocation(a.revoke(t, subChain)); err != nil {
		t.Fatal(err)
	}
	publish(t, pub.ps, "io.acme.orders.placed", []byte("2"))
	waitFor(t, 5*time.Second, "the message to be withheld from the revoked subscription", func() bool {
		return sub.ps.Stats().WithheldUnauthorized == 1
	})
	if c.len() != 1 {
		t.Fatalf("%d messages delivered, want 1", c.len())
	}
}
