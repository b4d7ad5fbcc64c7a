package rpc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/macula-io/macula/access"
	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/peerdid"
	"github.com/macula-io/macula/ucan"
)

// authority is a secure realm's authority and the validator of its nodes.
type authority struct {
	*testnet.Authority
	v *ucan.Validator
}

func newAuthority(t testing.TB) *authority {
	t.Helper()
	a := testnet.NewAuthority(t)
	v, err := ucan.New(ucan.Config{Realm: testRealm, Authority: a.DID, Logger: testnet.QuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return &authority{Authority: a, v: v}
}

// verdict validates chains as presented by p.
func (a *authority) verdict(t testing.TB, p peer.ID, chains ...ucan.Chain) *ucan.Verdict {
	t.Helper()
	vd, err := a.v.Validate(context.Background(), peerdid.Of(p), chains)
	if err != nil {
		t.Fatal(err)
	}
	return vd
}

// may returns p's verdict on one grant of cmd on resource.
func (a *authority) may(t testing.TB, p peer.ID, cmd ucan.Command, resource string) *ucan.Verdict {
	t.Helper()
	return a.verdict(t, p, a.Grant(t, peerdid.Of(p), cmd, resource))
}

// secureNode starts a node of the authority's realm whose policy is a table
// the test fills, as the node would after each realm handshake. Its own
// verdict grants the capabilities given as command, pattern pairs.
func secureNode(t testing.TB, a *authority, mod func(*Config), self ...string) (*tnode, *access.Table) {
	t.Helper()
	tab := access.NewTable(nil)
	n := newNode(t, func(c *Config) {
		c.Access = tab
		if mod != nil {
			mod(c)
		}
	})
	var chains []ucan.Chain
	for i := 0; i+1 < len(self); i += 2 {
		chains = append(chains, a.Grant(t, peerdid.Of(n.h.ID()), ucan.Command(self[i]), self[i+1]))
	}
	if len(chains) > 0 {
		tab.SetSelf(a.verdict(t, n.h.ID(), chains...))
	}
	return n, tab
}

func TestAuthCallerVerdictOnServer(t *testing.T) {
	auth := newAuthority(t)
	a, at := secureNode(t, auth, nil, string(ucan.Advertise), "io.acme.orders.>")
	// b's own verdict lets it try any call: what is tested is a's view of
	// b, the verdict in a's table.
	b, bt := secureNode(t, auth, nil, string(ucan.Call), "io.acme.orders.>")
	bt.Set(a.h.ID(), auth.may(t, a.h.ID(), ucan.Advertise, "io.acme.orders.>"))
	at.Set(b.h.ID(), auth.may(t, b.h.ID(), ucan.Call, "io.acme.orders.*"))
	mesh(t, a, b)

	var ran atomic.Int64
	var mu sync.Mutex
	var seen *ucan.Verdict
	handler := func(_ context.Context, req *Request) ([]byte, error) {
		ran.Add(1)
		mu.Lock()
		seen = req.Verdict
		mu.Unlock()
		// One more check, as a handler would on its own terms.
		if err := ucan.Check(req.Verdict, ucan.Call, "io.acme.orders.audit"); err != nil {
			return nil, Errorf(CodeUnauthorized, "no audit: %v", err)
		}
		return []byte("ok"), nil
	}
	advertise(t, a, "io.acme.orders.get", handler)
	advertise(t, a, "io.acme.orders.billing.charge", handler)
	waitCallable(t, b, "io.acme.orders.get")
	ctx := context.Background()

	call := func(proc string) error {
		t.Helper()
		_, err := b.rpc.Call(ctx, proc, nil, WithTimeout(5*time.Second))
		return err
	}
	refused := func(what, proc string) {
		t.Helper()
		before, refusedBefore := ran.Load(), a.rpc.Stats().Refused
		err := call(proc)
		if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), proc) {
			t.Fatalf("%s: call = %v, want ErrUnauthorized naming %s", what, err, proc)
		}
		var re *RemoteError
		if !errors.As(err, &re) || re.Code != CodeUnauthorized {
			t.Fatalf("%s: %v is not a remote %q", what, err, CodeUnauthorized)
		}
		if ran.Load() != before {
			t.Fatalf("%s: the handler ran", what)
		}
		if got := a.rpc.Stats().Refused; got != refusedBefore+1 {
			t.Fatalf("%s: Stats.Refused = %d, want %d", what, got, refusedBefore+1)
		}
	}

	t.Run("allowed", func(t *testing.T) {
		if err := call("io.acme.orders.get"); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		vd := seen
		mu.Unlock()
		g := vd.Grant()
		if vd.Caller() != peerdid.Of(b.h.ID()) || g.Caller != peerdid.Of(b.h.ID()) || g.Open {
			t.Fatalf("handler saw caller %q (grant %+v), want %s", vd.Caller(), g, peerdid.Of(b.h.ID()))
		}
		want := ucan.Capability{Command: ucan.Call, Resource: "io.acme.orders.*"}
		if !slices.Contains(g.Capabilities, want) {
			t.Fatalf("handler saw capabilities %v, want %v", g.Capabilities, want)
		}
	})
	t.Run("resource outside the pattern", func(t *testing.T) {
		refused("outside", "io.acme.orders.billing.charge")
	})
	t.Run("verdict removed mid-connection", func(t *testing.T) {
		if err := call("io.acme.orders.get"); err != nil {
			t.Fatal(err)
		}
		at.Delete(b.h.ID())
		refused("no verdict", "io.acme.orders.get")
	})
	t.Run("wrong command", func(t *testing.T) {
		at.Set(b.h.ID(), auth.may(t, b.h.ID(), ucan.Subscribe, "io.acme.orders.*"))
		refused("subscribe only", "io.acme.orders.get")
	})
	t.Run("revoked", func(t *testing.T) {
		ch := auth.Grant(t, peerdid.Of(b.h.ID()), ucan.Call, "io.acme.orders.>")
		at.Set(b.h.ID(), auth.verdict(t, b.h.ID(), ch))
		if err := call("io.acme.orders.billing.charge"); err != nil {
			t.Fatal(err)
		}
		if err := auth.v.AddRevocation(auth.Revoke(t, ch)); err != nil {
			t.Fatal(err)
		}
		refused("revoked", "io.acme.orders.billing.charge")
	})
	t.Run("handler's own check", func(t *testing.T) {
		at.Set(b.h.ID(), auth.may(t, b.h.ID(), ucan.Call, "io.acme.orders.get"))
		err := call("io.acme.orders.get")
		var re *RemoteError
		if !errors.As(err, &re) || re.Code != CodeUnauthorized || !strings.Contains(re.Message, "no audit") {
			t.Fatalf("call = %v, want the handler's refusal", err)
		}
	})
}

