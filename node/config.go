package node

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/macula-io/macula/dht"
	"github.com/macula-io/macula/internal/p2phost"
	"github.com/macula-io/macula/member"
	"github.com/macula-io/macula/pubsub"
	"github.com/macula-io/macula/realm"
	"github.com/macula-io/macula/rpc"
	"github.com/macula-io/macula/ucan"
)

// Config is a node's configuration. Realm and Name are required; every
// other field's zero value is its default (DefaultConfig spells them out).
// New never modifies the caller's Config.
type Config struct {
	// Realm is the realm the node belongs to, such as "io.acme.orders".
	Realm string
	// Name is the node's name in the realm; its alias is
	// did:macula:<realm>.<name>.
	Name string
	// DataDir holds the node's key (node.key). Empty means an identity kept
	// only in memory: a new peer ID and DID on every start. In a secure
	// realm it also keeps the revocations (RevocationsFile) and the
	// invocations already used (ReplayFile).
	DataDir string
	// Key, if set, is the identity to use instead of the one in DataDir.
	Key crypto.PrivKey
	// ListenAddrs are QUIC multiaddrs to listen on. Default:
	// /ip4/0.0.0.0/udp/0/quic-v1 (a random port on every interface).
	ListenAddrs []string
	// Bootstrap are multiaddrs (with /p2p/<peer-id>) of peers to join through.
	Bootstrap []string
	// DisableReconnect stops the node from redialing a bootstrap peer that
	// dropped or could not be reached: it is dialed once. Default: false
	// (redial, with ReconnectInterval's backoff).
	DisableReconnect bool
	// ReconnectInterval is the first wait before a redial; it doubles on each
	// failure up to ReconnectMaxInterval. Default: 1s.
	ReconnectInterval time.Duration
	// ReconnectMaxInterval caps the wait between redials. Default: 1 minute.
	ReconnectMaxInterval time.Duration
	// MaxReconnectAttempts stops redialing a bootstrap peer after this many
	// failures in a row; 0 means never stop. Default: 0.
	MaxReconnectAttempts int
	// HandshakeTimeout bounds the realm handshake on a new connection.
	// Default: 10s.
	HandshakeTimeout time.Duration
	// RefuseFor is how long a peer that failed the realm handshake is refused
	// by the connection gater. Default: 10 minutes.
	RefuseFor time.Duration
	// DHTMode forces the DHT mode: server or client. Default: auto, a
	// server while the node is publicly reachable and a client otherwise
	// (the reachability is decided from measurements; see Reachability).
	DHTMode dht.Mode
	// AliasTTL is how long an alias record stays valid; it is republished
	// every AliasTTL/4. Default: 24 hours.
	AliasTTL time.Duration
	// STUN are STUN servers (HOST:PORT) for learning the public address and
	// the NAT type; the bootstrap peers are asked too, since every Macula
	// node answers STUN on its QUIC port. Default: none beyond those.
	STUN []string
	// RelayService forces the circuit relay (v2) service on: the node
	// relays for realm members behind NAT that cannot be reached directly.
	// Default: false, which means the node decides: it relays while it is
	// publicly reachable (nat.Decide), unless DisableRelayService. Its
	// limits are sized for real traffic (RelayLimitDuration,
	// RelayLimitData), not the library's 2 minutes and 128 KiB; the number
	// of reservations and circuits is bounded as go-libp2p's defaults do
	// (128 reservations, 16 circuits per peer), with more per IP address
	// (32, not 8: the nodes of a site behind one NAT) and per ASN (64).
	RelayService bool
	// DisableRelayService: never relay, even when publicly reachable.
	// Default: false.
	DisableRelayService bool
	// RelayLimitDuration and RelayLimitData bound one relayed connection.
	// Defaults: 1 hour and 1 GiB.
	RelayLimitDuration time.Duration
	RelayLimitData     int64
	// Relays are multiaddrs (with /p2p/<peer-id>) of relay nodes. A node
	// given relays keeps reservations with up to two of them (moving to
	// another when one dies) and advertises the relayed addresses, so peers
	// can reach it through the relay and then upgrade to a direct path by
	// hole punching (DCUtR). Default: the bootstrap peers (those that run
	// the relay service take reservations; the others refuse them), unless
	// the node is forced public. Reservations are kept while the node is
	// not publicly reachable.
	Relays []string
	// DisableHolePunching turns off the upgrade of relayed connections to
	// direct ones (libp2p's DCUtR and the node's NAT-aware punching).
	// Default: false (hole punching on).
	DisableHolePunching bool
	// Reachability forces what the node believes of itself: "public" or
	// "private". Default: "", the node decides from what it measures (STUN,
	// dial-back checks by its peers; see nat.Decide), again whenever the
	// measurements change. Until it knows, it acts as private.
	Reachability string
	// NATInterval is the time between NAT probes; negative means only on
	// demand. Default: 5 minutes.
	NATInterval time.Duration
	// Authority is the did:key of the realm authority (macula-node realm
	// init). Set, the realm is secure: a peer joins only with a membership
	// grant from the authority, and every call, publication, subscription
	// and advertisement needs a chain rooted at it that grants the acting
	// node the command on that name. Empty, the realm is open (development):
	// anyone who knows its name may join and do anything, and the node says
	// so in its logs.
	Authority string
	// Chains are the node's delegation chains (ucan.ParseChain), presented
	// to every peer in the realm handshake. In a secure realm one of them
	// must grant the node membership (the authority's /macula/member, with
	// the node's name for its alias to count). A chain that does not hold
	// (revoked, expired, for another key) is left out with a warning.
	Chains []ucan.Chain
	// ChainSources, when set, names where each of Chains came from (such
	// as a file and line), for that warning. Default: "chain N".
	ChainSources []string
	// UCAN tunes the validator (clock leeway, limits, caches); its Realm,
	// Authority, Self and Logger are the node's, and its ReplayFile is
	// DataDir's ReplayFile unless set.
	UCAN ucan.Config
	// RPC tunes the RPC service; its Realm and Logger are the node's.
	RPC rpc.Config
	// PubSub tunes the publish/subscribe service; its Realm and Logger are
	// the node's.
	PubSub pubsub.Config
	// Members tunes the realm's membership and names the capabilities and
	// clusters the node starts with; its Realm, Name, Access and Logger
	// are the node's.
	Members member.Config
	// Logger receives the node's logs. Default: slog.Default().
	Logger *slog.Logger

	// testHostOptions, for tests only, are added to the host's options.
	testHostOptions []p2phost.Option
	// testIdleClose and testTrimEvery, for tests only, replace idleClose
	// and trimEvery (trim.go).
	testIdleClose, testTrimEvery time.Duration
}

