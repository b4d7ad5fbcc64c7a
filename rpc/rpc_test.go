package rpc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/macula-io/macula/dht"
	"github.com/macula-io/macula/event"
	"github.com/macula-io/macula/frame"
	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/realm"
)

func TestMain(m *testing.M) {
	testnet.VerifyTestMain(m)
}

const testRealm = "io.acme.orders"

type tnode struct {
	h   host.Host
	d   *dht.DHT
	rpc *RPC
	bus *event.Bus
}

// newNode starts a host, its DHT and an RPC service on loopback; it closes
// them when the test ends (Close is idempotent, so tests may close early).
func newNode(t testing.TB, mod func(*Config)) *tnode {
	t.Helper()
	h := testnet.Host(t)
	d, err := dht.New(h, dht.Config{Realm: testRealm, Logger: testnet.QuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Realm: testRealm, Logger: testnet.QuietLogger()}
	if mod != nil {
		mod(&cfg)
	}
	bus := event.NewBus()
	r, err := New(h, d, bus, cfg)
	if err != nil {
		t.Fatal(err)
	}
	n := &tnode{h: h, d: d, rpc: r, bus: bus}
	t.Cleanup(func() { n.close() })
	return n
}

func (n *tnode) close() {
	n.rpc.Close()
	n.d.Close()
	n.h.Close()
	n.bus.Close()
}

// mesh connects every node to the first and fills the routing tables.
func mesh(t testing.TB, nodes ...*tnode) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, n := range nodes[1:] {
		if err := n.h.Connect(ctx, peer.AddrInfo{ID: nodes[0].h.ID(), Addrs: nodes[0].h.Addrs()}); err != nil {
			t.Fatal(err)
		}
	}
	testnet.Eventually(t, 20*time.Second, func() error {
		if n := len(nodes[0].d.RoutingTablePeers()); n != len(nodes)-1 {
			return fmt.Errorf("the first node's routing table holds %d peers, want %d", n, len(nodes)-1)
		}
		return nil
	})
	for _, n := range nodes[1:] {
		_ = n.d.RefreshRoutingTable(ctx)
	}
}

func echo(_ context.Context, req *Request) ([]byte, error) { return req.Payload, nil }

func advertise(t testing.TB, n *tnode, proc string, h Handler) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.rpc.Advertise(ctx, proc, h); err != nil {
		t.Fatal(err)
	}
}

// waitCallable polls until a call from n to proc succeeds.
func waitCallable(t testing.TB, n *tnode, proc string) {
	t.Helper()
	testnet.Eventually(t, 20*time.Second, func() error {
		n.rpc.mu.Lock()
		delete(n.rpc.providers, proc) // look again
		n.rpc.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := n.rpc.Call(ctx, proc, []byte("ping"))
		var re *RemoteError
		if errors.As(err, &re) {
			return nil // reached a handler
		}
		return err
	})
}

// waitProviders looks proc up again on n until it knows want providers.
func waitProviders(t testing.TB, n *tnode, proc string, want int) {
	t.Helper()
	testnet.Eventually(t, 20*time.Second, func() error {
		n.rpc.mu.Lock()
		delete(n.rpc.providers, proc)
		n.rpc.mu.Unlock()
		_ = n.rpc.lookup(context.Background(), proc)
		n.rpc.mu.Lock()
		defer n.rpc.mu.Unlock()
		got := 0
		if ps := n.rpc.providers[proc]; ps != nil {
			got = len(ps.peers)
		}
		if got != want {
			return fmt.Errorf("%d providers of %s known, want %d", got, proc, want)
		}
		return nil
	})
}

