package testnet

import (
	"log/slog"
	"os"
	"testing"
	"time"
)

// pollMax bounds the pause between two calls of Eventually's function.
const pollMax = 50 * time.Millisecond

// Eventually calls f until it returns nil, and fails the test if it has not
// within wait, with f's last error: f says why the condition does not hold
// yet (which peer is missing, what it saw instead), so that a timeout
// explains itself, as nats-server's checkFor does. f runs on the caller's
// goroutine, at once and then every few milliseconds (backing off to
// 50 ms); it should return quickly. Tests wait this way, never with a
// fixed sleep.
func Eventually(t testing.TB, wait time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(wait)
	pause := time.Millisecond
	for {
		err := f()
		if err == nil {
			return
		}
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("timed out after %v: %v", wait, err)
		}
		time.Sleep(min(pause, left))
		pause = min(2*pause, pollMax)
	}
}

// QuietLogger returns a logger that discards everything, for the services
// of a test (their logs would bury the test's own). With MACULA_TEST_LOG
// set in the environment it logs everything, Debug included, to stderr
// instead: for a test being debugged.
func QuietLogger() *slog.Logger {
	if os.Getenv("MACULA_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}
