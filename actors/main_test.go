package actors

import (
	"io"
	"log/slog"
	"testing"

	"github.com/macula-io/macula/internal/testnet"
)

func TestMain(m *testing.M) { testnet.VerifyTestMain(m) }

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
