package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/quic-go/quic-go"

	"github.com/macula-io/macula/internal/testnet"
)

func TestStrikeWorthy(t *testing.T) {
	remote := func(c network.ConnErrorCode) error {
		return fmt.Errorf("reading hello: %w", &network.ConnError{Remote: true, ErrorCode: c})
	}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"the peer closed, no reason", remote(network.ConnNoError), true},
		{"the peer refused", remote(codeRefused), true},
		{"the peer saw a protocol violation", remote(network.ConnProtocolViolation), true},
		{"the peer's handshake timed out", remote(codeHandshakeFailed), false},
		{"the peer found this node unresponsive", remote(codeUnresponsive), false},
		{"the peer shut down", remote(network.ConnShutdown), false},
		{"the peer trimmed it", remote(network.ConnGarbageCollected), false},
		{"the peer's limits", remote(network.ConnResourceLimitExceeded), false},
		{"this node closed it", &network.ConnError{ErrorCode: codeUnresponsive}, false},
		{"the peer reset the stream", &network.StreamError{Remote: true}, true},
		{"the peer's stream limit", &network.StreamError{Remote: true, ErrorCode: network.StreamResourceLimitExceeded}, false},
		{"this node reset the stream", &network.StreamError{}, false},
		{"deadline", fmt.Errorf("reading hello: %w", os.ErrDeadlineExceeded), false},
		{"context deadline", fmt.Errorf("opening handshake stream: %w", context.DeadlineExceeded), false},
		{"idle timeout", &quic.IdleTimeoutError{}, false},
		{"stateless reset", &quic.StatelessResetError{}, false},
		{"the peer closed the stream", fmt.Errorf("reading hello: %w", io.ErrUnexpectedEOF), true},
		{"a malformed hello", errors.New("decoding hello: invalid character"), true},
	} {
		if got := strikeWorthy(tc.err); got != tc.want {
			t.Errorf("%s (%v): strikeWorthy %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

// A peer whose realm handshake fails counts a strike only when the failure
// says something against it: a peer that never answers (as a starved one
// does) or closes saying its own handshake failed is never refused, however
// often it comes back; one that closes with no word is refused at the
// third time (a peer of another realm often does that). The peers are raw
// libp2p hosts that serve the realm's handshake protocol their own way.
func TestHandshakeStrikes(t *testing.T) {
	const realm = "io.acme.orders"
	for _, tc := range []struct {
		name    string
		handler func(network.Stream)
		refused bool
	}{
		{"silent", func(s network.Stream) { _, _ = io.Copy(io.Discard, s); _ = s.Reset() }, false},
		{"handshake failed", func(s network.Stream) { _ = s.Conn().CloseWithError(codeHandshakeFailed) }, false},
		{"closes", func(s network.Stream) { _ = s.Conn().Close() }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := startNode(t, realm, "n", func(c *Config) { c.HandshakeTimeout = 300 * time.Millisecond })
			h := testnet.Host(t)
			var handshakes atomic.Int32
			h.SetStreamHandler(HandshakeProtocol(realm), func(s network.Stream) {
				handshakes.Add(1)
				tc.handler(s)
			})
			ai := peer.AddrInfo{ID: n.ID(), Addrs: n.Host().Addrs()}
			for i := range maxStrikes + 1 {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := h.Connect(ctx, ai)
				cancel()
				if err != nil && !(tc.refused && i == maxStrikes) {
					t.Fatalf("connect %d: %v", i+1, err)
				}
				eventually(t, 10*time.Second, "the node to close the connection", func() bool {
					return h.Network().Connectedness(n.ID()) != network.Connected
				})
			}
			want := int32(maxStrikes + 1)
			if tc.refused {
				want = maxStrikes // the fourth connection is refused before any handshake
			}
			if got := handshakes.Load(); got != want || n.gater.isRefused(h.ID()) != tc.refused {
				t.Fatalf("%d handshakes, refused %v; want %d, refused %v", got, n.gater.isRefused(h.ID()), want, tc.refused)
			}
		})
	}
}
