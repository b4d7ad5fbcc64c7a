package member

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/macula-io/macula/access"
	"github.com/macula-io/macula/realm"
)

// Defaults for the zero fields of Config. The reasons are in the package
// doc ("Failure detection" and "Costs").
const (
	// DefaultRings is the number of rings of the monitoring overlay: each
	// member links to its successor and predecessor on each, so to at most
	// 2*Rings others, and is watched by up to Rings of them. Two rings are
	// the fewest whose union is an expander (connected when a link fails,
	// O(log N) hops across), and give a crash two watchers to confirm it;
	// every ring more costs two links and their heartbeats per node
	// (measured: 5.6 links and 0.12% of a core per member with three, 4.0
	// and 0.09% with two, in a realm of 50).
	DefaultRings = 2
	// DefaultProbeInterval is how often a link carries a frame when it has
	// nothing else to say (a heartbeat). Two seconds, not one: the
	// heartbeats were over half of what an idle realm did (issue 17: a
	// 50-node realm took 29% of one core with one a second, 12% with one
	// every 5 s), and the node's own liveness pings watch every peer in
	// use each second whatever this is. A failure is then declared about
	// 5 s after the last packet (ProbeTimeout; SWIM's memberlist takes
	// about 7 s at 50 members with its LAN defaults).
	DefaultProbeInterval = 2 * time.Second
	// DefaultProbeTimeout is how long nothing may be heard from a link's
	// peer before it is suspected: two and a half heartbeats, so that a
	// node stalled for a moment (a GC pause, a loaded machine) or one lost
	// heartbeat (QUIC resends it within a round trip or two) is not.
	DefaultProbeTimeout = 5 * time.Second
	// DefaultSuspicionTimeout is how long a suspected member has to refute
	// before it is declared failed, when fewer than Confirmations of its
	// watchers suspect it. It must cover the suspicion's way to the member
	// and the refutation's way back: two floods across the overlay.
	DefaultSuspicionTimeout = 4 * time.Second
	// DefaultConfirmations is how many distinct members must suspect a
	// member (their links to it went silent) for it to be declared failed
	// at once, without waiting for SuspicionTimeout.
	DefaultConfirmations = 2
	// DefaultReconnectInterval is how often a node tries to reach one of
	// the failed members it watched, so that a split realm heals even
	// where no bootstrap link crosses the split.
	DefaultReconnectInterval = 5 * time.Second
	// DefaultTombstoneTTL is how long a failed or departed member is
	// remembered: stale news of it is refused meanwhile, and failed ones
	// are retried (ReconnectInterval).
	DefaultTombstoneTTL = 30 * time.Minute
	// DefaultMaxMembers bounds the members (and tombstones) a node keeps.
	DefaultMaxMembers = 16384
	// DefaultLinkLinger is how long a link that the overlay does not need
	// (one made to sync with a peer that just connected) is kept.
	DefaultLinkLinger = 10 * time.Second
	// DefaultMaxLinks bounds the links a node keeps at once.
	DefaultMaxLinks = 64
	// DefaultLinkQueue bounds the frames waiting on one link (news to
	// forward; syncs are drawn from the view as the link drains).
	DefaultLinkQueue = 4096
	// DefaultWatchBuffer is the channel capacity of a Watch.
	DefaultWatchBuffer = 64

	// MaxCapabilities and MaxClusters bound a member's lists, so that a
	// record fits in maxRecord bytes.
	MaxCapabilities = 32
	MaxClusters     = 32
	// maxAddrs bounds the addresses a record carries.
	maxAddrs = 8
)

