package dht

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"time"

	pb "github.com/libp2p/go-libp2p-kad-dht/pb"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-msgio/pbio"

	"github.com/macula-io/macula/internal/rtt"
)

// Answers bounded by the peer's round-trip time.
//
// kad-dht waits up to 10 s for a peer's answer to one request, and a lookup
// cannot end while one of the closest peers has not answered: a peer killed
// without a word keeps its QUIC connection open until the node's liveness
// pings give up on it (about 5 s), and every lookup that asked it waited
// that long. A live peer answers a DHT request from memory, within a few
// round trips however busy it is; so the DHT's message sender (kad-dht's,
// reimplemented here: its own is internal) bounds the wait for an answer
// by the peer's round-trip time (requestRTTs of them, at least
// Config.RequestTimeout, at most maxRequestTimeout): the lower of QUIC's
// estimate on a direct connection (fresh, without handler time) and the
// peerstore's ping average (internal/rtt). A peer that does not
// answer in time fails that request, so the lookup goes on without it
// (kad-dht counts it unreachable and drops it from the routing table), and
// when its bound came from a measured round-trip time, it becomes suspect:
// no query asks it (nor kad-dht's follow-up: the sender refuses it), and
// the routing table does not take it back, until Responsive says it
// answers again (the node pings it at once: Config.Unresponsive), it is
// gone, or SuspectFor passes.
//
// A false suspicion (a live peer slower than its bound) costs one request
// and the peer's place in queries for the time of one ping; it cannot make
// a lookup miss a provider that other peers know of, since a provider
// record is stored with the k (20) peers closest to its key and the lookup
// asks the next closest in its place.

const (
	// requestRTTs is how many of the peer's round-trip times a request
	// waits for an answer, above Config.RequestTimeout.
	requestRTTs = 10
	// maxRequestTimeout caps the wait for one answer (kad-dht's own).
	maxRequestTimeout = 10 * time.Second
	// unknownRTTTimeout is the wait for a peer whose round-trip time has
	// not been measured yet.
	unknownRTTTimeout = 2 * time.Second
)

// errNoAnswer: a peer left a request unanswered past its bound.
var errNoAnswer = errors.New("dht: no answer in time")

// sender is the DHT's pb.MessageSender: one stream per message (a QUIC
// stream opens without a round trip, and the protocol is negotiated
// lazily, with the first message), the answer waited for within the
// peer's bound.
type sender struct {
	d      *DHT
	h      host.Host
	protos []protocol.ID
}

var _ pb.MessageSenderWithDisconnect = (*sender)(nil)

// OnDisconnect does nothing: the sender keeps no state per peer.
func (s *sender) OnDisconnect(context.Context, peer.ID) {}

// open opens a stream to p for one message, and bounds it: by ctx, and by
// the answer's deadline, which it returns with the bound; measured says
// whether the bound comes from p's round-trip time. Over an existing
// connection the stream opens within the bound (it fails the request, but
// makes no suspect: a stream waits for the connection's identify, which is
// slow on a loaded machine, not on a dead peer's connection); otherwise the
// dial is bounded by ctx (the query's dial timeout).
func (s *sender) open(ctx context.Context, p peer.ID) (str network.Stream, bound time.Duration, measured bool, deadline time.Time, stop func() bool, err error) {
	if !s.d.askable(p) {
		// The query filters keep such a peer out of queries, but not out
		// of kad-dht's follow-up, which asks again every one of the
		// closest peers whose answer was still awaited when the query
		// ended: a dead peer that made a lookup wait its bound once made
		// it wait a second time.
		return nil, 0, false, time.Time{}, nil, fmt.Errorf("%w: %s is suspect or gone", errNoAnswer, p)
	}
	bound, measured = s.d.requestTimeout(p)
	octx := ctx
	if s.h.Network().Connectedness(p) == network.Connected {
		var cancel context.CancelFunc
		octx, cancel = context.WithTimeout(ctx, bound)
		defer cancel()
	}
	str, err = s.h.NewStream(octx, p, s.protos...)
	if err != nil {
		if ctx.Err() == nil && octx.Err() != nil {
			return nil, 0, false, time.Time{}, nil, fmt.Errorf("%w: %s: opening a stream: %v", errNoAnswer, p, err)
		}
		return nil, 0, false, time.Time{}, nil, err
	}
	deadline = time.Now().Add(bound)
	_ = str.SetDeadline(deadline)
	// A query that ends (its context) resets the streams it waits on.
	stop = context.AfterFunc(ctx, func() { _ = str.Reset() })
	return str, bound, measured, deadline, stop, nil
}

// SendRequest sends req to p and returns its answer.
func (s *sender) SendRequest(ctx context.Context, p peer.ID, req *pb.Message) (*pb.Message, error) {
	str, bound, measured, deadline, stop, err := s.open(ctx, p)
	if err != nil {
		return nil, err
	}
	defer stop()
	start := time.Now()
	if err := writeMsg(str, req); err != nil {
		_ = str.Reset()
		return nil, err
	}
	resp := new(pb.Message)
	if err := pbio.NewDelimitedReader(str, network.MessageSizeMax).ReadMsg(resp); err != nil {
		_ = str.Reset()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if !time.Now().Before(deadline) {
			if measured { // else the bound was a guess
				s.d.unanswered(p, bound)
			}
			return nil, fmt.Errorf("%w: %s did not answer within %v: %v", errNoAnswer, p, bound, err)
		}
		return nil, err
	}
	_ = str.Close()
	s.h.Peerstore().RecordLatency(p, time.Since(start))
	return resp, nil
}

// SendMessage sends msg to p, which answers nothing.
func (s *sender) SendMessage(ctx context.Context, p peer.ID, msg *pb.Message) error {
	str, _, _, _, stop, err := s.open(ctx, p)
	if err != nil {
		return err
	}
	defer stop()
	if err := writeMsg(str, msg); err != nil {
		_ = str.Reset()
		return err
	}
	return str.Close()
}

// writeMsg writes one varint-delimited message in one write.
func writeMsg(str network.Stream, m *pb.Message) error {
	bw := bufio.NewWriter(str)
	if err := pbio.NewDelimitedWriter(bw).WriteMsg(m); err != nil {
		return err
	}
	return bw.Flush()
}

// requestTimeout is how long a request to p waits for its answer, and
// whether that comes from p's measured round-trip time.
func (d *DHT) requestTimeout(p peer.ID) (time.Duration, bool) {
	r := rtt.Of(d.host, p)
	if r <= 0 {
		return max(unknownRTTTimeout, d.cfg.RequestTimeout), false
	}
	return min(max(requestRTTs*r, d.cfg.RequestTimeout), maxRequestTimeout), true
}
