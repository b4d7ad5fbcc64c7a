package main

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/macula-io/macula/internal/testnet"
)

// TestDevSecure: with dev --secure the documented client commands work as
// before against the nodes' loopback APIs (they find each node's local
// credential through its answer), a request without it is refused, and the
// credentials go when dev stops.
func TestDevSecure(t *testing.T) {
	t.Parallel()
	p := startProc(t, "dev --secure", nil, "dev", "--nodes", "2", "--secure")
	apis := map[string]string{}
	testnet.Eventually(t, 30*time.Second, func() error {
		if p.exited() {
			t.Fatalf("dev exited (%v); stderr:\n%s", p.err, p.stderr.String())
		}
		for _, line := range strings.Split(p.stdout.String(), "\n") {
			if m := devRow.FindStringSubmatch(line); m != nil {
				apis[m[1]] = m[5]
			}
		}
		if len(apis) != 2 || !strings.Contains(p.stdout.String(), "Ctrl-C") {
			return errors.New("no table yet")
		}
		return nil
	})
	n1, n2 := apis["node1"], apis["node2"]
	if r := runCmd(t, 20*time.Second, nil, "--api", n1, "id"); r.code != 0 || !strings.Contains(r.stdout, "secure (authority") {
		t.Fatalf("id: exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	hook := startOrderHook(t, "dev")
	proc := devRealm + ".get_order"
	adv := startProc(t, "advertise", nil, "--api", n1, "advertise", proc, "--url", hook.url("/get_order"), "--lease", "10s")
	testnet.Eventually(t, 20*time.Second, func() error {
		if adv.exited() {
			t.Fatalf("advertise exited: %s", adv.stderr.String())
		}
		r := runCmd(t, 20*time.Second, nil, "--api", n2, "call", proc, "--data", `{"id":3}`, "--timeout", "5s")
		if r.code != 0 || !strings.Contains(r.stdout, `"served_by"`) || !strings.Contains(r.stdout, `"dev"`) {
			return fmt.Errorf("exit %d: %s%s", r.code, r.stdout, r.stderr)
		}
		return nil
	})

	resp, err := http.Get("http://" + n1 + "/v1/node")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var file string
	for _, c := range resp.Header.Values("WWW-Authenticate") {
		if m := regexp.MustCompile(`^Macula-Local .*file="([^"]+)"`).FindStringSubmatch(c); m != nil {
			file = m[1]
		}
	}
	if resp.StatusCode != http.StatusUnauthorized || file == "" {
		t.Fatalf("without the credential: HTTP %d, challenges %q", resp.StatusCode, resp.Header.Values("WWW-Authenticate"))
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("credential file %s: %v", file, err)
	}
	adv.stop(t, syscall.SIGTERM, 15*time.Second)
	if code := p.stop(t, syscall.SIGINT, 15*time.Second); code != 0 {
		t.Fatalf("dev exited with %d; stderr:\n%s", code, p.stderr.String())
	}
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("credential file after dev stopped: %v", err)
	}
}
