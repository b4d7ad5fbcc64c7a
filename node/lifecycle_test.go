package node

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/macula-io/macula/event"
	"github.com/macula-io/macula/realm"
)

func TestIdentityPersists(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	n1 := startNode(t, "io.acme.orders", "n1", func(c *Config) { c.DataDir = dir })
	if !n1.KeyCreated() {
		t.Fatal("first start did not report a new key")
	}
	fi, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	id, did := n1.ID(), n1.DID()
	if err := n1.Close(); err != nil {
		t.Fatal(err)
	}
	n2 := startNode(t, "io.acme.orders", "n1", func(c *Config) { c.DataDir = dir })
	if n2.KeyCreated() || n2.ID() != id || n2.DID() != did {
		t.Fatalf("restart: id %s did %s created %v; want %s %s false", n2.ID(), n2.DID(), n2.KeyCreated(), id, did)
	}
	// The did:key and the peer ID name the same key.
	pub, err := realm.ParseDIDKey(did)
	if err != nil {
		t.Fatal(err)
	}
	pk, _ := crypto.UnmarshalEd25519PublicKey(pub)
	if pid, _ := peer.IDFromPublicKey(pk); pid != id {
		t.Fatalf("did:key gives peer %s, host is %s", pid, id)
	}
}

// Bad input: a clear error, and nothing on disk changes.
func TestNewRefusesBadInput(t *testing.T) {
	tmp := t.TempDir()
	file := filepath.Join(tmp, "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	corruptDir := filepath.Join(tmp, "corrupt")
	_ = os.MkdirAll(corruptDir, 0o700)
	garbage := []byte("not a key at all\n")
	if err := os.WriteFile(filepath.Join(corruptDir, KeyFile), garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	busy, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := busy.LocalAddr().(*net.UDPAddr).Port
	fresh := filepath.Join(tmp, "fresh", "deeper")

	cases := []struct {
		name  string
		mod   func(*Config)
		want  error
		words string
	}{
		{"uppercase realm", func(c *Config) { c.Realm = "Io.Acme" }, ErrConfig, "realm"},
		{"one-segment realm", func(c *Config) { c.Realm = "acme" }, ErrConfig, "realm"},
		{"bad node name", func(c *Config) { c.Name = "a.b" }, ErrConfig, "name"},
		{"bad bootstrap", func(c *Config) { c.Bootstrap = []string{"/ip4/1.2.3.4/udp/x"} }, ErrConfig, "bootstrap"},
		{"bootstrap without peer id", func(c *Config) { c.Bootstrap = []string{"/ip4/127.0.0.1/udp/1/quic-v1"} }, ErrConfig, "/p2p/"},
		{"tcp listen", func(c *Config) { c.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0"} }, ErrConfig, "QUIC"},
		{"busy port", func(c *Config) {
			c.DataDir = fresh
			c.ListenAddrs = []string{"/ip4/127.0.0.1/udp/" + fmtInt(busyPort) + "/quic-v1"}
		}, ErrListen, "already in use"},
		{"data dir under a file", func(c *Config) { c.DataDir = filepath.Join(file, "sub") }, ErrDataDir, "not a directory"},
		{"corrupt key", func(c *Config) { c.DataDir = corruptDir }, ErrCorruptKey, "corrupt"},
		{"negative attempts", func(c *Config) { c.MaxReconnectAttempts = -1 }, ErrConfig, "max_reconnect_attempts"},
		// Refused once the host and the DHT run: New's cleanup stops them
		// (goleak checks that nothing is left).
		{"bad rpc policy", func(c *Config) { c.DataDir = fresh; c.RPC.Policy = "fastest" }, ErrConfig, "rpc"},
		{"bad pubsub queue", func(c *Config) { c.DataDir = fresh; c.PubSub.PeerQueue = -1 }, ErrConfig, "pubsub"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultConfig("io.acme.orders", "n")
			cfg.ListenAddrs = []string{"/ip4/127.0.0.1/udp/0/quic-v1"}
			cfg.Logger = quietLogger()
			c.mod(&cfg)
			n, err := New(cfg)
			if err == nil {
				n.Close()
				t.Fatal("New succeeded")
			}
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.words) {
				t.Fatalf("error %q, want %v mentioning %q", err, c.want, c.words)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error spans lines: %q", err)
			}
		})
	}
	if got, _ := os.ReadFile(filepath.Join(corruptDir, KeyFile)); !bytes.Equal(got, garbage) {
		t.Fatal("the corrupt key file was changed")
	}
	if _, err := os.Stat(filepath.Join(tmp, "fresh")); !os.IsNotExist(err) {
		t.Fatalf("a failed start left the data directory behind: %v", err)
	}
}

// The zero Config (but for the realm and the name) is a working node with
// the defaults: two of them join and redial each other.
func TestZeroConfig(t *testing.T) {
	start := func(name string, boot []string) *Node {
		n, err := New(Config{Realm: "io.acme.orders", Name: name, ListenAddrs: []string{"/ip4/127.0.0.1/udp/0/quic-v1"},
			Bootstrap: boot, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		return n
	}
	a := start("a", nil)
	b := start("b", bootstrapOf(a))
	if b.cfg.DisableReconnect || b.cfg.DisableHolePunching || b.cfg.DHTMode != DefaultConfig("x.y", "b").DHTMode {
		t.Fatalf("zero Config settings: %+v", b.cfg.Config)
	}
	eventually(t, 10*time.Second, "b joins a", func() bool { return b.IsPeer(a.ID()) })
	// Reconnect is on by default: b dials a again after the link drops.
	sub := b.Events().Subscribe(16, event.ConnectionDown, event.ConnectionUp)
	defer sub.Close()
	_ = b.Host().Network().ClosePeer(a.ID())
	for _, want := range []event.Kind{event.ConnectionDown, event.ConnectionUp} {
		select {
		case e := <-sub.C:
			if e.Kind != want || e.Peer != a.ID().String() {
				t.Fatalf("event %v, want %v of a", e, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no %v after the link to a dropped", want)
		}
	}
}

func fmtInt(i int) string { return strconv.Itoa(i) }

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestReconnectAfterBootstrapRestarts(t *testing.T) {
	dir := t.TempDir()
	boot := startNode(t, "io.acme.orders", "boot", func(c *Config) { c.DataDir = dir })
	addr := boot.Host().Addrs()[0].String()
	b := startNode(t, "io.acme.orders", "b", func(c *Config) { c.Bootstrap = bootstrapOf(boot) })
	ups := b.Events().Subscribe(16, event.ConnectionUp, event.ConnectionDown)
	defer ups.Close()
	want := func(k event.Kind) {
		t.Helper()
		select {
		case e := <-ups.C:
			if e.Kind != k || e.Peer != boot.ID().String() {
				t.Fatalf("event %v for %s, want %v for the bootstrap peer", e.Kind, e.Peer, k)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("no %v event", k)
		}
	}
	want(event.ConnectionUp)
	if err := boot.Close(); err != nil {
		t.Fatal(err)
	}
	want(event.ConnectionDown)
	// Same key, same address: b must find its way back on its own.
	startNode(t, "io.acme.orders", "boot", func(c *Config) {
		c.DataDir = dir
		c.ListenAddrs = []string{addr}
	})
	want(event.ConnectionUp)
}

func TestReconnectGivesUp(t *testing.T) {
	// A bootstrap peer that never answers: a port nobody listens on.
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	ghost := startNode(t, "io.acme.orders", "ghost", nil) // only for a valid peer ID
	ghostID := ghost.ID()
	ghost.Close()
	var logs syncBuffer
	startNode(t, "io.acme.orders", "n", func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		c.Bootstrap = []string{"/ip4/127.0.0.1/udp/" + fmtInt(port) + "/quic-v1/p2p/" + ghostID.String()}
		c.MaxReconnectAttempts = 2
		c.ReconnectInterval = 10 * time.Millisecond
	})
	eventually(t, 60*time.Second, "the node to give up", func() bool {
		return strings.Contains(logs.String(), "giving up on bootstrap peer")
	})
	if c := strings.Count(logs.String(), `level=WARN msg="bootstrap peer unreachable"`); c != 1 {
		t.Fatalf("%d retries logged (at WARN: an operator must see it) before giving up, want 1 (2 attempts):\n%s", c, logs.String())
	}
}

func TestCloseIsIdempotentAndStopsEvents(t *testing.T) {
	n := startNode(t, "io.acme.orders", "n", nil)
	sub := n.Events().Subscribe(1)
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	for range sub.C { // drain what came before Close; the channel must end
	}
}

// A node learns its address by STUN from its bootstrap peer's QUIC port,
// through its own QUIC socket: the mapped port is the QUIC port.
func TestNATProbeThroughBootstrap(t *testing.T) {
	boot := startNode(t, "io.acme.orders", "boot", nil)
	n := startNode(t, "io.acme.orders", "n", func(c *Config) { c.Bootstrap = bootstrapOf(boot) })
	var quicPort int
	for _, a := range n.Host().Network().ListenAddresses() {
		if p, err := a.ValueForProtocol(ma.P_UDP); err == nil {
			quicPort, _ = strconv.Atoi(p)
		}
	}
	eventually(t, 15*time.Second, "a NAT probe with a public address", func() bool {
		return n.NAT().PublicPort != 0
	})
	info := n.NAT()
	if int(info.PublicPort) != quicPort || info.PublicIP.String() != "127.0.0.1" {
		t.Fatalf("NAT info %+v, want 127.0.0.1:%d", info, quicPort)
	}
	if info.MeasuredAt.IsZero() {
		t.Fatalf("no measured_at in %+v", info)
	}
}

func TestViaRelay(t *testing.T) {
	r1 := "12D3KooWHHzSeKaY8xuZVzkLbKFfvNgPPeKhFBGrMbNzbm5akpqu"
	r2 := "12D3KooWJWCbxLA7J8xc4bEUhUuuS4Du97JSgprfCtqetR9cBXH3"
	id1, _ := peer.Decode(r1)
	cases := []struct {
		addr string
		want bool
	}{
		{"/ip4/7.0.0.10/udp/7400/quic-v1/p2p/" + r1 + "/p2p-circuit", true},
		{"/ip4/7.0.0.10/udp/7400/quic-v1/p2p/" + r1 + "/p2p-circuit/p2p/" + r2, true},
		{"/ip4/7.0.0.11/udp/7400/quic-v1/p2p/" + r2 + "/p2p-circuit", false},
		{"/ip4/7.0.0.10/udp/7400/quic-v1/p2p/" + r1, false},
		{"/ip4/8.0.0.1/udp/7400/quic-v1", false},
	}
	for _, c := range cases {
		if got := viaRelay(ma.StringCast(c.addr), id1); got != c.want {
			t.Errorf("viaRelay(%s) = %v, want %v", c.addr, got, c.want)
		}
	}
}

// A fixed listen port held for a moment (a node's earlier process still
// exiting, doctor checking that the port is free) does not fail New: it
// waits for the port, up to busyPortWait.
func TestBusyPortWaitsForItsRelease(t *testing.T) {
	busy, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := busy.LocalAddr().(*net.UDPAddr).Port
	released := make(chan struct{})
	go func() {
		time.Sleep(400 * time.Millisecond) // New is waiting by then, as a rule
		busy.Close()
		close(released)
	}()
	cfg := DefaultConfig("io.acme.orders", "n")
	cfg.DataDir = t.TempDir()
	cfg.ListenAddrs = []string{"/ip4/127.0.0.1/udp/" + fmtInt(port) + "/quic-v1"}
	cfg.Logger = quietLogger()
	n, err := New(cfg)
	<-released
	if err != nil {
		t.Fatalf("New on a port released a moment later: %v", err)
	}
	defer n.Close()
	want := "/udp/" + fmtInt(port) + "/"
	for _, a := range n.Host().Addrs() {
		if strings.Contains(a.String(), want) {
			return
		}
	}
	t.Fatalf("the node listens on %v, not on port %d", n.Host().Addrs(), port)
}
