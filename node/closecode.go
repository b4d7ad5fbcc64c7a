package node

import (
	"context"
	"errors"
	"os"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/quic-go/quic-go"
)

// The codes this node closes a realm peer's connection with. libp2p hands a
// code to the other end (a network.ConnError on its next read), so a peer
// whose handshake was cut can tell a refusal, which counts against this
// node, from a close that says nothing about it.
const (
	// codeRefused: the peer is refused (another realm, no membership).
	codeRefused = network.ConnGated
	// codeHandshakeFailed: the realm handshake failed with no fault of
	// the peer's seen: it timed out (one of the two ends was slow, a
	// loaded machine), or the peer refused this node.
	codeHandshakeFailed network.ConnErrorCode = 0x4d430001
	// codeUnresponsive: the peer left pings unanswered; it may well be
	// alive and back soon.
	codeUnresponsive network.ConnErrorCode = 0x4d430002
	// codeEarlierLife: the connection belonged to an earlier life of the
	// peer, which restarted since.
	codeEarlierLife = network.ConnSupplanted
)

// closeConns closes every connection to p with code.
func closeConns(nw network.Network, p peer.ID, code network.ConnErrorCode) {
	for _, c := range nw.ConnsToPeer(p) {
		_ = c.CloseWithError(code)
	}
}

// strikeWorthy reports whether a failed realm handshake counts against the
// peer (a strike; maxStrikes of them refuse it): the peer cut it, or sent
// what the handshake does not allow. A peer of another realm often closes
// before this side can see what it speaks, so an unexplained close from
// the peer counts. Timeouts do not (a loaded machine, at either end), nor
// closes by this node, nor a peer that closed saying the fault was not ours
// or that it was slow itself: counted, they had live peers of the realm
// refuse each other for minutes whenever the machine was saturated (100
// nodes on 2 cores: 422 refusals).
func strikeWorthy(err error) bool {
	if ce := (*network.ConnError)(nil); errors.As(err, &ce) {
		if !ce.Remote {
			return false
		}
		switch ce.ErrorCode {
		case codeHandshakeFailed, codeUnresponsive, codeEarlierLife, network.ConnShutdown,
			network.ConnGarbageCollected, network.ConnResourceLimitExceeded, network.ConnRateLimited:
			return false
		}
		return true
	}
	if se := (*network.StreamError)(nil); errors.As(err, &se) {
		if !se.Remote {
			return false
		}
		switch se.ErrorCode {
		case network.StreamResourceLimitExceeded, network.StreamRateLimited, network.StreamSupplanted,
			network.StreamGarbageCollected, network.StreamShutdown:
			return false
		}
		return true
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	if t := (interface{ Timeout() bool })(nil); errors.As(err, &t) && t.Timeout() {
		return false
	}
	if sr := (*quic.StatelessResetError)(nil); errors.As(err, &sr) {
		return false // the peer lost its state: it restarted
	}
	return true
}
