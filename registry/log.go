package registry

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
)

// LogLevel is the registry's own log level, changed at run time with
// SetLogLevel (as the original's Group.log_level), independently of the
// node's: an operator can watch the registry's writes and replication
// without turning on debug logs for the whole node.
type LogLevel int32

const (
	// LogOff silences the registry's routine lines; warnings and errors
	// (a refused peer, a stream over the limits) are still logged.
	LogOff LogLevel = iota + 1
	// LogInfo logs links to peers, cluster connects and disconnects, node
	// losses and conflicts. The default.
	LogInfo
	// LogVerbose also logs every local write, every replication batch sent
	// and applied, and every process end.
	LogVerbose
)

func (l LogLevel) String() string {
	switch l {
	case LogOff:
		return "off"
	case LogInfo:
		return "info"
	case LogVerbose:
		return "verbose"
	}
	return fmt.Sprintf("LogLevel(%d)", int32(l))
}

// ParseLogLevel reads "off" (or "false"), "info" or "verbose" (or "debug").
func ParseLogLevel(s string) (LogLevel, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "off", "false", "none":
		return LogOff, nil
	case "info":
		return LogInfo, nil
	case "verbose", "debug":
		return LogVerbose, nil
	}
	return 0, fmt.Errorf("registry: unknown log level %q (want off, info or verbose)", s)
}

// MarshalText encodes the level as its name.
func (l LogLevel) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText decodes a level from its name.
func (l *LogLevel) UnmarshalText(b []byte) error {
	v, err := ParseLogLevel(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// logger writes the registry's lines through its level. Routine lines go
// out at slog's Info level whatever the registry level, so that turning
// the registry to verbose shows its lines without debug logs everywhere.
type logger struct {
	l     *slog.Logger
	level atomic.Int32
}

func (lg *logger) set(l LogLevel) { lg.level.Store(int32(l)) }
func (lg *logger) get() LogLevel  { return LogLevel(lg.level.Load()) }

// info logs a routine line at LogInfo and above.
func (lg *logger) info(msg string, args ...any) {
	if LogLevel(lg.level.Load()) >= LogInfo {
		lg.l.Info(msg, args...)
	}
}

// verbose logs a per-operation line at LogVerbose.
func (lg *logger) verbose(msg string, args ...any) {
	if LogLevel(lg.level.Load()) >= LogVerbose {
		lg.l.Info(msg, args...)
	}
}

// on reports whether verbose lines are logged, so callers can skip
// building their arguments.
func (lg *logger) on() bool { return LogLevel(lg.level.Load()) >= LogVerbose }

func (lg *logger) warn(msg string, args ...any) { lg.l.Warn(msg, args...) }

// debug logs at slog's Debug level, through the process's handler only:
// for detail nobody asked the registry for (a bad frame from a peer).
func (lg *logger) debug(msg string, args ...any) {
	lg.l.Log(context.Background(), slog.LevelDebug, msg, args...)
}
