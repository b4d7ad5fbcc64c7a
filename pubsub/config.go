package pubsub

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/macula-io/macula/access"
	"github.com/macula-io/macula/realm"
)

// Defaults for the zero fields of Config.
const (
	// DefaultMaxMessageSize is the default payload limit: 1 MiB.
	DefaultMaxMessageSize = 1 << 20
	// DefaultPeerQueue is the default send queue per remote subscriber
	// node, in messages: at 128-byte messages and a million messages a
	// second, about 8 ms of traffic, enough to ride out a scheduling hiccup
	// without dropping.
	DefaultPeerQueue = 8192
	// DefaultPeerQueueBytes bounds a send queue in bytes as well, so that a
	// queue of big messages cannot hold PeerQueue times MaxMessageSize.
	DefaultPeerQueueBytes = 64 << 20
	// DefaultSubscriptionBuffer is the default queue of a local
	// subscription, in messages.
	DefaultSubscriptionBuffer = 1024
	// DefaultInterestRefresh is how often a publisher looks up, in the DHT,
	// the subscriber nodes of the topics it publishes to. Two seconds keeps
	// the DHT load of a busy publisher at a handful of lookups per key every
	// refresh while a late subscriber that is not yet connected to the
	// publisher is found within a few seconds (connected ones announce their
	// interest directly and are found at once).
	DefaultInterestRefresh = 2 * time.Second

	// maxMessageSizeLimit caps MaxMessageSize: one frame must fit in
	// memory on both ends, and the frame length is a uint32.
	maxMessageSizeLimit = 64 << 20
)

// Config tunes a PubSub. The zero value works except for Realm. New does not
// modify the caller's Config.
type Config struct {
	// Realm is the realm whose topics this node publishes and subscribes
	// to. Required.
	Realm string

	// MaxMessageSize is the largest payload, in bytes, that Publish accepts
	// and that this node accepts from peers; a bigger Publish fails with
	// ErrTooLarge. Peers learn each other's limit, and a publisher does not
	// send a peer a message over that peer's limit (it counts it in
	// DroppedSend). Default 1 MiB; at most 64 MiB.
	MaxMessageSize int

	// PeerQueue bounds the send queue of each remote subscriber node, in
	// messages. When it is full the newest message for that node is dropped
	// and counted in Stats.DroppedSend: Publish never blocks (a Publish
	// with WaitForRoom waits for room instead), and a slow node never
	// stalls the others. Default 8192.
	PeerQueue int

	// PeerQueueBytes bounds the same queue in bytes (frames), whichever
	// limit is reached first. It must hold at least one message of
	// MaxMessageSize. Default 64 MiB, or 4 x MaxMessageSize if that is more.
	PeerQueueBytes int

	// SubscriptionBuffer bounds the queue of each local subscription made
	// with Subscribe, in messages (including the batch its handler is
	// working through). When it is full the newest message is dropped and
	// counted in the subscription's Dropped and in Stats.DroppedLocal; other
	// subscriptions are not affected. Also the channel capacity of
	// SubscribeChan when it is given a buffer <= 0. Default 1024.
	SubscriptionBuffer int

	// InterestRefresh is how often a publisher repeats, in the DHT, the
	// lookups of the subscriber nodes of each topic it published to
	// recently. A node that subscribes later and is not yet connected to
	// the publisher starts receiving within about this interval plus a
	// lookup and a connection. Default 2 s; at least 10 ms.
	InterestRefresh time.Duration

	// Access decides who may publish and subscribe: in a secure realm, the
	// UCAN verdicts of this node and of its peers (the node's
	// access.Table). Publish and Subscribe check the node's own verdict; a
	// message from a peer is dropped unless the peer may publish to its
	// topic, and a message is sent to a peer only if the peer may subscribe
	// to its topic (see the package doc, "Authorization"). nil, or a policy
	// that access.IsOpen reports open when New is called, is an open realm:
	// nothing is checked and nothing costs anything.
	Access access.Policy

	// Depends, if set, is told of the subscriber node of every message
	// this node queues for it: the node then watches that peer's liveness
	// (one that dies stops getting messages within seconds, not when QUIC
	// gives up on its connection). Traffic on a link is no such sign: the
	// interests every node sends its linked peers travel there too. It is
	// called on every message and must return at once.
	Depends func(peer.ID)

	// Logger gets the log lines, with the realm attached. Default
	// slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns the defaults for realm.
func DefaultConfig(realmName string) Config {
	return Config{
		Realm:              realmName,
		MaxMessageSize:     DefaultMaxMessageSize,
		PeerQueue:          DefaultPeerQueue,
		PeerQueueBytes:     DefaultPeerQueueBytes,
		SubscriptionBuffer: DefaultSubscriptionBuffer,
		InterestRefresh:    DefaultInterestRefresh,
	}
}

// validate returns cfg with defaults filled in, or an error naming the
// field.
func (cfg Config) validate() (Config, error) {
	if err := realm.ValidateRealm(cfg.Realm); err != nil {
		return cfg, fmt.Errorf("pubsub: Config.Realm: %w", err)
	}
	def := DefaultConfig(cfg.Realm)
	pos := func(name string, v *int, d, max int) error {
		switch {
		case *v == 0:
			*v = d
		case *v < 0:
			return fmt.Errorf("pubsub: Config.%s is %d; it must be positive (0 means %d)", name, *v, d)
		case max > 0 && *v > max:
			return fmt.Errorf("pubsub: Config.%s is %d; the limit is %d", name, *v, max)
		}
		return nil
	}
	if err := pos("MaxMessageSize", &cfg.MaxMessageSize, def.MaxMessageSize, maxMessageSizeLimit); err != nil {
		return cfg, err
	}
	if err := pos("PeerQueue", &cfg.PeerQueue, def.PeerQueue, 0); err != nil {
		return cfg, err
	}
	def.PeerQueueBytes = max(def.PeerQueueBytes, 4*(cfg.MaxMessageSize+msgOverhead))
	if err := pos("PeerQueueBytes", &cfg.PeerQueueBytes, def.PeerQueueBytes, 0); err != nil {
		return cfg, err
	}
	if cfg.PeerQueueBytes < cfg.MaxMessageSize+msgOverhead {
		return cfg, fmt.Errorf("pubsub: Config.PeerQueueBytes is %d; it must hold one message of MaxMessageSize (%d bytes with framing)",
			cfg.PeerQueueBytes, cfg.MaxMessageSize+msgOverhead)
	}
	if err := pos("SubscriptionBuffer", &cfg.SubscriptionBuffer, def.SubscriptionBuffer, 0); err != nil {
		return cfg, err
	}
	switch {
	case cfg.InterestRefresh == 0:
		cfg.InterestRefresh = def.InterestRefresh
	case cfg.InterestRefresh < 10*time.Millisecond:
		return cfg, fmt.Errorf("pubsub: Config.InterestRefresh is %v; the minimum is 10ms (0 means %v)", cfg.InterestRefresh, def.InterestRefresh)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg, nil
}
