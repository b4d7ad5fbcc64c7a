package revocation

import (
	"testing"

	"github.com/macula-io/macula/internal/testnet"
)

func TestMain(m *testing.M) { testnet.VerifyTestMain(m) }
