package main

import (
	"testing"

	"github.com/macula-io/macula/dht"
)

// TestNATFlags: with no NAT flag the node decides everything; each flag
// forces its choice from every source.
func TestNATFlags(t *testing.T) {
	cases := []struct {
		name              string
		args              []string
		env               map[string]string
		file              string
		on, off           bool
		dhtMode, reachity string
	}{
		{name: "defaults", dhtMode: "auto"},
		{name: "--relay-service", args: []string{"--relay-service"}, on: true, dhtMode: "auto"},
		{name: "--relay-service=false", args: []string{"--relay-service=false"}, off: true, dhtMode: "auto"},
		{name: "--relay-service=auto", args: []string{"--relay-service=auto"}, dhtMode: "auto"},
		{name: "env false", env: map[string]string{"MACULA_RELAY_SERVICE": "false"}, off: true, dhtMode: "auto"},
		{name: "file true", file: "relay_service = true\n", on: true, dhtMode: "auto"},
		{name: "file false", file: "relay_service = false\ndht_mode = \"server\"\nreachability = \"public\"\n", off: true, dhtMode: "server", reachity: "public"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o, err := parseRun(t, append([]string{"--realm", "io.acme.orders", "--data-dir", t.TempDir()}, c.args...), c.env, c.file)
			if err != nil {
				t.Fatal(err)
			}
			p, err := o.plan()
			if err != nil {
				t.Fatal(err)
			}
			nc := p.nodeCfg
			if nc.RelayService != c.on || nc.DisableRelayService != c.off || nc.DHTMode != dht.Mode(c.dhtMode) || nc.Reachability != c.reachity {
				t.Fatalf("relay service on=%v off=%v, dht %s, reachability %q", nc.RelayService, nc.DisableRelayService, nc.DHTMode, nc.Reachability)
			}
		})
	}
	var f switchFlag
	if err := f.Set("sometimes"); err == nil {
		t.Fatal("accepted sometimes")
	}
}
