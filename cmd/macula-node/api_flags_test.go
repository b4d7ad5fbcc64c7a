package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/macula-io/macula/api"
	"github.com/macula-io/macula/gateway"
	"github.com/macula-io/macula/internal/testnet"
)

// freePort returns a loopback port free on TCP and on UDP just now.
func freePort(t *testing.T) string {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		pc, err := net.ListenPacket("udp", "127.0.0.1:"+port)
		ln.Close()
		if err == nil {
			pc.Close()
			return port
		}
	}
	t.Fatal("no port free on both TCP and UDP")
	return ""
}

// TestPlanHTTP3: without --http3 the HTTP/3 API listens on the --api
// address; --http3 ADDR and --http3 off say otherwise.
func TestPlanHTTP3(t *testing.T) {
	for _, tc := range []struct {
		api, http3 string
		want       string
		follows    bool
	}{
		{defaultAPI, "", defaultAPI, true},
		{"127.0.0.1:7421", "", "127.0.0.1:7421", true},
		{"127.0.0.1:0", "", "127.0.0.1:0", true},
		{"127.0.0.1:7421", "127.0.0.1:7431", "127.0.0.1:7431", false},
		{"127.0.0.1:7421", "off", "off", false},
	} {
		o := &runOptions{Realm: "io.acme.orders", Name: "n1", DataDir: t.TempDir(), API: tc.api, HTTP3: tc.http3,
			LogLevel: "info", LogFormat: "text", DHTMode: "server", ReconnectInterval: time.Second}
		p, err := o.plan()
		if err != nil {
			t.Fatalf("plan(--api %s --http3 %q): %v", tc.api, tc.http3, err)
		}
		if p.gwCfg.HTTP3Addr != tc.want || p.http3Follows != tc.follows {
			t.Errorf("--api %s --http3 %q: HTTP/3 on %q (follows %v), want %q (%v)", tc.api, tc.http3, p.gwCfg.HTTP3Addr, p.http3Follows, tc.want, tc.follows)
		}
	}
}

// TestHTTP3FollowsAPI: two nodes on one host, each given only its own
// --api (and --listen and --data-dir), both start, and each serves HTTP/3
// on its --api address, on UDP. When that UDP port is taken, the error
// names the flag to change.
func TestHTTP3FollowsAPI(t *testing.T) {
	t.Parallel()
	var nodes []*runNode
	for _, name := range []string{"a", "b"} {
		addr := "127.0.0.1:" + freePort(t)
		dir := filepath.Join(t.TempDir(), name)
		n := &runNode{proc: startProc(t, name, nil, "run", "--realm", "io.api.flags", "--name", name, "--data-dir", dir,
			"--listen", "/ip4/127.0.0.1/udp/0/quic-v1", "--api", addr), dir: dir}
		n.waitReady(t)
		if n.st.API != addr || n.st.HTTP3 != addr {
			t.Fatalf("%s with --api %s: node.json says api %s, http3 %s", name, addr, n.st.API, n.st.HTTP3)
		}
		nodes = append(nodes, n)
	}
	// The logs of a start, once: one OPEN REALM warning (it was two).
	testnet.Eventually(t, 10*time.Second, func() error {
		if !strings.Contains(nodes[0].stderr.String(), "node ready") {
			return fmt.Errorf("no \"node ready\" yet")
		}
		return nil
	})
	if c := strings.Count(nodes[0].stderr.String(), "OPEN REALM"); c != 1 {
		t.Errorf("%d OPEN REALM warnings, want 1:\n%s", c, nodes[0].stderr.String())
	}
	for _, n := range nodes {
		pem, err := os.ReadFile(filepath.Join(n.dir, gateway.CertFile))
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		c := api.NewHTTP3Client(n.st.HTTP3, &tls.Config{RootCAs: pool})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		info, err := c.Node(ctx)
		cancel()
		c.Close()
		if err != nil || info.Name != n.name {
			t.Errorf("HTTP/3 on %s: %+v, %v", n.st.HTTP3, info, err)
		}
	}

	// The --api's UDP port taken by someone else: the error says that
	// --http3 follows --api and which flags to change.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	busy := pc.LocalAddr().String()
	if ln, err := net.Listen("tcp", busy); err == nil { // the TCP port must be free for this case
		ln.Close()
		dir := t.TempDir()
		r := runCmd(t, 30*time.Second, nil, runArgs(dir, map[string]string{"api": busy, "http3": ""})...)
		want := fmt.Sprintf("macula-node: --http3 %s (the --api address, which --http3 follows): cannot listen for the HTTP/3 API (UDP): "+
			"address already in use (is another node running?); give another --api, or --http3 ADDR, or --http3 off\n", busy)
		if r.code != exitError || r.stderr != want {
			t.Errorf("--api on a busy UDP port: exit %d, %q; want %q", r.code, r.stderr, want)
		}
	}
}

// TestDevAPI: dev --api sets node1's API address, and the next nodes take
// the next ports; an --api that is taken is an error naming the flag, not
// a silent move to other ports.
func TestDevAPI(t *testing.T) {
	t.Parallel()
	var base string
	for range 20 { // two consecutive free ports
		p := freePort(t)
		var n int
		fmt.Sscan(p, &n)
		next := fmt.Sprint(n + 1)
		if ln, err := net.Listen("tcp", "127.0.0.1:"+next); err == nil {
			ln.Close()
			if pc, err := net.ListenPacket("udp", "127.0.0.1:"+next); err == nil {
				pc.Close()
				base = p
				break
			}
		}
	}
	if base == "" {
		t.Fatal("no two free ports in a row")
	}
	var n int
	fmt.Sscan(base, &n)
	p := startProc(t, "dev", nil, "dev", "--nodes", "2", "--api", "127.0.0.1:"+base)
	testnet.Eventually(t, 30*time.Second, func() error {
		if p.exited() {
			t.Fatalf("dev exited (%v); stderr:\n%s", p.err, p.stderr.String())
		}
		if !strings.Contains(p.stdout.String(), "Ctrl-C") {
			return fmt.Errorf("no table yet")
		}
		return nil
	})
	for i, name := range []string{"node1", "node2"} {
		addr := fmt.Sprintf("127.0.0.1:%d", n+i)
		var info api.NodeInfo
		if err := cliJSON(t, addr, &info, "id"); err != nil || info.Name != name {
			t.Errorf("%s at %s: %+v, %v", name, addr, info, err)
		}
	}
	// Now that port is taken: a second dev with the same --api fails.
	r := runCmd(t, 30*time.Second, nil, "dev", "--nodes", "1", "--api", "127.0.0.1:"+base)
	if r.code != exitError || !strings.Contains(r.stderr, "--api 127.0.0.1:"+base) || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("dev on a busy --api: exit %d, %q", r.code, r.stderr)
	}
}