// Config tunes Members. The zero value works except for Realm and Name.
// New does not modify the caller's Config.
type Config struct {
	// Realm is the realm whose membership this is. Required.
	Realm string
	// Name is this node's name in the realm. Required.
	Name string

	// Capabilities this node serves from the start (such as "game",
	// "chat"): names of one segment, [a-z0-9_-], at most MaxCapabilities.
	// In a secure realm each needs a grant of ucan.Serve on
	// ucan.ServeResource(Realm, name), or New fails.
	Capabilities []string
	// Clusters this node is in from the start (registry subclusters),
	// with the same syntax, at most MaxClusters.
	Clusters []string

	// Rings is the number of rings of the monitoring overlay; each node
	// keeps links to at most 2*Rings others. Default 2; 1 to 8.
	Rings int
	// ProbeInterval is how often a silent link carries a heartbeat.
	// Default 2 s.
	ProbeInterval time.Duration
	// ProbeTimeout is how long a link may stay silent before its peer is
	// suspected. Default 5 s; at least 2 * ProbeInterval.
	ProbeTimeout time.Duration
	// SuspicionTimeout is how long a suspected member has to refute before
	// it is declared failed, unless Confirmations members suspect it, in a
	// realm of up to 10 live members; above that it grows with log10 of
	// their number (twice at 100). Default 4 s.
	SuspicionTimeout time.Duration
	// Confirmations is how many distinct members suspecting a member
	// declare it failed at once (at most the members watching it).
	// Default 2.
	Confirmations int
	// ReconnectInterval is how often the node tries to reach a failed
	// member it watched, to heal a split realm. Default 5 s.
	ReconnectInterval time.Duration
	// TombstoneTTL is how long failed and departed members are
	// remembered. Default 30 minutes.
	TombstoneTTL time.Duration
	// MaxMembers bounds the members and tombstones kept; news of more is
	// refused and counted (Stats.RefusedFull). Default 16384.
	MaxMembers int
	// LinkLinger is how long a link the overlay does not need is kept
	// after it was made. Default 10 s.
	LinkLinger time.Duration
	// MaxLinks bounds the links kept at once. Default 64; at least
	// 2*Rings+2.
	MaxLinks int
	// LinkQueue bounds the frames queued on one link; a link whose queue
	// is full is closed (and synced again when it is made again), and the
	// loss is counted in Stats.LinkOverflows. Default 4096.
	LinkQueue int
	// WatchBuffer is the channel capacity of each Watch. Default 64.
	WatchBuffer int

	// Access decides which capabilities a member may claim: in a secure
	// realm, the node's UCAN verdicts (access.Table). nil, or an open
	// policy, is an open realm: every claim stands.
	Access access.Policy
	// Logger gets the log lines. Default slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns the defaults for node name of realm.
func DefaultConfig(realmName, name string) Config {
	return Config{
		Realm:             realmName,
		Name:              name,
		Rings:             DefaultRings,
		ProbeInterval:     DefaultProbeInterval,
		ProbeTimeout:      DefaultProbeTimeout,
		SuspicionTimeout:  DefaultSuspicionTimeout,
		Confirmations:     DefaultConfirmations,
		ReconnectInterval: DefaultReconnectInterval,
		TombstoneTTL:      DefaultTombstoneTTL,
		MaxMembers:        DefaultMaxMembers,
		LinkLinger:        DefaultLinkLinger,
		MaxLinks:          DefaultMaxLinks,
		LinkQueue:         DefaultLinkQueue,
		WatchBuffer:       DefaultWatchBuffer,
	}
}

// validate returns cfg with defaults filled in and its lists normalized
// (sorted, without duplicates), or an error naming the field.
func (cfg Config) validate() (Config, error) {
	if err := realm.ValidateRealm(cfg.Realm); err != nil {
		return cfg, fmt.Errorf("%w: Realm: %w", ErrConfig, err)
	}
	if err := realm.ValidateNodeName(cfg.Name); err != nil {
		return cfg, fmt.Errorf("%w: Name: %w", ErrConfig, err)
	}
	var err error
	if cfg.Capabilities, err = normalize("capability", cfg.Capabilities, MaxCapabilities); err != nil {
		return cfg, fmt.Errorf("%w: Capabilities: %w", ErrConfig, err)
	}
	if cfg.Clusters, err = normalize("cluster", cfg.Clusters, MaxClusters); err != nil {
		return cfg, fmt.Errorf("%w: Clusters: %w", ErrConfig, err)
	}
	def := DefaultConfig(cfg.Realm, cfg.Name)
	ints := []struct {
		name     string
		v        *int
		def, min int
		max      int
	}{
		{"Rings", &cfg.Rings, def.Rings, 1, 8},
		{"Confirmations", &cfg.Confirmations, def.Confirmations, 1, 0},
		{"MaxMembers", &cfg.MaxMembers, def.MaxMembers, 2, 1 << 20},
		{"MaxLinks", &cfg.MaxLinks, def.MaxLinks, 1, 0},
		{"LinkQueue", &cfg.LinkQueue, def.LinkQueue, 16, 0},
		{"WatchBuffer", &cfg.WatchBuffer, def.WatchBuffer, 1, 0},
	}
	for _, f := range ints {
		switch {
		case *f.v == 0:
			*f.v = f.def
		case *f.v < f.min:
			return cfg, fmt.Errorf("%w: %s is %d; the minimum is %d (0 means %d)", ErrConfig, f.name, *f.v, f.min, f.def)
		case f.max > 0 && *f.v > f.max:
			return cfg, fmt.Errorf("%w: %s is %d; the maximum is %d", ErrConfig, f.name, *f.v, f.max)
		}
	}
	if cfg.MaxLinks < 2*cfg.Rings+2 {
		return cfg, fmt.Errorf("%w: MaxLinks is %d; with %d rings it must be at least %d", ErrConfig, cfg.MaxLinks, cfg.Rings, 2*cfg.Rings+2)
	}
	durs := []struct {
		name     string
		v        *time.Duration
		def, min time.Duration
	}{
		{"ProbeInterval", &cfg.ProbeInterval, def.ProbeInterval, 10 * time.Millisecond},
		{"ProbeTimeout", &cfg.ProbeTimeout, def.ProbeTimeout, 20 * time.Millisecond},
		{"SuspicionTimeout", &cfg.SuspicionTimeout, def.SuspicionTimeout, 10 * time.Millisecond},
		{"ReconnectInterval", &cfg.ReconnectInterval, def.ReconnectInterval, 10 * time.Millisecond},
		{"TombstoneTTL", &cfg.TombstoneTTL, def.TombstoneTTL, time.Second},
		{"LinkLinger", &cfg.LinkLinger, def.LinkLinger, 10 * time.Millisecond},
	}
	for _, f := range durs {
		switch {
		case *f.v == 0:
			*f.v = f.def
		case *f.v < f.min:
			return cfg, fmt.Errorf("%w: %s is %v; the minimum is %v (0 means %v)", ErrConfig, f.name, *f.v, f.min, f.def)
		}
	}
	if cfg.ProbeTimeout < 2*cfg.ProbeInterval {
		return cfg, fmt.Errorf("%w: ProbeTimeout %v is under twice ProbeInterval %v: a single late heartbeat would raise a suspicion",
			ErrConfig, cfg.ProbeTimeout, cfg.ProbeInterval)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg, nil
}
