package mesh

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/node"
)

func TestMain(m *testing.M) { testnet.VerifyTestMain(m) }

func startNode(t *testing.T, name string, bootstrap ...*node.Node) *node.Node {
	t.Helper()
	cfg := node.DefaultConfig("io.acme.mesh", name)
	cfg.ListenAddrs = []string{"/ip4/127.0.0.1/udp/0/quic-v1"}
	cfg.Logger = testnet.QuietLogger()
	for _, b := range bootstrap {
		for _, a := range b.Addrs() {
			cfg.Bootstrap = append(cfg.Bootstrap, a.String())
		}
	}
	n, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// TestGatherDrawsTheWholeMesh: three nodes, each connected to the two
// others; the third does not serve the procedure, and its links still show
// through the others.
func TestGatherDrawsTheWholeMesh(t *testing.T) {
	a := startNode(t, "a")
	b := startNode(t, "b", a)
	c := startNode(t, "c", a)
	for _, n := range []*node.Node{a, b} {
		if err := Serve(n); err != nil {
			t.Fatal(err)
		}
		if err := Serve(n); err != nil { // twice is fine
			t.Fatal(err)
		}
	}
	testnet.Eventually(t, 60*time.Second, func() error {
		for _, n := range []*node.Node{a, b, c} {
			if len(n.Peers()) != 2 {
				return fmt.Errorf("%s has %d peers, want 2", n.Name(), len(n.Peers()))
			}
		}
		return nil
	})
	var m Mesh
	testnet.Eventually(t, 30*time.Second, func() error {
		m = Gather(context.Background(), b, Options{Timeout: 5 * time.Second})
		if len(m.Nodes) != 3 || len(m.Links) != 3 {
			return fmt.Errorf("mesh: %d nodes and %d links, want 3 and 3: %+v", len(m.Nodes), len(m.Links), m)
		}
		return nil
	})
	for _, nd := range m.Nodes {
		switch nd.ID {
		case b.ID().String():
			if !nd.Self || nd.Name != "b" {
				t.Errorf("b: %+v", nd)
			}
		case a.ID().String():
			if !nd.Answered || nd.Name != "a" || nd.SkewMS == nil {
				t.Errorf("a: %+v", nd)
			}
			// One clock on one machine: the skew is within the round trip.
			if s := *nd.SkewMS; s > nd.SkewErrMS+50 || s < -nd.SkewErrMS-50 {
				t.Errorf("a's skew %v ms ± %v on one machine", s, nd.SkewErrMS)
			}
		case c.ID().String():
			if !nd.Asked || nd.Answered || nd.Error == "" {
				t.Errorf("c (serves nothing): %+v", nd)
			}
		}
	}
	for _, l := range m.Links {
		if l.Path != "direct" || l.A >= l.B {
			t.Errorf("link %+v", l)
		}
	}
}

func FuzzDecode(f *testing.F) {
	good := (&Reply{V: Version, Name: "n", TimeNs: 1, Peers: []ReplyPeer{{ID: "12D3KooWRLYwQm1f3hEJLNy1fprSDsZEhVoStqHScQcMDnMKFA9Q", Path: "relayed", RTTNs: 5}}}).Encode()
	f.Add(good)
	f.Add([]byte(`{"v":2}`))
	f.Add([]byte(`{"v":1,"peers":[{"id":"x","path":"direct"}]}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decode(b)
		if err != nil {
			return
		}
		// What decodes encodes and decodes to the same.
		r2, err := Decode(r.Encode())
		if err != nil {
			t.Fatalf("re-decoding %s: %v", r.Encode(), err)
		}
		if r2.V != r.V || r2.Name != r.Name || len(r2.Peers) != len(r.Peers) {
			t.Fatalf("round trip: %+v != %+v", r2, r)
		}
	})
}