func TestCallAcrossNodes(t *testing.T) {
	a, b := newNode(t, nil), newNode(t, nil)
	mesh(t, a, b)
	var seen Caller
	var mu sync.Mutex
	advertise(t, a, "io.acme.orders.get_order", func(ctx context.Context, req *Request) ([]byte, error) {
		mu.Lock()
		seen = req.Caller
		mu.Unlock()
		return append([]byte("order:"), req.Payload...), nil
	})
	waitCallable(t, b, "io.acme.orders.get_order")
	reply, err := b.rpc.Call(context.Background(), "io.acme.orders.get_order", []byte("42"))
	if err != nil || string(reply) != "order:42" {
		t.Fatalf("Call = %q, %v", reply, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if seen.PeerID != b.h.ID() || seen.DID != b.rpc.self.DID || seen.DID == "" {
		t.Fatalf("handler saw caller %+v, want %s", seen, b.h.ID())
	}
}

func TestLocalCallTakesNoNetworkPath(t *testing.T) {
	a := newNode(t, nil) // alone: no peers, no DHT
	var caller Caller
	advertise(t, a, "io.acme.orders.local", func(ctx context.Context, req *Request) ([]byte, error) {
		caller = req.Caller
		return []byte("here"), nil
	})
	reply, err := a.rpc.Call(context.Background(), "io.acme.orders.local", nil)
	if err != nil || string(reply) != "here" || caller.PeerID != a.h.ID() {
		t.Fatalf("local call = %q, %v, caller %v", reply, err, caller)
	}
	if len(a.rpc.conns) != 0 {
		t.Fatal("a local call opened a stream")
	}
}

func TestTypedErrors(t *testing.T) {
	a, b := newNode(t, nil), newNode(t, nil)
	mesh(t, a, b)
	block := make(chan struct{})
	defer close(block)
	advertise(t, a, "io.acme.orders.fail", func(ctx context.Context, req *Request) ([]byte, error) {
		return nil, &RemoteError{Code: "invalid_order", Message: "no such order", Data: []byte(`{"id":42}`)}
	})
	advertise(t, a, "io.acme.orders.plain_fail", func(ctx context.Context, req *Request) ([]byte, error) {
		return nil, errors.New("disk on fire")
	})
	advertise(t, a, "io.acme.orders.panic", func(ctx context.Context, req *Request) ([]byte, error) {
		panic("boom")
	})
	advertise(t, a, "io.acme.orders.slow", func(ctx context.Context, req *Request) ([]byte, error) {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-block:
			return nil, nil
		}
	})
	advertise(t, a, "io.acme.orders.echo", echo)
	waitCallable(t, b, "io.acme.orders.echo")
	ctx := context.Background()

	_, err := b.rpc.Call(ctx, "io.acme.orders.fail", nil)
	var re *RemoteError
	if !errors.As(err, &re) || re.Code != "invalid_order" || re.Message != "no such order" || string(re.Data) != `{"id":42}` {
		t.Fatalf("remote error = %v (%+v)", err, re)
	}
	if _, err := b.rpc.Call(ctx, "io.acme.orders.plain_fail", nil); !errors.As(err, &re) || re.Code != CodeInternal || re.Message != "disk on fire" {
		t.Fatalf("plain error = %v", err)
	}
	if _, err := b.rpc.Call(ctx, "io.acme.orders.panic", nil); !errors.As(err, &re) || re.Code != CodeInternal {
		t.Fatalf("panic = %v", err)
	}
	start := time.Now()
	_, err = b.rpc.Call(ctx, "io.acme.orders.slow", nil, WithTimeout(200*time.Millisecond))
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("timeout = %v", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("a 200ms timeout took %v", el)
	}
	if _, err := b.rpc.Call(ctx, "io.acme.orders.nobody", nil, WithTimeout(3*time.Second)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("not found = %v", err)
	}
	if _, err := b.rpc.Call(ctx, "io.other.realm.x", nil); !errors.Is(err, realm.ErrOutsideRealm) {
		t.Fatalf("outside realm = %v", err)
	}
	if _, err := b.rpc.Call(ctx, "io.acme.orders.*", nil); !errors.Is(err, realm.ErrInvalid) {
		t.Fatalf("wildcard procedure = %v", err)
	}
	if _, err := b.rpc.Call(ctx, "io.acme.orders.echo", make([]byte, 1<<20+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("big payload = %v", err)
	}
	if err := b.rpc.Advertise(ctx, "io.other.realm.x", echo); !errors.Is(err, realm.ErrOutsideRealm) {
		t.Fatalf("advertise outside realm = %v", err)
	}
	// Still serving after all that.
	if r, err := b.rpc.Call(ctx, "io.acme.orders.echo", []byte("ok")); err != nil || string(r) != "ok" {
		t.Fatalf("echo after errors = %q, %v", r, err)
	}
}

func TestDisconnectMidCall(t *testing.T) {
	a, b := newNode(t, nil), newNode(t, nil)
	mesh(t, a, b)
	started := make(chan struct{}, 1)
	advertise(t, a, "io.acme.orders.hang", func(ctx context.Context, req *Request) ([]byte, error) {
		if string(req.Payload) == "hang" {
			started <- struct{}{}
			<-ctx.Done()
		}
		return nil, nil
	})
	waitCallable(t, b, "io.acme.orders.hang")
	errc := make(chan error, 1)
	go func() {
		_, err := b.rpc.Call(context.Background(), "io.acme.orders.hang", []byte("hang"), WithTimeout(20*time.Second))
		errc <- err
	}()
	<-started
	a.close()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrDisconnected) {
			t.Fatalf("call cut off = %v, want ErrDisconnected", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the call did not end when its callee went away")
	}
}

func TestLoadBalancingAndFailover(t *testing.T) {
	for _, policy := range []Policy{RoundRobin, Random, LeastInFlight} {
		t.Run(string(policy), func(t *testing.T) {
			a, b, c := newNode(t, nil), newNode(t, nil), newNode(t, func(c *Config) { c.Policy = policy })
			mesh(t, a, b, c)
			var na, nb atomic.Int64
			advertise(t, a, "io.acme.orders.work", func(ctx context.Context, req *Request) ([]byte, error) { na.Add(1); return []byte("a"), nil })
			advertise(t, b, "io.acme.orders.work", func(ctx context.Context, req *Request) ([]byte, error) { nb.Add(1); return []byte("b"), nil })
			waitProviders(t, c, "io.acme.orders.work", 2)
			var wg sync.WaitGroup
			errs := make(chan error, 200)
			for i := 0; i < 200; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, err := c.rpc.Call(context.Background(), "io.acme.orders.work", nil); err != nil {
						errs <- err
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			// Round robin and random spread evenly; least in flight
			// follows the load, which on a busy machine may favour one
			// provider heavily, but never only one.
			least := int64(20)
			if policy == LeastInFlight {
				least = 1
			}
			if na.Load() < least || nb.Load() < least {
				t.Fatalf("calls spread %d / %d, want both to serve at least %d", na.Load(), nb.Load(), least)
			}
			// Withdraw one: calls go to the other, none fails.
			if err := a.rpc.Unadvertise("io.acme.orders.work"); err != nil {
				t.Fatal(err)
			}
			before := nb.Load()
			for i := 0; i < 20; i++ {
				if r, err := c.rpc.Call(context.Background(), "io.acme.orders.work", nil); err != nil || string(r) != "b" {
					t.Fatalf("after unadvertise: %q, %v", r, err)
				}
			}
			if nb.Load()-before != 20 {
				t.Fatalf("b served %d of 20", nb.Load()-before)
			}
		})
	}
}

func TestCancelReachesHandler(t *testing.T) {
	a, b := newNode(t, nil), newNode(t, nil)
	mesh(t, a, b)
	cancelled := make(chan struct{})
	started := make(chan struct{}, 1)
	advertise(t, a, "io.acme.orders.wait", func(ctx context.Context, req *Request) ([]byte, error) {
		if string(req.Payload) != "x" {
			return nil, nil
		}
		started <- struct{}{}
		<-ctx.Done()
		close(cancelled)
		return nil, ctx.Err()
	})
	waitCallable(t, b, "io.acme.orders.wait")
	ctx, cancel := context.WithCancel(context.Background())
	p := b.rpc.CallAsync(ctx, "io.acme.orders.wait", []byte("x"))
	<-started
	cancel()
	if _, err := p.Result(); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call = %v", err)
	}
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler's context was not cancelled")
	}
}

func TestSlowHandlerDoesNotBlockOthers(t *testing.T) {
	a, b := newNode(t, nil), newNode(t, nil)
	mesh(t, a, b)
	release := make(chan struct{})
	advertise(t, a, "io.acme.orders.slow", func(ctx context.Context, req *Request) ([]byte, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil, nil
	})
	advertise(t, a, "io.acme.orders.fast", echo)
	waitCallable(t, b, "io.acme.orders.fast")
	var pend []*Pending
	for i := 0; i < 50; i++ {
		pend = append(pend, b.rpc.CallAsync(context.Background(), "io.acme.orders.slow", nil, WithTimeout(30*time.Second)))
	}
	for i := 0; i < 100; i++ {
		if _, err := b.rpc.Call(context.Background(), "io.acme.orders.fast", []byte("x"), WithTimeout(10*time.Second)); err != nil {
			t.Fatalf("fast call %d while slow ones run: %v", i, err)
		}
	}
	close(release)
	for _, p := range pend {
		if _, err := p.Result(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOverloadedCallee(t *testing.T) {
	a := newNode(t, func(c *Config) { c.MaxConcurrentPerPeer = 2 })
	b := newNode(t, nil)
	mesh(t, a, b)
	release := make(chan struct{})
	held := make(chan struct{}, 2)
	advertise(t, a, "io.acme.orders.hold", func(ctx context.Context, req *Request) ([]byte, error) {
		if string(req.Payload) == "x" {
			held <- struct{}{}
			<-release
		}
		return nil, nil
	})
	waitCallable(t, b, "io.acme.orders.hold")
	p1 := b.rpc.CallAsync(context.Background(), "io.acme.orders.hold", []byte("x"))
	p2 := b.rpc.CallAsync(context.Background(), "io.acme.orders.hold", []byte("x"))
	<-held
	<-held
	var re *RemoteError
	testnet.Eventually(t, 20*time.Second, func() error {
		_, err := b.rpc.Call(context.Background(), "io.acme.orders.hold", []byte("y"), WithTimeout(time.Second))
		if errors.As(err, &re) && re.Code == CodeOverloaded {
			return nil
		}
		return fmt.Errorf("a third call answered %v, want a remote error %s", err, CodeOverloaded)
	})
	close(release)
	if _, err := p1.Result(); err != nil {
		t.Fatal(err)
	}
	if _, err := p2.Result(); err != nil {
		t.Fatal(err)
	}
}

// A caller that waits for each answer before its next call never exceeds
// the callee's bound, so it is never refused as overloaded: the slot is
// free before the answer goes out.
func TestSequentialCallsAtTheBound(t *testing.T) {
	a := newNode(t, func(c *Config) { c.MaxConcurrentPerPeer = 1 })
	b := newNode(t, nil)
	mesh(t, a, b)
	advertise(t, a, "io.acme.orders.echo1", func(_ context.Context, req *Request) ([]byte, error) {
		return req.Payload, nil
	})
	waitCallable(t, b, "io.acme.orders.echo1")
	for i := range 500 {
		if _, err := b.rpc.Call(context.Background(), "io.acme.orders.echo1", []byte("x"), WithTimeout(10*time.Second)); err != nil {
			t.Fatalf("call %d of a caller that waits for each answer: %v", i, err)
		}
	}
}

func TestCodecs(t *testing.T) {
	a, b := newNode(t, nil), newNode(t, nil)
	mesh(t, a, b)
	type order struct {
		ID    int      `json:"id" cbor:"id"`
		Items []string `json:"items" cbor:"items"`
	}
	advertise(t, a, "io.acme.orders.typed", Typed(func(ctx context.Context, req *Request, in order) (order, error) {
		in.Items = append(in.Items, req.Codec.String())
		return in, nil
	}))
	waitCallable(t, b, "io.acme.orders.typed")
	for _, c := range []Codec{JSON, CBOR} {
		var out order
		if err := b.rpc.CallValue(context.Background(), c, "io.acme.orders.typed", order{ID: 7, Items: []string{"x"}}, &out); err != nil {
			t.Fatal(err)
		}
		if out.ID != 7 || len(out.Items) != 2 || out.Items[1] != c.String() {
			t.Fatalf("%v round trip = %+v", c, out)
		}
	}
	var re *RemoteError
	if _, err := b.rpc.Call(context.Background(), "io.acme.orders.typed", []byte("{bad"), WithCodec(JSON)); !errors.As(err, &re) || re.Code != CodeBadRequest {
		t.Fatalf("bad JSON = %v", err)
	}
}

// Garbage on a raw stream closes that stream only; the node keeps serving.
func TestBadFramesCloseOnlyTheirStream(t *testing.T) {
	a, b := newNode(t, nil), newNode(t, nil)
	mesh(t, a, b)
	advertise(t, a, "io.acme.orders.echo", echo)
	waitCallable(t, b, "io.acme.orders.echo")
	bad := map[string][]byte{
		"garbage":        []byte("GET / HTTP/1.1\r\n\r\n"),
		"oversized":      frame.AppendHeader(nil, frameRequest, wireVersion, 1<<30),
		"truncated":      frame.Append(nil, frameRequest, wireVersion, []byte{1, 2, 3}),
		"unknown type":   frame.Append(nil, 99, wireVersion, nil),
		"wrong version":  frame.Append(nil, frameRequest, 7, make([]byte, 30)),
		"short cancel":   frame.Append(nil, frameCancel, wireVersion, []byte{1}),
		"name past body": frame.Append(nil, frameRequest, wireVersion, append(make([]byte, 18), 200)),
	}
	for name, raw := range bad {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s, err := b.h.NewStream(ctx, a.h.ID(), Protocol(testRealm))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			_, _ = s.Write(raw)
			_ = s.CloseWrite()
			_ = s.SetReadDeadline(time.Now().Add(10 * time.Second))
			got, _ := io.ReadAll(s)
			if len(got) != 0 {
				t.Fatalf("answered %q to a bad frame", got)
			}
			if r, err := b.rpc.Call(ctx, "io.acme.orders.echo", []byte("still"), WithTimeout(5*time.Second)); err != nil || string(r) != "still" {
				t.Fatalf("after %s: %q, %v", name, r, err)
			}
		})
	}
}

func TestEventsAndStats(t *testing.T) {
	a, b := newNode(t, nil), newNode(t, nil)
	mesh(t, a, b)
	advertise(t, a, "io.acme.orders.echo", echo)
	waitCallable(t, b, "io.acme.orders.echo")
	sub := b.bus.Subscribe(8, event.CallStart, event.CallStop)
	defer sub.Close()
	if _, err := b.rpc.Call(context.Background(), "io.acme.orders.echo", nil); err != nil {
		t.Fatal(err)
	}
	start, stop := <-sub.C, <-sub.C
	if start.Kind != event.CallStart || stop.Kind != event.CallStop || stop.Outcome != OutcomeOK ||
		stop.Peer != a.h.ID().String() || stop.Procedure != "io.acme.orders.echo" || stop.Duration <= 0 {
		t.Fatalf("events %v / %v", start, stop)
	}
	st := b.rpc.Stats()
	var total uint64
	for _, n := range st.Buckets {
		total += n
	}
	if st.Calls[OutcomeOK] < 1 || total != st.Calls[OutcomeOK]+st.Calls[OutcomeNotFound]+st.Calls[OutcomeTimeout]+st.Calls[OutcomeError]+st.Calls[OutcomeRemoteError]+st.Calls[OutcomeDisconnected]+st.Calls[OutcomeUnauthorized] {
		t.Fatalf("stats %+v", st)
	}
	if a.rpc.Stats().Served < 1 {
		t.Fatal("callee counted no served call")
	}
}

func TestCloseEndsCalls(t *testing.T) {
	a := newNode(t, nil)
	advertise(t, a, "io.acme.orders.block", func(ctx context.Context, req *Request) ([]byte, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	if err := a.rpc.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.rpc.Call(context.Background(), "io.acme.orders.block", nil); !errors.Is(err, ErrClosed) || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("call after Close = %v, want ErrClosed and net.ErrClosed", err)
	}
	if err := a.rpc.Advertise(context.Background(), "io.acme.orders.x", echo); !errors.Is(err, ErrClosed) {
		t.Fatalf("advertise after Close = %v", err)
	}
	if p := a.rpc.CallAsync(context.Background(), "io.acme.orders.block", nil); !errors.Is(p.err, ErrClosed) {
		t.Fatalf("CallAsync after Close = %v", p.err)
	}
}

func TestWireRoundTrip(t *testing.T) {
	req := request{id: 9, timeout: int64(time.Second), flags: flagIdempotent, codec: CBOR, procedure: "io.acme.orders.x", payload: []byte("p")}
	got, err := parseRequest(appendRequest(nil, &req))
	if err != nil || got.id != 9 || got.timeout != req.timeout || got.flags != req.flags || got.codec != CBOR || got.procedure != req.procedure || !bytes.Equal(got.payload, req.payload) {
		t.Fatalf("request round trip = %+v, %v", got, err)
	}
	resp := response{id: 3, status: statusError, codec: JSON, err: &RemoteError{Code: "c", Message: "m", Data: []byte("d")}}
	gr, err := parseResponse(appendResponse(nil, &resp))
	if err != nil || gr.id != 3 || gr.err.Code != "c" || gr.err.Message != "m" || string(gr.err.Data) != "d" {
		t.Fatalf("response round trip = %+v, %v", gr, err)
	}
}

func FuzzParseRequest(f *testing.F) {
	f.Add(appendRequest(nil, &request{id: 1, procedure: "io.a.b", payload: []byte("x")}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseRequest(b)
		if err != nil {
			return
		}
		again := appendRequest(nil, &r)
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs: %x vs %x", again, b)
		}
	})
}

func FuzzParseResponse(f *testing.F) {
	f.Add(appendResponse(nil, &response{id: 1, status: statusOK, payload: []byte("x")}))
	f.Add(appendResponse(nil, &response{id: 2, status: statusError, err: &RemoteError{Code: "c", Message: "m"}}))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 5})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseResponse(b)
		if err != nil {
			return
		}
		if r.status == statusError && r.err == nil || r.status == statusOK && r.err != nil {
			t.Fatalf("status %d with err %v", r.status, r.err)
		}
		again := appendResponse(nil, &r)
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs: %x vs %x", again, b)
		}
	})
}

