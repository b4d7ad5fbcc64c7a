package main

import (
	"bufio"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A node at rest runs with the garbage collector's target at
// gcPercentQuiet unless GOGC is set (then as set), as its own metrics say
// (go_gc_gogc_percent, from the runtime): a node that started is quiet
// again within quietGap of its start's last collection.
func TestGCTarget(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env  string
		want string
	}{
		{"GOGC=", fmt.Sprint(gcPercentQuiet)},
		{"GOGC=100", "100"},
	} {
		t.Run(tc.env, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "n")
			n := &runNode{dir: dir, proc: startProc(t, "n", []string{tc.env}, "run", "--realm", "io.e2e.gc", "--name", "n",
				"--data-dir", dir, "--listen", "/ip4/127.0.0.1/udp/0/quic-v1", "--api", "127.0.0.1:0", "--http3", "off")}
			n.waitReady(t)
			// Read every 5 s, no faster: each read allocates, and reads
			// in quick succession keep a small heap collecting (busy).
			deadline := time.Now().Add(time.Minute)
			for {
				v, err := gcTarget(n.st.API)
				if err == nil && v == tc.want {
					return
				}
				if err == nil {
					err = fmt.Errorf("with %s the node's GC target is %s, want %s", tc.env, v, tc.want)
				}
				if time.Now().After(deadline) {
					t.Fatal(err)
				}
				time.Sleep(5 * time.Second)
			}
		})
	}
}

// gcTarget reads go_gc_gogc_percent from the node's /metrics.
func gcTarget(api string) (string, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + api + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_gc_gogc_percent "); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("no go_gc_gogc_percent in the node's /metrics (status %s, %v)", resp.Status, sc.Err())
}
