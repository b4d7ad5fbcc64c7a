package registry

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/macula-io/macula/access"
	"github.com/macula-io/macula/realm"
)

// Defaults for the zero fields of Config.
const (
	// DefaultMaxMetaSize bounds an entry's metadata: 4 KiB, plenty for the
	// small maps a registry entry carries (a role, a version, an address),
	// and small enough that a million entries fit in memory.
	DefaultMaxMetaSize = 4 << 10
	// DefaultMaxMessageSize bounds a message sent to a process: 1 MiB, as
	// rpc and pubsub.
	DefaultMaxMessageSize = 1 << 20
	// DefaultMailbox is the mailbox of a process, in messages.
	DefaultMailbox = 1024
	// DefaultMonitorBuffer is the queue of a monitor, in batches.
	DefaultMonitorBuffer = 1024
	// DefaultMaxLocalEntries bounds the names and memberships of this
	// node's own processes, across clusters.
	DefaultMaxLocalEntries = 1 << 20
	// DefaultMaxProcesses bounds the live processes of this node.
	DefaultMaxProcesses = 1 << 20
	// DefaultMaxOriginEntries bounds what this node keeps of one other
	// node's entries in one cluster; a node that sends more is cut off
	// (its data dropped and counted) until it sends less.
	DefaultMaxOriginEntries = 1 << 20
	// DefaultReplicationLog is how many recent changes each replicated
	// stream keeps, so that a peer a little behind gets a delta rather than
	// a full copy.
	DefaultReplicationLog = 8192
	// DefaultAntiEntropy is the tick on which linked nodes compare
	// digests, when there is something to compare (sync.go: after a
	// change or a difference; every 300 ticks otherwise). A digest costs a
	// few dozen bytes per node of the cluster; the tick bounds how long a
	// node waits for entries of nodes it is not linked to (one or two
	// ticks per hop) and repairs anything lost. An idle node's tick slows
	// down to one every 8 (sync.go: antiEntropy); any news brings it back.
	DefaultAntiEntropy = time.Second
	// DefaultPeerQueueBytes bounds the messages (Send, Dispatch) queued to
	// one peer: 16 MiB.
	DefaultPeerQueueBytes = 16 << 20
	// DefaultMaxClockDrift is how far ahead of this node's clock another
	// node's hybrid clock may be for this node to follow it: an hour, far
	// beyond the drift of clocks that are kept at all, so that a node
	// whose clock runs late still orders its registrations after those it
	// learnt of; a clock wrong by more than that is broken, and is not
	// followed (so it cannot drag the realm's stamps into the future).
	DefaultMaxClockDrift = time.Hour

	maxMetaSizeLimit = 64 << 10
	// MaxMessageSizeLimit is the largest MaxMessageSize: 16 MiB.
	MaxMessageSizeLimit = 16 << 20
)

// Config tunes a Registry. The zero value works except for Realm. New does
// not modify the caller's Config.
type Config struct {
	// Realm is the node's realm. Required.
	Realm string

	// MaxMetaSize bounds the metadata of a name or a membership, in bytes;
	// more is ErrTooLarge. Default 4 KiB; at most 64 KiB. Nodes of a realm
	// should agree: a node drops (and counts) replicated entries over its
	// own limit.
	MaxMetaSize int

	// MaxMessageSize bounds a message to a process (Send, Dispatch), in
	// bytes; more is ErrTooLarge. Default 1 MiB; at most 16 MiB.
	MaxMessageSize int

	// Mailbox is the default mailbox of a process, in messages: when it is
	// full, the newest message is dropped (Send from this node returns
	// ErrMailboxFull; a message from another node is counted in
	// Stats.DroppedMailbox). Default 1024.
	Mailbox int

	// MonitorBuffer is the queue of a monitor, in batches of events. When
	// it is full, the newest batch is dropped and its events counted in the
	// next batch's Missed (and Stats.DroppedEvents): a slow monitor never
	// delays the registry. Default 1024.
	MonitorBuffer int

	// MaxLocalEntries bounds the names and memberships of this node's own
	// processes; more is ErrLimit. Default 1 Mi.
	MaxLocalEntries int

	// MaxProcesses bounds the live processes of this node; Spawn beyond is
	// ErrLimit. Default 1 Mi.
	MaxProcesses int

	// MaxOriginEntries bounds the entries kept from one other node in one
	// cluster; a node's data beyond it is dropped and counted
	// (Stats.DroppedOverLimit). Default 1 Mi.
	MaxOriginEntries int

	// ReplicationLog is how many recent changes each replicated stream
	// (one node's entries in one cluster) keeps to send deltas; a peer
	// further behind gets a full copy. Default 8192.
	ReplicationLog int

	// AntiEntropy is how often linked nodes exchange digests of what they
	// hold. Default 1 s; at least 10 ms.
	AntiEntropy time.Duration

	// PeerQueueBytes bounds the messages queued to one peer, in bytes; when
	// full the newest message is dropped and counted (Stats.DroppedSend).
	// Replicated state is never dropped: it is sent from the current state
	// when the link has room. Default 16 MiB; at least 2 x MaxMessageSize.
	PeerQueueBytes int

	// MaxClockDrift is how far ahead of the local clock another node's
	// hybrid logical clock may be for this node to follow it; a stamp
	// further ahead is not followed (and counted), so one node
	// with a wrong clock cannot drag the realm's clocks forward. Within it,
	// a registration is always ordered after those its node knew of,
	// whatever the clocks. Default 1 h.
	MaxClockDrift time.Duration

	// Resolve settles a name registered by two processes (two sides of a
	// partition, or two nodes within a replication delay). nil means
	// DefaultResolver: the earlier registration keeps the name. See
	// Resolver for the contract.
	Resolve Resolver

	// Access decides, in a secure realm, who may register, join and
	// dispatch on which keys (the node's access.Table). nil, or a policy
	// that access.IsOpen reports open at New, is an open realm.
	Access access.Policy

	// LogLevel is the registry's own log level at start: LogInfo (the
	// default) logs links, cluster changes, node losses and conflicts;
	// LogVerbose also every write, replication batch and process end;
	// LogOff nothing. SetLogLevel changes it at run time.
	LogLevel LogLevel

	// Logger gets the log lines (through the level above), with the realm
	// attached. Default slog.Default().
	Logger *slog.Logger

	// now is the wall clock (time.Now when nil); tests set a skewed one
	// before New, as the registry reads it from its goroutines.
	now func() time.Time
}

