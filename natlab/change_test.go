package natlab

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// TestNATChange: a node decides again when its network changes. Behind a
// full-cone router it is public (DHT server, relay service, no
// reservation). Then the router turns port-restricted and the host gets
// another address (as after a DHCP renewal): the node probes its NAT again,
// finds itself private and reserves a relay slot (it advertises a relayed
// address). The router turns full cone again and the address goes: public
// again, the relayed address gone. Default flags only.
func TestNATChange(t *testing.T) {
	if err := Check(Options{}); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (CI=true: the NAT lab must run)", err)
		}
		t.Skip(err)
	}
	bin := buildMaculaNode(t)
	m := &matrix{t: t, cfg: matrixConfig{name: "change"}, bin: bin, start: time.Now(), byName: map[string]*mnode{}}
	m.lab = New(t, Options{Sites: []SiteSpec{{Name: "home", NAT: FullCone}}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	m.ctx = ctx
	m.dataRoot = t.TempDir()
	defer m.dumpLogs(t)

	m.relay = &mnode{name: "relay", typ: "relay", host: m.lab.Relay()}
	m.startNode(m.relay, []string{"--stun", m.lab.STUNAddr()})
	if err := m.relay.waitUp(ctx, 60*time.Second, ""); err != nil {
		t.Fatal(err)
	}
	site := m.lab.Site("home")
	n := &mnode{name: "home", typ: FullCone, site: site, host: site.Host}
	m.startNode(n, []string{"--bootstrap", m.relay.multiaddr(), "--stun", m.lab.STUNAddr()})

	// decided waits until the node's decision is want (and its addresses
	// agree: a relayed one exactly while it keeps reservations).
	decided := func(want string) {
		t.Helper()
		start := time.Now()
		var last string
		for time.Since(start) < 120*time.Second {
			info, err := n.waitDecided(ctx, 30*time.Second)
			if err == nil && info.Reachability.Reachability == want {
				circuit := strings.Contains(strings.Join(n.addrs, " "), "p2p-circuit")
				if circuit == info.Reachability.RelayReservations {
					t.Logf("%s after %v: %s (%s); type %s", want, time.Since(start).Round(time.Millisecond), info.Reachability.Reachability, info.Reachability.Reason, info.Type)
					return
				}
				err = fmt.Errorf("relayed address %v, reservations %v", circuit, info.Reachability.RelayReservations)
			}
			if err != nil {
				last = err.Error()
			} else {
				last = fmt.Sprintf("%s (%s), type %s", info.Reachability.Reachability, info.Reachability.Reason, info.Type)
			}
			time.Sleep(250 * time.Millisecond)
		}
		t.Fatalf("%s: not %s within 45s: %s; addresses %v", n.name, want, last, n.addrs)
	}
	decided("public")

	if err := site.SetNAT(PortRestricted); err != nil {
		t.Fatal(err)
	}
	if _, err := n.host.Exec(ctx, "ip", "addr", "add", "10.0.1.99/24", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	decided("private")

	if err := site.SetNAT(FullCone); err != nil {
		t.Fatal(err)
	}
	if _, err := n.host.Exec(ctx, "ip", "addr", "del", "10.0.1.99/24", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	decided("public")
}
