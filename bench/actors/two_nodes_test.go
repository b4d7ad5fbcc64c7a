package actorsbench

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/macula-io/macula/actors"
	"github.com/macula-io/macula/node"
	"github.com/macula-io/macula/rpc"
)

const (
	benchRealm = "io.acme.bench"
	procedure  = "io.acme.bench.echo"
)

type twoEnv struct {
	a, b   *node.Node
	sa, sb *actors.System
}

func startTwo(b *testing.B) *twoEnv {
	cfg := func(name string, boot []string, caps ...string) node.Config {
		c := node.DefaultConfig(benchRealm, name)
		c.ListenAddrs = []string{"/ip4/127.0.0.1/udp/0/quic-v1"}
		c.Bootstrap = boot
		c.Logger = quiet()
		c.Members.Capabilities = caps
		return c
	}
	a, err := node.New(cfg("a", nil, "bench"))
	if err != nil {
		b.Fatal(err)
	}
	var boot []string
	for _, m := range a.Addrs() {
		boot = append(boot, m.String())
	}
	bn, err := node.New(cfg("b", boot))
	if err != nil {
		a.Close()
		b.Fatal(err)
	}
	e := &twoEnv{a: a, b: bn}
	deadline := time.Now().Add(20 * time.Second)
	for len(a.Peers()) != 1 || len(bn.Peers()) != 1 {
		if time.Now().After(deadline) {
			e.close()
			b.Fatal("nodes a and b did not see each other")
		}
		time.Sleep(20 * time.Millisecond)
	}
	acfg := actors.Config{Realm: benchRealm, Logger: quiet()}
	if e.sa, err = actors.New(acfg, a.Members(), a.RPC(), a.Events()); err != nil {
		b.Fatal(err)
	}
	if err := e.sa.Register("bench", "echo", func(string) actors.Actor { return echo{} }); err != nil {
		b.Fatal(err)
	}
	if e.sb, err = actors.New(acfg, bn.Members(), bn.RPC(), bn.Events()); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.RPC().Advertise(ctx, procedure, func(_ context.Context, req *rpc.Request) ([]byte, error) { return req.Payload, nil }); err != nil {
		b.Fatal(err)
	}
	for {
		_, err1 := bn.RPC().Call(ctx, procedure, []byte("ping"), rpc.WithTimeout(2*time.Second))
		_, _, err2 := e.sb.Call(ctx, actors.Request{Capability: "bench", Kind: "echo", ID: "warm"})
		if err1 == nil && err2 == nil {
			break
		}
		if ctx.Err() != nil {
			b.Fatalf("not ready: rpc %v, actors %v", err1, err2)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return e
}

func (e *twoEnv) close() {
	if e.sb != nil {
		e.sb.Close()
	}
	if e.sa != nil {
		e.sa.Close()
	}
	e.b.Close()
	e.a.Close()
}

func twoNodes(b *testing.B) []result {
	e := startTwo(b)
	defer e.close()
	ctx := context.Background()
	// 10,000 started actors, called at random: the steady state (starting
	// them is the activate case's business).
	ids := make([]string, 10000)
	for i := range ids {
		ids[i] = fmt.Sprint("e", i)
		if _, _, err := e.sb.Call(ctx, actors.Request{Capability: "bench", Kind: "echo", ID: ids[i]}); err != nil {
			b.Fatal(err)
		}
	}
	var rs []result
	for _, c := range callerCounts(b) {
		rpcEcho := func() result {
			return measure("rpc-echo", c, func(caller, _ int) error {
				p := make([]byte, payloadSize)
				_, err := e.b.RPC().Call(ctx, procedure, p)
				return err
			})
		}
		actorEcho := func() result {
			r := measure("actor-echo", c, func(caller, seq int) error {
				p := make([]byte, payloadSize)
				id := ids[(caller*7919+seq*104729)%len(ids)]
				// No deadline: the system's CallTimeout (30s) applies, as
				// rpc's DefaultTimeout does to the echo.
				_, reply, err := e.sb.Call(ctx, actors.Request{Capability: "bench", Kind: "echo", ID: id, Payload: p})
				if err == nil && len(reply) != payloadSize {
					return fmt.Errorf("reply of %d bytes", len(reply))
				}
				return err
			})
			r.ref = "rpc-echo"
			return r
		}
		// Rounds in alternating order, the median of each: the machine is
		// shared, and its load changes from one case to the next.
		var rr, ar []result
		for i := range *flagRounds {
			if i%2 == 0 {
				rr, ar = append(rr, rpcEcho()), append(ar, actorEcho())
			} else {
				ar, rr = append(ar, actorEcho()), append(rr, rpcEcho())
			}
		}
		rs = append(rs, median(rr), median(ar))
	}
	return rs
}

// median returns the result of median throughput.
func median(rs []result) result {
	slices.SortFunc(rs, func(a, b result) int { return cmp.Compare(a.rps(), b.rps()) })
	return rs[len(rs)/2]
}