// DefaultConfig returns the defaults for a node of realm with the given
// name: the same node as Config{Realm: realmName, Name: name}, with the
// defaults written out.
func DefaultConfig(realmName, name string) Config {
	return Config{
		Realm:                realmName,
		Name:                 name,
		ListenAddrs:          []string{"/ip4/0.0.0.0/udp/0/quic-v1"},
		ReconnectInterval:    time.Second,
		ReconnectMaxInterval: time.Minute,
		HandshakeTimeout:     10 * time.Second,
		RefuseFor:            10 * time.Minute,
		DHTMode:              dht.ModeAuto,
		AliasTTL:             24 * time.Hour,
	}
}

// settings is a validated Config with defaults filled in and addresses parsed.
type settings struct {
	Config
	listen    []ma.Multiaddr
	bootstrap []peer.AddrInfo
	relays    []peer.AddrInfo
}

func fieldErr(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(format, args...))
}

// validate checks cfg without touching the disk or the network.
func validate(cfg Config) (*settings, error) {
	s := &settings{Config: cfg}
	if err := realm.ValidateRealm(cfg.Realm); err != nil {
		return nil, fmt.Errorf("%w: realm: %w", ErrConfig, err)
	}
	if err := realm.ValidateNodeName(cfg.Name); err != nil {
		return nil, fmt.Errorf("%w: name: %w", ErrConfig, err)
	}
	if len(s.ListenAddrs) == 0 {
		s.ListenAddrs = []string{"/ip4/0.0.0.0/udp/0/quic-v1"}
	}
	for _, a := range s.ListenAddrs {
		m, err := ma.NewMultiaddr(a)
		if err != nil {
			return nil, fieldErr("listen", "%q is not a multiaddr: %v", a, err)
		}
		if _, err := m.ValueForProtocol(ma.P_QUIC_V1); err != nil {
			return nil, fieldErr("listen", "%q is not a QUIC address; Macula listens on QUIC only (like /ip4/0.0.0.0/udp/7400/quic-v1)", a)
		}
		s.listen = append(s.listen, m)
	}
	seen := map[peer.ID]*peer.AddrInfo{}
	for _, a := range s.Bootstrap {
		a = strings.TrimSpace(a)
		m, err := ma.NewMultiaddr(a)
		if err != nil {
			return nil, fieldErr("bootstrap", "%q is not a multiaddr: %v", a, err)
		}
		ai, err := peer.AddrInfoFromP2pAddr(m)
		if err != nil {
			return nil, fieldErr("bootstrap", "%q needs a /p2p/<peer-id> part: %v", a, err)
		}
		if prev, ok := seen[ai.ID]; ok {
			prev.Addrs = append(prev.Addrs, ai.Addrs...)
			continue
		}
		seen[ai.ID] = ai
		s.bootstrap = append(s.bootstrap, *ai)
	}
	for i := range s.bootstrap {
		s.bootstrap[i] = *seen[s.bootstrap[i].ID]
	}
	for _, a := range s.Relays {
		m, err := ma.NewMultiaddr(strings.TrimSpace(a))
		if err != nil {
			return nil, fieldErr("relay", "%q is not a multiaddr: %v", a, err)
		}
		ai, err := peer.AddrInfoFromP2pAddr(m)
		if err != nil {
			return nil, fieldErr("relay", "%q needs a /p2p/<peer-id> part: %v", a, err)
		}
		s.relays = append(s.relays, *ai)
	}
	switch s.Reachability {
	case "", "public", "private":
	default:
		return nil, fieldErr("reachability", "%q: want public, private or empty", s.Reachability)
	}
	if s.RelayService && s.DisableRelayService {
		return nil, fieldErr("relay_service", "forced on and disabled at once")
	}
	def := DefaultConfig(cfg.Realm, cfg.Name)
	if s.RelayLimitDuration <= 0 {
		s.RelayLimitDuration = time.Hour
	}
	if s.RelayLimitData <= 0 {
		s.RelayLimitData = 1 << 30
	}
	if s.ReconnectInterval <= 0 {
		s.ReconnectInterval = def.ReconnectInterval
	}
	if s.ReconnectMaxInterval <= 0 {
		s.ReconnectMaxInterval = def.ReconnectMaxInterval
	}
	if s.ReconnectMaxInterval < s.ReconnectInterval {
		s.ReconnectMaxInterval = s.ReconnectInterval
	}
	if s.MaxReconnectAttempts < 0 {
		return nil, fieldErr("max_reconnect_attempts", "%d is negative; 0 means never stop", s.MaxReconnectAttempts)
	}
	if s.HandshakeTimeout <= 0 {
		s.HandshakeTimeout = def.HandshakeTimeout
	}
	if s.RefuseFor <= 0 {
		s.RefuseFor = def.RefuseFor
	}
	switch s.DHTMode {
	case "":
		s.DHTMode = def.DHTMode
	case dht.ModeServer, dht.ModeClient, dht.ModeAuto:
	default:
		return nil, fieldErr("dht_mode", "%q: want server, client or auto", s.DHTMode)
	}
	if s.AliasTTL <= 0 {
		s.AliasTTL = def.AliasTTL
	}
	if s.AliasTTL < time.Minute {
		return nil, fieldErr("alias_ttl", "%v is under a minute", s.AliasTTL)
	}
	if s.Authority != "" {
		if _, err := realm.ParseDIDKey(s.Authority); err != nil {
			return nil, fieldErr("authority", "%q is not a did:key: %v", s.Authority, err)
		}
	} else if len(s.Chains) > 0 {
		return nil, fieldErr("ucan", "chains given but no authority: set the realm's authority (its did:key) to make the realm secure")
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	return s, nil
}

// relayCandidates are the relays the node keeps reservations with while it
// is not publicly reachable: the configured ones, else its bootstrap peers
// (public nodes relay by default), never itself. A node forced public needs
// none.
func (s *settings) relayCandidates(self peer.ID) []peer.AddrInfo {
	if s.Reachability == "public" {
		return nil
	}
	list := s.relays
	if len(list) == 0 {
		list = s.bootstrap
	}
	var out []peer.AddrInfo
	for _, ai := range list {
		if ai.ID != self {
			out = append(out, ai)
		}
	}
	return out
}
