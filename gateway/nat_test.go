package gateway

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/macula-io/macula/internal/testnet"
)

// GET /v1/nat reports what the node learned by STUN from its bootstrap
// peer's QUIC port, and GET /v1/peers the path and RTT of each peer.
func TestNATAndPeerPath(t *testing.T) {
	a := startNode(t, "io.acme.orders", "a")
	b := startNode(t, "io.acme.orders", "b", a)
	g := startGateway(t, b, nil)
	for _, proto := range []string{"http", "http3"} {
		c := clientFor(t, g, proto)
		// Waiting for a NAT probe.
		testnet.Eventually(t, 15*time.Second, func() error {
			i, err := c.NAT(ctxFor(t, 5*time.Second))
			if err != nil {
				return err
			}
			if i.PublicPort == 0 || i.MeasuredAt.IsZero() || i.Type == "" {
				return errors.New("not measured yet")
			}
			return nil
		})
		// Waiting for a direct path to a.
		testnet.Eventually(t, 15*time.Second, func() error {
			peers, err := c.Peers(ctxFor(t, 5*time.Second))
			if err != nil {
				return err
			}
			if len(peers) != 1 || peers[0].Path != "direct" {
				return fmt.Errorf("%s: peers = %+v", proto, peers)
			}
			// A direct path says since when, by the node's clock.
			if ds := peers[0].DirectSince; ds == nil || ds.Before(peers[0].Since.Add(-time.Minute)) || ds.After(time.Now()) {
				return fmt.Errorf("%s: direct_since = %v (since %v)", proto, ds, peers[0].Since)
			}
			return nil
		})
	}
}
