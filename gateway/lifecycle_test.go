package gateway

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	wire "github.com/macula-io/macula/api"
	"github.com/macula-io/macula/internal/testnet"
)

// freePort returns a loopback address whose TCP and UDP ports were both free
// a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			continue
		}
		pc.Close()
		return addr
	}
	t.Fatal("no free port")
	return ""
}

// mustBeFree fails unless addr can be bound on network now.
func mustBeFree(t *testing.T, network, addr string) {
	t.Helper()
	if network == "tcp" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("%s %s is still bound: %v", network, addr, err)
			return
		}
		ln.Close()
		return
	}
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Errorf("%s %s is still bound: %v", network, addr, err)
		return
	}
	pc.Close()
}

func TestBusyPort(t *testing.T) {
	n := startNode(t, testRealm, "busy")

	t.Run("tcp", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		udp := freePort(t)
		dir := t.TempDir()
		_, err = New(Config{Addr: ln.Addr().String(), HTTP3Addr: udp, DataDir: dir, Logger: testnet.QuietLogger()}, n)
		if !errors.Is(err, ErrListen) {
			t.Fatalf("New on a busy TCP port: %v, want ErrListen", err)
		}
		if msg := err.Error(); !strings.Contains(msg, ln.Addr().String()) || strings.Contains(msg, "\n") ||
			!strings.Contains(msg, "address already in use") {
			t.Errorf("message %q does not name the address in one line", msg)
		}
		mustBeFree(t, "udp", udp)
		mustBeEmpty(t, dir)
	})
	t.Run("udp", func(t *testing.T) {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		tcp := freePort(t)
		dir := t.TempDir()
		_, err = New(Config{Addr: tcp, HTTP3Addr: pc.LocalAddr().String(), DataDir: dir, Logger: testnet.QuietLogger()}, n)
		if !errors.Is(err, ErrListen) || !strings.Contains(err.Error(), pc.LocalAddr().String()) {
			t.Fatalf("New on a busy UDP port: %v, want ErrListen naming the address", err)
		}
		mustBeFree(t, "tcp", tcp)
		mustBeEmpty(t, dir)
	})
}

func mustBeEmpty(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("a failed New left %s in the data directory", e.Name())
	}
}

func TestCertPersisted(t *testing.T) {
	n := startNode(t, testRealm, "cert")
	dir := filepath.Join(t.TempDir(), "data") // New creates it
	mod := func(c *Config) { c.DataDir = dir }

	g1 := startGateway(t, n, mod)
	pem1 := bytes.Clone(g1.CertPEM())
	for _, f := range []string{CertFile, KeyFile} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	disk, _ := os.ReadFile(filepath.Join(dir, CertFile))
	if !bytes.Equal(disk, pem1) {
		t.Errorf("CertPEM is not the saved certificate")
	}
	if err := g1.Close(); err != nil {
		t.Fatal(err)
	}

	g2 := startGateway(t, n, mod)
	if !bytes.Equal(g2.CertPEM(), pem1) {
		t.Fatalf("second gateway on the same DataDir has a new certificate")
	}
	// A client that pinned the first gateway's certificate trusts the second.
	c := clientFor(t, g2, "http3")
	if _, err := c.Node(ctxFor(t, 5*time.Second)); err != nil {
		t.Fatalf("HTTP/3 with the pinned certificate: %v", err)
	}

	// Without DataDir, every start has its own certificate.
	g3 := startGateway(t, n, nil)
	g4 := startGateway(t, n, nil)
	if bytes.Equal(g3.CertPEM(), g4.CertPEM()) {
		t.Errorf("two in-memory certificates are the same")
	}
	// And a client that pinned another certificate is refused.
	other := wire.NewHTTP3Client(g3.HTTP3Addr(), pinned(t, g4))
	defer other.Close()
	_, err := other.Node(ctxFor(t, 5*time.Second))
	var ae *wire.APIError
	if err == nil || errors.As(err, &ae) {
		t.Errorf("a client pinning another certificate got %v, want a TLS failure", err)
	}
}

func TestCorruptCert(t *testing.T) {
	n := startNode(t, testRealm, "corrupt")
	dir := t.TempDir()
	for _, f := range []string{CertFile, KeyFile} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("not pem"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	_, err := New(Config{Addr: "127.0.0.1:0", HTTP3Addr: "127.0.0.1:0", DataDir: dir, Logger: testnet.QuietLogger()}, n)
	if !errors.Is(err, ErrCert) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("New with a corrupt certificate: %v, want ErrCert naming the files", err)
	}
}

