package actors

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/macula-io/macula/internal/testnet"
)

func TestMain(m *testing.M) { testnet.VerifyTestMain(m) }

func quiet() *slog.Logger { return testnet.QuietLogger() }

// waitUntil waits for cond with testnet.Eventually.
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testnet.Eventually(t, 20*time.Second, func() error {
		if cond() {
			return nil
		}
		return fmt.Errorf("still waiting for %s", what)
	})
}
