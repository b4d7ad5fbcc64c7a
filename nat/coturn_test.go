package nat

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"
)

// requireTool skips the test when a program is missing, or fails it in CI
// (CI=true), where .ci/run installs it.
func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found: CI must install it (apt-get install -y %s)", name, pkg)
		}
		t.Skipf("%s not found (apt-get install -y %s)", name, pkg)
	}
	return path
}

// lockedBuffer collects a process's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// freePortPair finds P and P+1 free for UDP and TCP on 127.0.0.1 and
// 127.0.0.2 (coturn listens on both protocols).
func freePortPair(t *testing.T) int {
	t.Helper()
	for range 50 {
		p := 20000 + rand.IntN(30000)
		ok := true
		var closers []func() error
		for _, ip := range []string{"127.0.0.1", "127.0.0.2"} {
			for _, port := range []int{p, p + 1} {
				u, err := net.ListenPacket("udp", fmt.Sprintf("%s:%d", ip, port))
				if err != nil {
					ok = false
					continue
				}
				closers = append(closers, u.Close)
				l, err := net.Listen("tcp", fmt.Sprintf("%s:%d", ip, port))
				if err != nil {
					ok = false
					continue
				}
				closers = append(closers, l.Close)
			}
		}
		for _, c := range closers {
			c()
		}
		if ok {
			return p
		}
	}
	t.Fatal("no free port pair")
	return 0
}

// startCoturn runs coturn as a STUN server on 127.0.0.1 and 127.0.0.2, which
// is what coturn 4.6.1 needs to answer RFC 5780 (OTHER-ADDRESS,
// CHANGE-REQUEST): two listening IPs of one family.
func startCoturn(t *testing.T) string {
	t.Helper()
	bin := requireTool(t, "turnserver", "coturn")
	port := freePortPair(t)
	dir := t.TempDir()
	out := &lockedBuffer{}
	cmd := exec.Command(bin, "-n",
		"--listening-ip=127.0.0.1", "--listening-ip=127.0.0.2",
		fmt.Sprintf("--listening-port=%d", port), fmt.Sprintf("--alt-listening-port=%d", port+1),
		"--no-tls", "--no-dtls", "--stun-only", "--no-cli", "--allow-loopback-peers",
		"--pidfile="+dir+"/turnserver.pid", "--log-file=stdout", "--simple-log")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start coturn: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("coturn output:\n%s", out.String())
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	// Ready when it answers a Binding request.
	c := udp(t, "127.0.0.1:0")
	req, _ := newRequest(0)
	buf := make([]byte, 1500)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			t.Fatalf("coturn exited:\n%s", out.String())
		default:
		}
		c.WriteTo(req.Raw, net.UDPAddrFromAddrPort(mustResolve(t, addr)))
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if n, _, err := c.ReadFrom(buf); err == nil {
			if _, err := decode(buf[:n]); err == nil {
				return addr
			}
		}
	}
	t.Fatalf("coturn did not answer on %s:\n%s", addr, out.String())
	return ""
}

func TestCoturn(t *testing.T) {
	addr := startCoturn(t)
	p := newProber(t, fastConfig(addr))
	info, err := probe(t, p)
	if err != nil {
		t.Fatal(err)
	}
	if !info.Servers[0].RFC5780 {
		t.Errorf("coturn not seen as RFC 5780: %+v", info.Servers[0])
	}
	if pub, _ := info.PublicAddr(); pub != p.LocalAddr() {
		t.Errorf("public %v, want %v", pub, p.LocalAddr())
	}
	if info.Type != TypeOpen || info.Mapping != BehaviorEndpointIndependent || info.Filtering != BehaviorEndpointIndependent || info.Error != "" {
		t.Errorf("got %s/%s/%s (%q), want open/endpoint_independent/endpoint_independent", info.Type, info.Mapping, info.Filtering, info.Error)
	}
}
