package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
	msmux "github.com/multiformats/go-multistream"

	"github.com/macula-io/macula/frame"
	"github.com/macula-io/macula/realm"
)

// Handshake frame types (append only).
const (
	frameHello uint8 = 1
	// frameRefused answers a hello that was refused, with the reason as
	// text, so that the refused side can say why.
	frameRefused uint8 = 2
	// frameGoodbye opens a stream of a node that is closing: it is leaving
	// the realm (empty body). See leave.go.
	frameGoodbye uint8 = 3
)

const (
	helloVersion = 1
	// maxHello bounds a hello frame: a few hundred bytes in an open realm,
	// plus the chains (at most maxChainsWire) in a secure one.
	maxHello = maxChainsWire + 4<<10
	// Agent is this implementation's agent string in the hello.
	Agent = "macula-go/0.1"
	// maxLife bounds a hello's Life (ours: 16 hex digits).
	maxLife = 64
)

// errRefusedByPeer: the peer refused this node's hello (in a secure realm:
// this node's membership). Its errors wrap ErrNotMember too.
var errRefusedByPeer = errors.New("the peer refused this node")

// errWrongRealm: the peer does not speak our realm's handshake.
var errWrongRealm = fmt.Errorf("%w: peer is not in this realm", ErrOtherRealm)

// hello is what each side of the realm handshake says about itself. The
// peer's identity is not in it: QUIC's TLS already proved the peer ID, and the
// DID comes from the same key.
type hello struct {
	Realm string `json:"realm"`
	Name  string `json:"name"`
	Agent string `json:"agent"`
	// Chains are the sender's delegation chains (ucan.MarshalChains) in a
	// secure realm; a membership grant among them admits it.
	Chains []byte `json:"chains,omitempty"`
	// Life is random, drawn when the node starts: a peer that meets it
	// with another Life than on its older connections knows that those
	// are of the sender's earlier life (it was killed and restarted with
	// the same key while they were open) and closes them. Empty from a
	// peer that does not send it.
	Life string `json:"life,omitempty"`
}

// HandshakeProtocol returns the realm handshake's protocol ID.
func HandshakeProtocol(realmName string) protocol.ID {
	return protocol.ID("/macula/" + realmName + "/handshake/1.0.0")
}

func writeHello(s network.Stream, h hello) error {
	b, err := json.Marshal(h)
	if err != nil {
		return err
	}
	return frame.Write(s, frameHello, helloVersion, b)
}

func readHello(s network.Stream, want string) (hello, error) {
	hdr, p, err := frame.NewReader(s, maxHello).Next()
	if err != nil {
		return hello{}, fmt.Errorf("reading hello: %w", err)
	}
	return helloFrame(hdr, p, want)
}

// helloFrame checks the first frame of a handshake stream and decodes its
// hello.
func helloFrame(hdr frame.Header, p []byte, want string) (hello, error) {
	if hdr.Type == frameRefused {
		if len(p) > 512 {
			p = p[:512]
		}
		return hello{}, fmt.Errorf("%w: %w: %s", ErrNotMember, errRefusedByPeer, strings.ToValidUTF8(string(p), "?"))
	}
	if hdr.Type != frameHello || hdr.Version != helloVersion {
		return hello{}, fmt.Errorf("unexpected frame type %d version %d", hdr.Type, hdr.Version)
	}
	return parseHello(p, want)
}

// parseHello decodes and checks the body of a hello frame.
func parseHello(p []byte, want string) (hello, error) {
	var h hello
	if err := json.Unmarshal(p, &h); err != nil {
		return hello{}, fmt.Errorf("decoding hello: %w", err)
	}
	if h.Realm != want {
		return h, fmt.Errorf("%w: peer says realm %q, we are %q", ErrOtherRealm, h.Realm, want)
	}
	if err := realm.ValidateNodeName(h.Name); err != nil {
		return h, fmt.Errorf("hello: %w", err)
	}
	if len(h.Agent) > 128 {
		h.Agent = h.Agent[:128]
	}
	if len(h.Life) > maxLife {
		return h, fmt.Errorf("hello: life of %d bytes, at most %d", len(h.Life), maxLife)
	}
	return h, nil
}

// handleHandshake answers a peer's handshake: read its hello, check it,
// answer with ours. A stream that opens with a goodbye instead is a peer
// leaving the realm.
func (n *Node) handleHandshake(s network.Stream) {
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(n.cfg.HandshakeTimeout))
	hdr, body, err := frame.NewReader(s, maxHello).Next()
	if err == nil && hdr.Type == frameGoodbye && hdr.Version == helloVersion {
		n.onGoodbye(s.Conn().RemotePeer())
		return // closing the stream tells the peer it was heard
	}
	var h hello
	if err == nil {
		h, err = helloFrame(hdr, body, n.cfg.Realm)
	}
	if err != nil {
		n.log.Debug("refusing handshake", "peer", s.Conn().RemotePeer(), "err", err)
		_ = s.Reset()
		return
	}
	if err := n.admit(n.ctx, s.Conn().RemotePeer(), h); err != nil {
		n.log.Info("refusing peer: no valid membership", "peer", s.Conn().RemotePeer(), "err", err)
		_ = frame.Write(s, frameRefused, helloVersion, []byte(err.Error()))
		if errors.Is(err, ErrNotMember) {
			// Known here first: our own handshake with the peer may end
			// without its answer (refused in turn, the peer closes the
			// connection at once), and whoever waits for the peer
			// (Connect) must learn that it is no member, not that the
			// connection closed.
			n.gater.refuse(s.Conn().RemotePeer(), nonMemberRefuseFor, refusedNonMember)
			n.peerChanged()
		}
		return
	}
	n.notePeerName(s.Conn().RemotePeer(), h)
	if err := writeHello(s, n.hello()); err != nil {
		_ = s.Reset()
	}
}

// handshake runs our side of the realm handshake on a new connection.
func (n *Node) handshake(ctx context.Context, c network.Conn) (hello, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.HandshakeTimeout)
	defer cancel()
	s, err := c.NewStream(network.WithAllowLimitedConn(ctx, "macula handshake"))
	if err != nil {
		return hello{}, fmt.Errorf("opening handshake stream: %w", err)
	}
	defer s.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	proto := HandshakeProtocol(n.cfg.Realm)
	if err := s.SetProtocol(proto); err != nil {
		_ = s.Reset()
		return hello{}, err
	}
	if err := msmux.SelectProtoOrFail(proto, s); err != nil {
		_ = s.Reset()
		if errors.Is(err, msmux.ErrNotSupported[protocol.ID]{}) {
			return hello{}, errWrongRealm
		}
		return hello{}, fmt.Errorf("negotiating %s: %w", proto, err)
	}
	if err := writeHello(s, n.hello()); err != nil {
		_ = s.Reset()
		return hello{}, fmt.Errorf("sending hello: %w", err)
	}
	h, err := readHello(s, n.cfg.Realm)
	if err != nil {
		_ = s.Reset()
		return h, err
	}
	if err := n.admit(ctx, c.RemotePeer(), h); err != nil {
		return h, err
	}
	return h, nil
}

// newLife draws a node's hello.Life.
func newLife() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

func (n *Node) hello() hello {
	return hello{Realm: n.cfg.Realm, Name: n.cfg.Name, Agent: Agent, Chains: n.ownChainsWire(), Life: n.life}
}
