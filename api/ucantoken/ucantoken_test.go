package ucantoken

import (
	"testing"

	"github.com/macula-io/macula/api"
	"github.com/macula-io/macula/ucan"
)

// TestCommands checks that the commands api spells out are package ucan's.
func TestCommands(t *testing.T) {
	for _, c := range []struct {
		api  string
		ucan ucan.Command
	}{
		{api.CommandAll, ucan.All},
		{api.CommandCall, ucan.Call},
		{api.CommandPublish, ucan.Publish},
		{api.CommandSubscribe, ucan.Subscribe},
		{api.CommandAdvertise, ucan.Advertise},
		{api.CommandActor, ucan.Actor},
	} {
		if c.api != string(c.ucan) {
			t.Errorf("api command %q, ucan's %q", c.api, c.ucan)
		}
	}
}
