package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"

	"github.com/libp2p/go-libp2p/gologshim"
)

// parseLevel reads a --log-level value.
func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("log level %q: want debug, info, warn or error", s)
}

// levelName is the --log-level spelling of a level.
func levelName(l slog.Level) string {
	switch l {
	case slog.LevelDebug:
		return "debug"
	case slog.LevelInfo:
		return "info"
	case slog.LevelWarn:
		return "warn"
	case slog.LevelError:
		return "error"
	}
	return strings.ToLower(l.String())
}

// logging is the process's logging: one handler for our logs and libp2p's,
// with a level the node API can change at run time.
type logging struct {
	level  *slog.LevelVar
	hold   *holdQueue
	logger *slog.Logger
}

// newLogging validates level and format ("text" or "json") and builds the
// logging of the process, writing to w. It installs the handler as
// slog.Default and as libp2p's (gologshim), so that every log line of the
// process has the same format and level. If held, lines are kept until
// release or discard (see holdHandler).
func newLogging(w io.Writer, level, format string, held bool) (*logging, error) {
	lvl, err := parseLevel(level)
	if err != nil {
		return nil, err
	}
	lv := new(slog.LevelVar)
	lv.Set(lvl)
	opts := &slog.HandlerOptions{Level: lv, ReplaceAttr: foldAttr}
	var h slog.Handler
	switch strings.ToLower(format) {
	case "text", "":
		h = slog.NewTextHandler(w, opts)
	case "json":
		h = slog.NewJSONHandler(w, opts)
	default:
		return nil, fmt.Errorf("log format %q: want text or json", format)
	}
	q := &holdQueue{held: held}
	h = &holdHandler{h: h, q: q}
	l := &logging{level: lv, hold: q, logger: slog.New(h)}
	slog.SetDefault(l.logger)
	gologshim.SetDefaultHandler(&libp2pHandler{h: h})
	return l, nil
}

// foldAttr puts every value on one line: a log record is one line of the
// process's output, and libp2p's errors span lines ("all dials failed\n  *
// [/ip4/...] context deadline exceeded").
func foldAttr(_ []string, a slog.Attr) slog.Attr {
	switch a.Value.Kind() {
	case slog.KindString:
		if v := a.Value.String(); strings.ContainsAny(v, "\r\n") {
			a.Value = slog.StringValue(foldLines(v))
		}
	case slog.KindAny:
		if err, ok := a.Value.Any().(error); ok && err != nil {
			if v := err.Error(); strings.ContainsAny(v, "\r\n") {
				a.Value = slog.StringValue(foldLines(v))
			}
		}
	}
	return a
}

// foldLines joins the non-empty lines of s, trimmed, with "; ".
func foldLines(s string) string {
	var parts []string
	for _, l := range strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' }) {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, "; ")
}

// quietLibp2p are the libp2p subsystems whose warnings are part of normal
// operation for a node, and so logged at debug: identify fails on every
// connection that closes while it runs (each disconnect, each shutdown).
var quietLibp2p = map[string]bool{"net/identify": true}

// libp2pHandler is the handler libp2p's loggers get (gologshim adds a
// "logger" attribute naming the subsystem). libp2p's info lines are its
// internal detail, which the node reports in its own terms (peer connected,
// NAT probed, ...), so they are logged at debug; so are the warnings of
// quietLibp2p. Errors, and the other warnings, keep their level.
type libp2pHandler struct {
	h      slog.Handler
	system string // from the "logger" attribute
}

func (h *libp2pHandler) level(l slog.Level) slog.Level {
	if l < slog.LevelWarn || (l < slog.LevelError && quietLibp2p[h.system]) {
		return slog.LevelDebug
	}
	return l
}

func (h *libp2pHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.h.Enabled(ctx, h.level(l))
}

func (h *libp2pHandler) Handle(ctx context.Context, r slog.Record) error {
	if l := h.level(r.Level); l != r.Level {
		if !h.h.Enabled(ctx, l) {
			return nil
		}
		r.Level = l
	}
	return h.h.Handle(ctx, r)
}

func (h *libp2pHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	sys := h.system
	for _, a := range attrs {
		if a.Key == "logger" {
			sys = a.Value.String()
		}
	}
	return &libp2pHandler{h: h.h.WithAttrs(attrs), system: sys}
}

func (h *libp2pHandler) WithGroup(name string) slog.Handler {
	return &libp2pHandler{h: h.h.WithGroup(name), system: h.system}
}

// maxHeld bounds the lines kept while logs are held; later ones are dropped.
// A start-up logs a few dozen.
const maxHeld = 10000

// holdQueue is shared by a holdHandler and every handler derived from it.
type holdQueue struct {
	// mu guards the fields below; it is held while the kept lines are
	// written, so lines logged meanwhile come after them.
	mu   sync.Mutex
	held bool
	recs []heldRecord
}

type heldRecord struct {
	h slog.Handler
	r slog.Record
}

// release writes the kept lines, in order, and stops holding.
func (q *holdQueue) release() {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, hr := range q.recs {
		_ = hr.h.Handle(context.Background(), hr.r)
	}
	q.recs, q.held = nil, false
}

// discard drops the kept lines and stops holding.
func (q *holdQueue) discard() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.recs, q.held = nil, false
}

// holdHandler passes records to h, except while its queue is held: then it
// keeps them. run holds the logs of a start-up until the node and its API
// are both up, so that a start that fails halfway prints its one error line
// and nothing else (node.New logs "node started" before the API is bound).
type holdHandler struct {
	h slog.Handler
	q *holdQueue
}

func (h *holdHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.h.Enabled(ctx, l) }

func (h *holdHandler) Handle(ctx context.Context, r slog.Record) error {
	h.q.mu.Lock()
	if h.q.held {
		if len(h.q.recs) < maxHeld {
			h.q.recs = append(h.q.recs, heldRecord{h: h.h, r: r.Clone()})
		}
		h.q.mu.Unlock()
		return nil
	}
	h.q.mu.Unlock()
	return h.h.Handle(ctx, r)
}

func (h *holdHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &holdHandler{h: h.h.WithAttrs(attrs), q: h.q}
}

func (h *holdHandler) WithGroup(name string) slog.Handler {
	return &holdHandler{h: h.h.WithGroup(name), q: h.q}
}