func TestAuthSelfChecks(t *testing.T) {
	auth := newAuthority(t)
	n, tab := secureNode(t, auth, nil, string(ucan.Call), "io.acme.orders.*")
	ctx := context.Background()

	// Advertising needs the advertise right on the procedure.
	err := n.rpc.Advertise(ctx, "io.acme.orders.get", echo)
	if !errors.Is(err, ErrUnauthorized) || !errors.Is(err, ucan.ErrCommand) || !strings.Contains(err.Error(), "io.acme.orders.get") {
		t.Fatalf("Advertise without the right = %v", err)
	}
	if len(n.rpc.Advertised()) != 0 {
		t.Fatalf("advertised %v", n.rpc.Advertised())
	}
	tab.SetSelf(auth.verdict(t, n.h.ID(),
		auth.Grant(t, peerdid.Of(n.h.ID()), ucan.Advertise, "io.acme.orders.*"),
		auth.Grant(t, peerdid.Of(n.h.ID()), ucan.Call, "io.acme.orders.get")))
	if err := n.rpc.Advertise(ctx, "io.acme.orders.billing.charge", echo); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("Advertise outside the pattern = %v", err)
	}

	// A local call checks the node's own right too, and its handler sees
	// the node's own verdict.
	var seen *ucan.Verdict
	advertise(t, n, "io.acme.orders.get", func(_ context.Context, req *Request) ([]byte, error) {
		seen = req.Verdict
		return nil, nil
	})
	advertise(t, n, "io.acme.orders.put", echo)
	if _, err := n.rpc.Call(ctx, "io.acme.orders.get", nil); err != nil || seen != tab.Self() {
		t.Fatalf("local call = %v, handler saw %v", err, seen)
	}
	if _, err := n.rpc.Call(ctx, "io.acme.orders.put", nil); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("local call without the right = %v", err)
	}

	// A call without the right fails before any traffic.
	_, err = n.rpc.Call(ctx, "io.acme.orders.list", nil)
	if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "io.acme.orders.list") {
		t.Fatalf("Call without the right = %v", err)
	}
	if _, err := n.rpc.CallAsync(ctx, "io.acme.orders.list", nil).Result(); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("CallAsync without the right = %v", err)
	}
	n.rpc.mu.Lock()
	np, nc := len(n.rpc.providers), len(n.rpc.conns)
	n.rpc.mu.Unlock()
	if np != 0 || nc != 0 {
		t.Fatalf("a refused call looked up %d providers, opened %d streams", np, nc)
	}
	if got := n.rpc.Stats().Calls[OutcomeUnauthorized]; got != 3 {
		t.Fatalf("unauthorized outcomes = %d, want 3", got)
	}
	// No verdict at all: refused too.
	tab.SetSelf(nil)
	if _, err := n.rpc.Call(ctx, "io.acme.orders.get", nil); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("Call with no own verdict = %v", err)
	}
}

