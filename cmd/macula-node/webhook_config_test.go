package main

import (
	"slices"
	"strings"
	"testing"
)

// The webhook allow-list is a setting like the others: --webhook-allow
// (repeatable), MACULA_WEBHOOK_ALLOW (comma-separated), webhook_allow in
// the config file; a bad entry is one error line that names it.
func TestWebhookAllowSetting(t *testing.T) {
	want := []string{"10.0.0.0/8", "127.0.0.1:9000"}
	for name, src := range map[string]struct {
		args []string
		env  map[string]string
		file string
	}{
		"flag": {args: []string{"--webhook-allow", "10.0.0.0/8", "--webhook-allow", "127.0.0.1:9000"}},
		"env":  {env: map[string]string{"MACULA_WEBHOOK_ALLOW": "10.0.0.0/8, 127.0.0.1:9000"}},
		"file": {file: `webhook_allow = ["10.0.0.0/8", "127.0.0.1:9000"]`},
	} {
		o, err := parseRun(t, append([]string{"--realm", "io.acme.orders"}, src.args...), src.env, src.file)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		p, err := o.plan()
		if err != nil {
			t.Fatalf("%s: plan: %v", name, err)
		}
		if !slices.Equal(p.gwCfg.WebhookAllow, want) {
			t.Errorf("%s: WebhookAllow %q, want %q", name, p.gwCfg.WebhookAllow, want)
		}
	}
	o, err := parseRun(t, []string{"--realm", "io.acme.orders", "--webhook-allow", "10.0.0.0/8:http"}, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.plan(); err == nil || !strings.Contains(err.Error(), "--webhook-allow") || !strings.Contains(err.Error(), "10.0.0.0/8:http") {
		t.Errorf("a bad entry: %v", err)
	}
}
