package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/macula-io/macula/internal/testnet"
)

// TestUpperCaseNamesEndToEnd runs real macula-node processes of a secure
// realm whose procedures, topics and grants have upper-case segments below
// the realm (a device ID, a peer ID): the grants are issued and verified by
// the CLI, a call and a publication go through, and nothing folds case: the
// same names in another case are refused by the grants or matched by no
// subscription.
func TestUpperCaseNamesEndToEnd(t *testing.T) {
	t.Parallel()
	const (
		device    = rpcRealm + ".devices.AB12"
		procGetUp = device + ".getOrder"                // granted and advertised
		procLower = rpcRealm + ".devices.ab12.getOrder" // another name: not granted
		telemetry = device + ".telemetry"
	)
	base := t.TempDir()
	authKey, authority := secureRealmInit(t, base)

	pn := prepareSecureNode(t, base, authKey, "provider", "advertise "+device+".*", "publish "+rpcRealm+".>")
	cn := prepareSecureNode(t, base, authKey, "client", "call "+device+".*", "subscribe "+rpcRealm+".devices.*.telemetry")

	// ucan verify reads the grant as a node does: exact case.
	for _, tc := range []struct {
		name string
		code int
	}{{procGetUp, 0}, {procLower, exitUnauthorized}, {device + ".GETORDER", 0}} {
		r := runCmd(t, 20*time.Second, nil, "ucan", "verify", "@"+cn.files["call"], "--authority", authority,
			"--realm", rpcRealm, "--can", "call", "--with", tc.name)
		if r.code != tc.code {
			t.Errorf("ucan verify --can call --with %s: exit %d, want %d; %s", tc.name, r.code, tc.code, r.stderr)
		}
	}

	prov := pn.start(t, authority)
	client := cn.start(t, authority, prov.st.Addrs[0])

	hook := startOrderHook(t, "provider")
	startAdvertiser(t, prov, procGetUp, hook.url("/get_order"), "10s")
	// The provider may not advertise the lower-case name: its grant says AB12.
	if r := runCmd(t, 20*time.Second, nil, "--api", prov.st.API, "advertise", procLower, "--url", hook.url("/get_order")); r.code != exitUnauthorized {
		t.Errorf("advertise %s: exit %d, want %d; %s", procLower, r.code, exitUnauthorized, r.stderr)
	}

	// Waiting for the call of procGetUp.
	testnet.Eventually(t, 20*time.Second, func() error {
		r := runCmd(t, 20*time.Second, nil, "--api", client.st.API, "call", procGetUp, "--data", `{"id":12}`, "--timeout", "5s")
		if r.code != 0 {
			return fmt.Errorf("exit %d: %s", r.code, r.stderr)
		}
		if !strings.Contains(r.stdout, `"served_by": "provider"`) {
			t.Fatalf("call %s printed %q", procGetUp, r.stdout)
		}
		return nil
	})
	if g, _ := hook.grant.Load().(string); !strings.Contains(g, device+".*") {
		t.Errorf("the webhook saw the caller's grant %q, want one on %s.*", g, device)
	}
	r := runCmd(t, 20*time.Second, nil, "--api", client.st.API, "call", procLower, "--data", `{"id":13}`, "--timeout", "5s")
	if r.code != exitUnauthorized {
		t.Errorf("call %s: exit %d, want %d (the grant is for AB12); %s", procLower, r.code, exitUnauthorized, r.stderr)
	}

	// A subscription with a wildcard where the device ID goes gets the
	// upper-case topic as it was published; a topic that differs only in the
	// case of a literal segment of the pattern is not delivered.
	sub := startSubscriber(t, client, rpcRealm+".devices.*.telemetry", "--json")
	peerTopic := rpcRealm + ".devices." + prov.st.PeerID + ".telemetry"
	// Waiting for telemetry to reach the client.
	testnet.Eventually(t, 20*time.Second, func() error {
		for _, topic := range []string{device + ".Telemetry", telemetry, peerTopic} {
			if r := runCmd(t, 20*time.Second, nil, "--api", prov.st.API, "publish", topic, "--data", `{"t":1}`); r.code != 0 {
				t.Fatalf("publish %s: exit %d: %s", topic, r.code, r.stderr)
			}
		}
		evs := sub.events(t)
		got := map[string]bool{}
		for _, ev := range evs {
			got[ev.Topic] = true
		}
		if got[device+".Telemetry"] {
			t.Fatalf("the subscription to *.telemetry got %s.Telemetry", device)
		}
		if !got[telemetry] || !got[peerTopic] {
			return fmt.Errorf("got %v", got)
		}
		return nil
	})
}