// A call that waits on a callee from which nothing comes is reported to
// Config.Unanswered (the node pings the callee then).
func TestUnansweredCallReported(t *testing.T) {
	told := make(chan peer.ID, 16)
	a := newNode(t, nil)
	b := newNode(t, func(c *Config) {
		c.ProbeAfter = 100 * time.Millisecond
		c.Unanswered = func(p peer.ID) {
			select {
			case told <- p:
			default:
			}
		}
	})
	mesh(t, a, b)
	release := make(chan struct{})
	advertise(t, a, "io.acme.orders.slow", func(ctx context.Context, req *Request) ([]byte, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return []byte("done"), nil
	})
	advertise(t, a, "io.acme.orders.fast", echo)
	waitCallable(t, b, "io.acme.orders.fast")
	for range 20 {
		if _, err := b.rpc.Call(context.Background(), "io.acme.orders.fast", []byte("x"), WithTimeout(10*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	for len(told) > 0 {
		<-told // a fast call may have waited ProbeAfter under load
	}
	pend := b.rpc.CallAsync(context.Background(), "io.acme.orders.slow", nil, WithTimeout(30*time.Second))
	select {
	case p := <-told:
		if p != a.h.ID() {
			t.Fatalf("told of %s, want the callee %s", p, a.h.ID())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a call waiting on a silent callee was never reported")
	}
	close(release)
	if reply, err := pend.Result(); err != nil || string(reply) != "done" {
		t.Fatalf("the slow call: %q, %v", reply, err)
	}
}