// DefaultConfig returns the defaults for realm.
func DefaultConfig(realmName string) Config {
	return Config{
		Realm:            realmName,
		MaxMetaSize:      DefaultMaxMetaSize,
		MaxMessageSize:   DefaultMaxMessageSize,
		Mailbox:          DefaultMailbox,
		MonitorBuffer:    DefaultMonitorBuffer,
		MaxLocalEntries:  DefaultMaxLocalEntries,
		MaxProcesses:     DefaultMaxProcesses,
		MaxOriginEntries: DefaultMaxOriginEntries,
		ReplicationLog:   DefaultReplicationLog,
		AntiEntropy:      DefaultAntiEntropy,
		PeerQueueBytes:   DefaultPeerQueueBytes,
		MaxClockDrift:    DefaultMaxClockDrift,
		LogLevel:         LogInfo,
	}
}

// validate returns cfg with defaults filled in, or an error naming the
// field.
func (cfg Config) validate() (Config, error) {
	if err := realm.ValidateRealm(cfg.Realm); err != nil {
		return cfg, fmt.Errorf("registry: Config.Realm: %w", err)
	}
	def := DefaultConfig(cfg.Realm)
	pos := func(name string, v *int, d, max int) error {
		switch {
		case *v == 0:
			*v = d
		case *v < 0:
			return fmt.Errorf("registry: Config.%s is %d; it must be positive (0 means %d)", name, *v, d)
		case max > 0 && *v > max:
			return fmt.Errorf("registry: Config.%s is %d; the limit is %d", name, *v, max)
		}
		return nil
	}
	for _, f := range []struct {
		name   string
		v      *int
		d, max int
	}{
		{"MaxMetaSize", &cfg.MaxMetaSize, def.MaxMetaSize, maxMetaSizeLimit},
		{"MaxMessageSize", &cfg.MaxMessageSize, def.MaxMessageSize, MaxMessageSizeLimit},
		{"Mailbox", &cfg.Mailbox, def.Mailbox, 0},
		{"MonitorBuffer", &cfg.MonitorBuffer, def.MonitorBuffer, 0},
		{"MaxLocalEntries", &cfg.MaxLocalEntries, def.MaxLocalEntries, 0},
		{"MaxProcesses", &cfg.MaxProcesses, def.MaxProcesses, 0},
		{"MaxOriginEntries", &cfg.MaxOriginEntries, def.MaxOriginEntries, 0},
		{"ReplicationLog", &cfg.ReplicationLog, def.ReplicationLog, 0},
	} {
		if err := pos(f.name, f.v, f.d, f.max); err != nil {
			return cfg, err
		}
	}
	def.PeerQueueBytes = max(def.PeerQueueBytes, 2*cfg.MaxMessageSize)
	if err := pos("PeerQueueBytes", &cfg.PeerQueueBytes, def.PeerQueueBytes, 0); err != nil {
		return cfg, err
	}
	if cfg.PeerQueueBytes < 2*cfg.MaxMessageSize {
		return cfg, fmt.Errorf("registry: Config.PeerQueueBytes is %d; it must hold two messages of MaxMessageSize (%d)", cfg.PeerQueueBytes, 2*cfg.MaxMessageSize)
	}
	switch {
	case cfg.AntiEntropy == 0:
		cfg.AntiEntropy = def.AntiEntropy
	case cfg.AntiEntropy < 10*time.Millisecond:
		return cfg, fmt.Errorf("registry: Config.AntiEntropy is %v; the minimum is 10ms (0 means %v)", cfg.AntiEntropy, def.AntiEntropy)
	}
	switch {
	case cfg.MaxClockDrift == 0:
		cfg.MaxClockDrift = def.MaxClockDrift
	case cfg.MaxClockDrift < 0:
		return cfg, fmt.Errorf("registry: Config.MaxClockDrift is %v; it must be positive", cfg.MaxClockDrift)
	}
	switch cfg.LogLevel {
	case 0:
		cfg.LogLevel = LogInfo
	case LogOff, LogInfo, LogVerbose:
	default:
		return cfg, fmt.Errorf("registry: Config.LogLevel is %d; want LogOff, LogInfo or LogVerbose", cfg.LogLevel)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg, nil
}
