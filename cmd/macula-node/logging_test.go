package main

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/gologshim"
)

// TestLibp2pLogLevels: libp2p's info lines, and identify's warnings (one per
// connection that closes), are debug detail; libp2p's other warnings and its
// errors keep their level. Our own lines are untouched.
func TestLibp2pLogLevels(t *testing.T) {
	defer slog.SetDefault(slog.Default())
	for _, level := range []string{"info", "debug"} {
		var buf syncBuffer
		lg, err := newLogging(&buf, level, "text", false)
		if err != nil {
			t.Fatal(err)
		}
		// New loggers: gologshim binds a logger to the default handler at
		// its first line.
		sys := fmt.Sprintf("test-%s-%d", level, time.Now().UnixNano())
		identify := gologshim.Logger("net/identify")
		other := gologshim.Logger(sys)
		identify.Info("failed negotiate identify protocol with peer", "n", 1)
		identify.Warn("failed to identify peer", "n", 2)
		identify.Error("identify got a different key", "n", 3)
		other.Info("some libp2p detail", "n", 4)
		other.Warn("a libp2p warning", "n", 5)
		lg.logger.Info("our own line", "n", 6)
		out := buf.String()
		want := map[string]string{
			"n=1": "DEBUG", "n=2": "DEBUG", "n=3": "ERROR", "n=4": "DEBUG", "n=5": "WARN", "n=6": "INFO",
		}
		for n, lvl := range want {
			line := ""
			for l := range strings.Lines(out) {
				if strings.HasSuffix(strings.TrimSpace(l), " "+n) {
					line = l
				}
			}
			shown := level == "debug" || lvl != "DEBUG"
			switch {
			case shown && !strings.Contains(line, "level="+lvl):
				t.Errorf("--log-level %s: the line with %s: %q, want level %s; all:\n%s", level, n, line, lvl, out)
			case !shown && line != "":
				t.Errorf("--log-level %s: %q shown, want it at debug", level, line)
			}
		}
	}
}

// TestLogLinesFolded: a value with line breaks (libp2p's dial errors) stays
// on the record's one line.
func TestLogLinesFolded(t *testing.T) {
	defer slog.SetDefault(slog.Default())
	for _, format := range []string{"text", "json"} {
		var buf syncBuffer
		lg, err := newLogging(&buf, "info", format, false)
		if err != nil {
			t.Fatal(err)
		}
		err = errors.New("failed to dial: all dials failed\n  * [/ip4/127.0.0.1/udp/9/quic-v1] context deadline exceeded\n")
		lg.logger.Warn("bootstrap peer unreachable\n(again)", "err", err, "note", "a\r\nb", "errno", syscall.ECONNREFUSED)
		out := buf.String()
		if strings.Count(out, "\n") != 1 || strings.Contains(out, `\n`) {
			t.Errorf("%s: not one line: %q", format, out)
		}
		for _, want := range []string{"all dials failed; * [/ip4/127.0.0.1/udp/9/quic-v1] context deadline exceeded", "a; b", "bootstrap peer unreachable; (again)", "connection refused"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: %q lacks %q", format, out, want)
			}
		}
	}
}