func TestAuthSkipsProviderWithoutAdvertiseRight(t *testing.T) {
	auth := newAuthority(t)
	const proc = "io.acme.orders.work"
	a, at := secureNode(t, auth, nil, string(ucan.Advertise), "io.acme.orders.*")
	// b advertises with its own verdict, but c knows it without the right.
	b, bt := secureNode(t, auth, nil, string(ucan.Advertise), "io.acme.orders.*")
	c, ct := secureNode(t, auth, nil, string(ucan.Call), "io.acme.orders.*")
	at.Set(c.h.ID(), auth.may(t, c.h.ID(), ucan.Call, "io.acme.orders.*"))
	bt.Set(c.h.ID(), auth.may(t, c.h.ID(), ucan.Call, "io.acme.orders.*"))
	ct.Set(a.h.ID(), auth.may(t, a.h.ID(), ucan.Advertise, "io.acme.orders.*"))
	ct.Set(b.h.ID(), auth.may(t, b.h.ID(), ucan.Call, "io.acme.orders.*"))
	mesh(t, a, b, c)
	var na, nb atomic.Int64
	advertise(t, a, proc, func(context.Context, *Request) ([]byte, error) { na.Add(1); return []byte("a"), nil })
	advertise(t, b, proc, func(context.Context, *Request) ([]byte, error) { nb.Add(1); return []byte("b"), nil })
	waitProviders(t, c, proc, 2)
	for i := 0; i < 20; i++ {
		if r, err := c.rpc.Call(context.Background(), proc, nil); err != nil || string(r) != "a" {
			t.Fatalf("call %d = %q, %v", i, r, err)
		}
	}
	if na.Load() != 20 || nb.Load() != 0 {
		t.Fatalf("a served %d, b %d; want 20, 0", na.Load(), nb.Load())
	}

	// No provider with the right left: not found, and nothing ran.
	ct.Set(a.h.ID(), auth.may(t, a.h.ID(), ucan.Advertise, "io.acme.orders.other"))
	_, err := c.rpc.Call(context.Background(), proc, nil)
	if !errors.Is(err, ErrNotFound) || errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "no authorized provider") {
		t.Fatalf("call with only refused providers = %v", err)
	}
	if na.Load() != 20 || nb.Load() != 0 {
		t.Fatalf("a refused provider ran the call: a %d, b %d", na.Load(), nb.Load())
	}
}