func TestUserCert(t *testing.T) {
	n := startNode(t, testRealm, "usercert")
	c, err := newSelfSigned(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	if err := os.WriteFile(certFile, c.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, c.key, 0o600); err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, n, func(cfg *Config) { cfg.TLSCertFile, cfg.TLSKeyFile = certFile, keyFile })
	if !bytes.Equal(g.CertPEM(), c.pem) {
		t.Errorf("CertPEM is not the user's certificate")
	}
	if _, err := clientFor(t, g, "http3").Node(ctxFor(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}

	_, err = New(Config{Addr: "127.0.0.1:0", HTTP3Addr: "127.0.0.1:0", TLSCertFile: certFile, Logger: testnet.QuietLogger()}, n)
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "TLSKeyFile") {
		t.Errorf("a cert without a key: %v, want ErrConfig naming TLSKeyFile", err)
	}
}

func TestConfig(t *testing.T) {
	if d := DefaultConfig(); d.Addr != "127.0.0.1:7401" || d.HTTP3Addr != "127.0.0.1:7401" {
		t.Errorf("DefaultConfig = %+v", d)
	}
	for _, cfg := range []Config{
		{Addr: "127.0.0.1"},
		{Addr: "127.0.0.1:0", HTTP3Addr: "nohost"},
	} {
		if _, err := validate(cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("validate(%+v) = %v, want ErrConfig", cfg, err)
		}
	}
	s, err := validate(Config{})
	if err != nil || s.Addr != DefaultAddr || s.http3 || s.Logger == nil {
		t.Errorf("zero Config gives %+v, %v", s, err)
	}
}

func TestHTTP3Off(t *testing.T) {
	n := startNode(t, testRealm, "off")
	dir := t.TempDir()
	g := startGateway(t, n, func(c *Config) { c.HTTP3Addr = "off"; c.DataDir = dir })
	if g.HTTP3Addr() != "" || g.CertPEM() != nil {
		t.Errorf("HTTP/3 off but HTTP3Addr %q, CertPEM %d bytes", g.HTTP3Addr(), len(g.CertPEM()))
	}
	mustBeEmpty(t, dir)
	info, err := clientFor(t, g, "http").Node(ctxFor(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if info.API.HTTP != g.Addr() || info.API.HTTP3 != "" {
		t.Errorf("api = %+v", info.API)
	}
}

func TestClose(t *testing.T) {
	n := startNode(t, testRealm, "close")
	for _, proto := range []string{"http", "http3"} {
		t.Run(proto, func(t *testing.T) {
			g, err := New(Config{Addr: "127.0.0.1:0", HTTP3Addr: "127.0.0.1:0", Logger: testnet.QuietLogger()}, n)
			if err != nil {
				t.Fatal(err)
			}
			// A route that holds its request until the request's context
			// ends: Close must end it, and wait for it.
			started, returned := make(chan struct{}), make(chan struct{})
			g.api.mux.HandleFunc("GET /test/block", func(w http.ResponseWriter, r *http.Request) {
				close(started)
				<-r.Context().Done()
				close(returned)
			})
			c := clientFor(t, g, proto)
			done := make(chan error, 1)
			go func() {
				done <- c.raw(ctxFor(t, 30*time.Second), http.MethodGet, "/test/block", nil, nil)
			}()
			<-started
			start := time.Now()
			if err := g.Close(); err != nil {
				t.Fatal(err)
			}
			t.Logf("Close took %v", time.Since(start))
			select {
			case <-returned:
			default:
				t.Errorf("Close returned before the request in flight")
			}
			if err := g.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("Close took %v", d)
			}
			select {
			case <-done: // an error, or the empty answer of the aborted handler
			case <-time.After(5 * time.Second):
				t.Errorf("the client of the request in flight still waits after Close")
			}
			mustBeFree(t, "tcp", g.Addr())
			mustBeFree(t, "udp", g.HTTP3Addr())
			if _, err := c.Node(ctxFor(t, 500*time.Millisecond)); err == nil {
				t.Errorf("a closed gateway answered")
			}
		})
	}
}
