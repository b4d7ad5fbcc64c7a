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

// POST /v1/nat/probe answers with what was known before the probe, so a
// later measured_at always comes: here the probe has no STUN server to ask
// and ends at once, every time (read after it, the answer was the new
// probe's, and a client waiting for a later one waited in vain: under the
// race detector, within 10 probes).
func TestNATProbeAnswersWhatCameBefore(t *testing.T) {
	a := startNode(t, "io.acme.orders", "a") // no bootstrap, no --stun: nothing to ask
	g := startGateway(t, a, nil)
	c := clientFor(t, g, "http")
	for i := range 100 {
		before, err := c.NATProbe(ctxFor(t, 5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		testnet.Eventually(t, 10*time.Second, func() error {
			now, err := c.NAT(ctxFor(t, 5*time.Second))
			if err != nil {
				return err
			}
			if !now.MeasuredAt.After(before.MeasuredAt) {
				return fmt.Errorf("probe %d: measured at %v, as the answer said", i, now.MeasuredAt)
			}
			return nil
		})
	}
}
