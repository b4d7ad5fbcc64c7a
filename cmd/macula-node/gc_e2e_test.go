package main

import (
	"bufio"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// A node runs with the garbage collector's target at gcPercent unless
// GOGC is set (then as set), as its own metrics say
// (go_gc_gogc_percent, from the runtime).
func TestGCTarget(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env  string
		want string
	}{
		{"GOGC=", fmt.Sprint(gcPercent)},
		{"GOGC=100", "100"},
	} {
		t.Run(tc.env, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "n")
			n := &runNode{dir: dir, proc: startProc(t, "n", []string{tc.env}, "run", "--realm", "io.e2e.gc", "--name", "n",
				"--data-dir", dir, "--listen", "/ip4/127.0.0.1/udp/0/quic-v1", "--api", "127.0.0.1:0", "--http3", "off")}
			n.waitReady(t)
			resp, err := http.Get("http://" + n.st.API + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				if v, ok := strings.CutPrefix(sc.Text(), "go_gc_gogc_percent "); ok {
					if v != tc.want {
						t.Fatalf("with %s the node's GC target is %s, want %s", tc.env, v, tc.want)
					}
					return
				}
			}
			t.Fatalf("no go_gc_gogc_percent in the node's /metrics (status %s, %v)", resp.Status, sc.Err())
		})
	}
}
