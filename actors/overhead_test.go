package actors

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/macula-io/macula/member"
	"github.com/macula-io/macula/rpc"
)

// loopNet hands CallPeer straight to the callee's handlers: the actor
// system's own cost of a remote message, without rpc and the network.
type loopNet map[peer.ID]*loopTransport

type loopTransport struct {
	net     loopNet
	self    peer.ID
	handles map[string]rpc.Handler
}

func (l *loopTransport) Handle(name string, h rpc.Handler) error { l.handles[name] = h; return nil }
func (l *loopTransport) Unhandle(string)                         {}
func (l *loopTransport) MaxPayload() int                         { return 1 << 20 }
func (l *loopTransport) CallPeer(ctx context.Context, p peer.ID, name string, payload []byte, _ ...rpc.CallOption) ([]byte, error) {
	req := &rpc.Request{Procedure: name, Payload: append([]byte(nil), payload...), Caller: rpc.Caller{PeerID: l.self}}
	return l.net[p].handles[name](ctx, req)
}

// BenchmarkRemoteOverhead: node b calls echo actors owned by node a through
// a transport that calls a's handler directly.
func BenchmarkRemoteOverhead(b *testing.B) {
	ids := []peer.ID{"\x00\x01a", "\x00\x01b"}
	net := loopNet{}
	view := []member.Member{{ID: ids[0], Capabilities: []string{"game"}}, {ID: ids[1]}}
	var systems []*System
	for _, id := range ids {
		tr := &loopTransport{net: net, self: id, handles: map[string]rpc.Handler{}}
		net[id] = tr
		m := &fakeMembers{self: id}
		m.set(view)
		s, err := New(Config{Realm: testRealm, Logger: quiet(), Settle: -1}, m, tr, nil)
		must(b, err)
		b.Cleanup(func() { s.Close() })
		systems = append(systems, s)
	}
	must(b, systems[0].Register("game", "echo", func(string) Actor {
		return callFunc(func(_ context.Context, msg []byte) ([]byte, error) { return msg, nil })
	}))
	ctx := context.Background()
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = "e" + strconv.Itoa(i)
		if _, _, err := systems[1].Call(ctx, Request{Capability: "game", Kind: "echo", ID: keys[i]}); err != nil {
			b.Fatal(err)
		}
	}
	payload := make([]byte, 128)
	b.ReportAllocs()
	b.ResetTimer()
	defer reportCPU(b)()
	b.SetParallelism(32)
	var n atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		i := int(n.Add(1)) * 7919
		for pb.Next() {
			i++
			if _, _, err := systems[1].Call(ctx, Request{Capability: "game", Kind: "echo", ID: keys[i%len(keys)], Payload: payload}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