// TestAuthWaitsForNewPeersVerdict: a provider reached on a new connection
// has no verdict until the realm handshake ends; the caller waits for it up
// to DialTimeout.
func TestAuthWaitsForNewPeersVerdict(t *testing.T) {
	auth := newAuthority(t)
	const proc = "io.acme.orders.late"
	const dialTimeout = time.Second
	hub, _ := secureNode(t, auth, nil)
	watch := &verdictMisses{missed: make(chan peer.ID, 1)}
	b, bt := secureNode(t, auth, func(c *Config) {
		c.DialTimeout = dialTimeout
		watch.Policy, c.Access = c.Access, watch
	}, string(ucan.Call), "io.acme.orders.*")
	c, ct := secureNode(t, auth, nil, string(ucan.Advertise), "io.acme.orders.*")
	ct.Set(b.h.ID(), auth.may(t, b.h.ID(), ucan.Call, "io.acme.orders.*"))
	mesh(t, hub, b, c)
	advertise(t, c, proc, echo)
	testnet.Eventually(t, 20*time.Second, func() error {
		return b.rpc.lookup(context.Background(), proc)
	})
	disconnect := func() {
		t.Helper()
		testnet.Eventually(t, 20*time.Second, func() error {
			_ = b.h.Network().ClosePeer(c.h.ID())
			b.rpc.mu.Lock()
			cc := b.rpc.conns[c.h.ID()]
			b.rpc.mu.Unlock()
			if cc != nil || b.h.Network().Connectedness(c.h.ID()) == network.Connected {
				return fmt.Errorf("b still has a stream to c (%v) or is connected (%v)", cc != nil, b.h.Network().Connectedness(c.h.ID()))
			}
			return nil
		})
	}

	// No verdict ever comes: refused after DialTimeout, as not found.
	disconnect()
	start := time.Now()
	_, err := b.rpc.Call(context.Background(), proc, []byte("x"), WithTimeout(10*time.Second))
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "no authorized provider") {
		t.Fatalf("call to a provider without a verdict = %v", err)
	}
	if d := time.Since(start); d < dialTimeout/2 || d > dialTimeout+3*time.Second {
		t.Fatalf("gave up after %v, want about %v", d, dialTimeout)
	}

	// The verdict comes after the call looked for it on the new
	// connection and found none (as the realm handshake's does, a few
	// milliseconds after the connection): the call waits for it.
	disconnect()
	b.rpc.mu.Lock()
	delete(b.rpc.avoid, c.h.ID())
	b.rpc.mu.Unlock()
	for len(watch.missed) > 0 { // the misses of the call above
		<-watch.missed
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case p := <-watch.missed:
				if p != c.h.ID() {
					continue
				}
				bt.Set(c.h.ID(), auth.may(t, c.h.ID(), ucan.Advertise, "io.acme.orders.*"))
				return
			case <-stop:
				return
			}
		}
	}()
	reply, err := b.rpc.Call(context.Background(), proc, []byte("x"), WithTimeout(10*time.Second))
	close(stop)
	wg.Wait()
	if err != nil || string(reply) != "x" {
		t.Fatalf("call = %q, %v", reply, err)
	}
}

// verdictMisses is a node's policy that reports the peers it had no verdict
// for when asked (at most one report waits; later ones are dropped).
type verdictMisses struct {
	access.Policy
	missed chan peer.ID
}

func (w *verdictMisses) Peer(p peer.ID) *ucan.Verdict {
	vd := w.Policy.Peer(p)
	if vd == nil {
		select {
		case w.missed <- p:
		default:
		}
	}
	return vd
}

// BenchmarkCall measures a call across two nodes on loopback, in an open
// realm and in a secure one (a verdict lookup and check on each side).
func BenchmarkCall(b *testing.B) {
	for _, secure := range []bool{false, true} {
		name := "open"
		if secure {
			name = "secure"
		}
		b.Run(name, func(b *testing.B) {
			var x, y *tnode
			if secure {
				auth := newAuthority(b)
				var xt, yt *access.Table
				x, xt = secureNode(b, auth, nil, string(ucan.Advertise), "io.acme.orders.*")
				y, yt = secureNode(b, auth, nil, string(ucan.Call), "io.acme.orders.*")
				xt.Set(y.h.ID(), auth.may(b, y.h.ID(), ucan.Call, "io.acme.orders.*"))
				yt.Set(x.h.ID(), auth.may(b, x.h.ID(), ucan.Advertise, "io.acme.orders.*"))
			} else {
				x, y = newNode(b, nil), newNode(b, nil)
			}
			mesh(b, x, y)
			advertise(b, x, "io.acme.orders.bench", echo)
			waitCallable(b, y, "io.acme.orders.bench")
			ctx := context.Background()
			payload := []byte("0123456789abcdef")
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := y.rpc.Call(ctx, "io.acme.orders.bench", payload); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
