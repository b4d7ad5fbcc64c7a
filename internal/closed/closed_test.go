package closed_test

import (
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/macula-io/macula/dht"
	"github.com/macula-io/macula/nat"
	"github.com/macula-io/macula/node"
	"github.com/macula-io/macula/pubsub"
	"github.com/macula-io/macula/rpc"
)

// TestErrClosed checks every service's ErrClosed: it says which package,
// matches net.ErrClosed (also when wrapped), and no other service's.
func TestErrClosed(t *testing.T) {
	all := []struct {
		err  error
		text string
	}{
		{node.ErrClosed, "node: closed"},
		{rpc.ErrClosed, "rpc: closed"},
		{pubsub.ErrClosed, "pubsub: closed"},
		{dht.ErrClosed, "dht: closed"},
		{nat.ErrClosed, "nat: closed"},
	}
	for i, c := range all {
		if c.err.Error() != c.text {
			t.Errorf("%q, want %q", c.err, c.text)
		}
		wrapped := fmt.Errorf("calling: %w", c.err)
		if !errors.Is(c.err, net.ErrClosed) || !errors.Is(wrapped, net.ErrClosed) {
			t.Errorf("%q does not match net.ErrClosed", c.err)
		}
		if !errors.Is(wrapped, c.err) {
			t.Errorf("wrapped %q does not match itself", c.err)
		}
		for j, o := range all {
			if i != j && errors.Is(c.err, o.err) {
				t.Errorf("%q matches %q", c.err, o.err)
			}
		}
	}
}
