package actors

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/macula-io/macula/access"
	"github.com/macula-io/macula/realm"
)

// Defaults of the zero fields of Config.
const (
	// DefaultMailboxSize bounds the messages waiting for one actor; a
	// message past it fails with ErrMailboxFull at once. 1024 lets a burst
	// of concurrent callers queue behind a slow message without letting
	// one hot actor hold unbounded memory.
	DefaultMailboxSize = 1024
	// DefaultIdleTimeout is how long an actor may go without a message
	// before it is passivated (stopped and forgotten; its next message
	// starts it again with a new incarnation).
	DefaultIdleTimeout = 10 * time.Minute
	// DefaultStopTimeout bounds an actor's Stop and Snapshot.
	DefaultStopTimeout = 5 * time.Second
	// DefaultCastTimeout bounds HandleCast.
	DefaultCastTimeout = 30 * time.Second
	// DefaultCallTimeout applies to calls whose context has no deadline.
	DefaultCallTimeout = 30 * time.Second
	// DefaultMaxRestarts and DefaultRestartWindow: an actor that crashes
	// MaxRestarts times within RestartWindow is not restarted until the
	// window has passed (its messages fail with ErrRestartLimit), so a
	// poisoned actor does not spin.
	DefaultMaxRestarts   = 5
	DefaultRestartWindow = 10 * time.Second
	// DefaultHandoffTimeout is how long a node that gained a shard waits
	// for the previous owner (still a member) to hand its actors over
	// before it starts them fresh. It bounds how long messages to a moving
	// shard wait.
	DefaultHandoffTimeout = 5 * time.Second
	// DefaultSettle is how long a new system waits for its membership view
	// to stop changing (at most DefaultSettleMax) before it serves: a node
	// that has just started knows few members, and would otherwise take
	// shards it does not own.
	DefaultSettle    = 300 * time.Millisecond
	DefaultSettleMax = 3 * time.Second
	// DefaultLogSize is the number of activation records kept (ActivationLog).
	DefaultLogSize = 65536
	// MaxIDLen bounds an actor id, in bytes.
	MaxIDLen = 1024
)

// Config tunes a System. The zero value works for a single node; Realm is
// needed with a transport. New does not modify the caller's Config.
type Config struct {
	// Realm is the realm of the node; it names the rpc procedures and the
	// UCAN resources. Required with a Transport.
	Realm string
	// MailboxSize bounds the messages waiting for one actor. Default 1024.
	MailboxSize int
	// IdleTimeout: an actor without messages for this long is passivated.
	// Default 10 minutes; negative: never.
	IdleTimeout time.Duration
	// StopTimeout bounds Stop and Snapshot. Default 5 s.
	StopTimeout time.Duration
	// CastTimeout bounds HandleCast. Default 30 s.
	CastTimeout time.Duration
	// CallTimeout is the deadline of calls whose context has none.
	// Default 30 s.
	CallTimeout time.Duration
	// MaxRestarts crashes within RestartWindow stop an actor from starting
	// again until the window has passed. Defaults 5 and 10 s.
	MaxRestarts   int
	RestartWindow time.Duration
	// HandoffTimeout is how long a node that gained a shard waits for the
	// previous owner's handoff. Default 5 s.
	HandoffTimeout time.Duration
	// Settle and SettleMax: at start the system waits until its membership
	// view has not changed for Settle (at most SettleMax) before it serves
	// messages. Defaults 300 ms and 3 s; negative Settle: no wait.
	Settle    time.Duration
	SettleMax time.Duration
	// LogSize is the number of activation records kept for ActivationLog
	// (each about 100 bytes). Default 65536; negative: none.
	LogSize int
	// Access decides, in a secure realm, who may call actors (ucan.Actor on
	// ActorResource) and whether this node may serve a capability
	// (ucan.Serve). nil: an open realm.
	Access access.Policy
	// Logger gets the system's logs. Default slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults(networked bool) (Config, error) {
	if networked || c.Realm != "" {
		if err := realm.ValidateRealm(c.Realm); err != nil {
			return c, fmt.Errorf("actors: Config.Realm: %w", err)
		}
	}
	defi := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defd := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	defi(&c.MailboxSize, DefaultMailboxSize)
	defi(&c.MaxRestarts, DefaultMaxRestarts)
	defi(&c.LogSize, DefaultLogSize)
	defd(&c.IdleTimeout, DefaultIdleTimeout)
	defd(&c.StopTimeout, DefaultStopTimeout)
	defd(&c.CastTimeout, DefaultCastTimeout)
	defd(&c.CallTimeout, DefaultCallTimeout)
	defd(&c.RestartWindow, DefaultRestartWindow)
	defd(&c.HandoffTimeout, DefaultHandoffTimeout)
	defd(&c.Settle, DefaultSettle)
	defd(&c.SettleMax, DefaultSettleMax)
	switch {
	case c.MailboxSize < 1:
		return c, fmt.Errorf("actors: Config.MailboxSize %d: want at least 1", c.MailboxSize)
	case c.MaxRestarts < 1:
		return c, fmt.Errorf("actors: Config.MaxRestarts %d: want at least 1", c.MaxRestarts)
	case c.StopTimeout < 0, c.CastTimeout < 0, c.CallTimeout < 0, c.RestartWindow < 0, c.HandoffTimeout < 0, c.SettleMax < 0:
		return c, fmt.Errorf("actors: Config: negative timeout (StopTimeout %v, CastTimeout %v, CallTimeout %v, RestartWindow %v, HandoffTimeout %v, SettleMax %v)",
			c.StopTimeout, c.CastTimeout, c.CallTimeout, c.RestartWindow, c.HandoffTimeout, c.SettleMax)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// ValidateName checks a capability or kind name: one segment of
// [a-z0-9_-], 1 to 63 characters, starting with a letter or digit (the
// syntax of node names).
func ValidateName(what, name string) error {
	if err := realm.ValidateNodeName(name); err != nil {
		return fmt.Errorf("%w: %s %q: want one segment of [a-z0-9_-] such as \"game\"", ErrInvalid, what, name)
	}
	return nil
}
