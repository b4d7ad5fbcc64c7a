package nat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/macula-io/macula/internal/testnet"
)

func TestProbeOneSocketServer(t *testing.T) {
	s := simpleServer(t)
	p := newProber(t, fastConfig(s.Addr().String()))
	info, err := probe(t, p)
	if err != nil {
		t.Fatal(err)
	}
	local := p.LocalAddr()
	if info.Type != TypeOpen || info.Mapping != BehaviorEndpointIndependent {
		t.Errorf("type %s mapping %s, want open, endpoint_independent", info.Type, info.Mapping)
	}
	if pub, _ := info.PublicAddr(); pub != local {
		t.Errorf("public %v, want the socket's %v", pub, local)
	}
	if info.Filtering != BehaviorUnknown || !strings.Contains(info.Error, "does not support RFC 5780") {
		t.Errorf("filtering %s, error %q: want unknown, explained", info.Filtering, info.Error)
	}
	if len(info.Servers) != 1 || !info.Servers[0].OK || info.Servers[0].RFC5780 {
		t.Errorf("servers %+v", info.Servers)
	}
}

func TestProbeRFC5780Server(t *testing.T) {
	s := rfc5780Server(t, ServerConfig{})
	p := newProber(t, fastConfig(s.Addr().String()))
	info, err := probe(t, p)
	if err != nil {
		t.Fatal(err)
	}
	if info.Type != TypeOpen || info.Mapping != BehaviorEndpointIndependent || info.Filtering != BehaviorEndpointIndependent {
		t.Errorf("got %s/%s/%s, want open/endpoint_independent/endpoint_independent (%s)", info.Type, info.Mapping, info.Filtering, info.Error)
	}
	if info.Error != "" {
		t.Errorf("error %q", info.Error)
	}
	if !info.Servers[0].RFC5780 {
		t.Errorf("server not seen as RFC 5780: %+v", info.Servers[0])
	}
	if got := p.Info(); got.MeasuredAt != info.MeasuredAt {
		t.Errorf("Info() is not the last probe's")
	}
}

// A host that is not local to the socket's own addresses is behind a NAT:
// pretend so by hiding the interfaces, with the socket on 0.0.0.0.
func TestProbeNATOnLoopback(t *testing.T) {
	s := rfc5780Server(t, ServerConfig{})
	p, err := New(fastConfig(s.Addr().String()), udp(t, "0.0.0.0:0"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.localIPs = func() ([]netip.Addr, error) { return nil, nil }
	p.listen = func(*net.UDPAddr) (net.PacketConn, error) {
		return net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	}
	info, err := probe(t, p)
	if err != nil {
		t.Fatal(err)
	}
	// No NAT really: every test passes, so full cone; and the second
	// socket's request to our address arrives, so hairpin.
	if info.Type != TypeFullCone || info.Hairpin == nil || !*info.Hairpin {
		t.Errorf("type %s hairpin %v, want full_cone and hairpin (%s)", info.Type, info.Hairpin, info.Error)
	}
}

func TestProbeComparesServersWithoutRFC5780(t *testing.T) {
	a := simpleServer(t)
	s2, err := NewServer(ServerConfig{}, Sockets{Primary: udp(t, "127.0.0.2:0")})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	p := newProber(t, fastConfig(a.Addr().String(), s2.Addr().String()))
	info, err := probe(t, p)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mapping != BehaviorEndpointIndependent {
		t.Errorf("mapping %s, want endpoint_independent from two server IPs", info.Mapping)
	}
}

func TestProbeNoServers(t *testing.T) {
	p := newProber(t, fastConfig())
	info, err := probe(t, p)
	if !errors.Is(err, ErrNoServers) || info.Type != TypeUnknown || info.Error == "" {
		t.Errorf("err %v, info %+v", err, info)
	}
}

func TestProbeServerIgnoringChangeRequest(t *testing.T) {
	// A server that claims RFC 5780 (OTHER-ADDRESS) but answers every
	// request from the socket it came in on.
	s := rfc5780Server(t, ServerConfig{})
	liar := udp(t, "127.0.0.1:0")
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := liar.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			m, err := decode(buf[:n])
			if err != nil {
				continue
			}
			r := newResponder(ServerConfig{RateLimit: -1}, [4]netip.AddrPort{addrPortOf(liar.LocalAddr()), {}, {}, s.resp.addrs[sockAltBoth]}, true)
			out, _, ok := r.handle(m, netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), 0)
			if ok {
				liar.WriteToUDPAddrPort(out, from)
			}
		}
	}()
	p := newProber(t, fastConfig(addrPortOf(liar.LocalAddr()).String()))
	info, err := probe(t, p)
	if err != nil {
		t.Fatal(err)
	}
	if info.Filtering != BehaviorUnknown || !strings.Contains(info.Error, "ignored CHANGE-REQUEST") {
		t.Errorf("filtering %s error %q, want unknown and 'ignored CHANGE-REQUEST'", info.Filtering, info.Error)
	}
}

func TestProberTimerAndOnUpdate(t *testing.T) {
	s := simpleServer(t)
	var updates atomic.Int32
	cfg := fastConfig(s.Addr().String())
	cfg.Interval = 30 * time.Millisecond
	cfg.NoBehaviorTests = true
	cfg.OnUpdate = func(Info) { updates.Add(1) }
	p := newProber(t, cfg)
	testnet.Eventually(t, 5*time.Second, func() error {
		if n := updates.Load(); n < 3 {
			return fmt.Errorf("%d probes with a 30 ms interval, want 3", n)
		}
		return nil
	})
	if info := p.Info(); info.Type != TypeOpen || info.MeasuredAt.IsZero() {
		t.Errorf("info %+v", info)
	}
}

func TestProberSetServersAndStale(t *testing.T) {
	s := simpleServer(t)
	cfg := fastConfig(s.Addr().String())
	cfg.NoBehaviorTests = true
	p := newProber(t, cfg)
	first, err := probe(t, p)
	if err != nil {
		t.Fatal(err)
	}
	silent := udp(t, "127.0.0.1:0")
	if err := p.SetServers([]string{addrPortOf(silent.LocalAddr()).String()}); err != nil {
		t.Fatal(err)
	}
	info, err := probe(t, p)
	if !errors.Is(err, ErrNoAnswer) {
		t.Fatalf("err %v, want ErrNoAnswer", err)
	}
	if !info.Stale || info.PublicIP != first.PublicIP || info.PublicPort != first.PublicPort || info.Type != TypeUnknown {
		t.Errorf("after a failed probe: %+v, want the last public address, stale, type unknown", info)
	}
	if err := p.SetServers([]string{"bad:port:x"}); !errors.Is(err, ErrConfig) {
		t.Errorf("SetServers(bad) = %v", err)
	}
}

func TestProberClose(t *testing.T) {
	s := simpleServer(t)
	cfg := fastConfig(s.Addr().String())
	cfg.Interval = time.Hour // the first probe runs at once
	p, err := New(cfg, udp(t, "127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := p.Probe(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Probe after Close: %v", err)
	}
}

func TestConfigValidation(t *testing.T) {
	c := udp(t, "127.0.0.1:0")
	for name, tc := range map[string]struct {
		cfg  Config
		want string
	}{
		"empty host":       {Config{Servers: []string{":3478"}}, "has no host"},
		"bad port":         {Config{Servers: []string{"a:99999"}}, "bad port"},
		"too many servers": {Config{Servers: make([]string, 17)}, "at most 16"},
		"retransmits":      {Config{Retransmits: 9}, "Retransmits"},
		"rto":              {Config{RTO: time.Minute}, "RTO"},
		"software":         {Config{Server: ServerConfig{Software: strings.Repeat("é", 129)}}, "Software"},
	} {
		if _, err := New(tc.cfg, c); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrConfig mentioning %q", name, err, tc.want)
		}
	}
	if _, err := New(Config{}, nil); !errors.Is(err, ErrConfig) {
		t.Errorf("nil conn: %v", err)
	}
	for in, want := range map[string]server{
		"stun.example.org":   {"stun.example.org", "stun.example.org", 3478},
		"7.0.0.2:3479":       {"7.0.0.2:3479", "7.0.0.2", 3479},
		"[2001:db8::1]:5000": {"[2001:db8::1]:5000", "2001:db8::1", 5000},
		"2001:db8::1":        {"2001:db8::1", "2001:db8::1", 3478},
	} {
		if got, err := parseServer(in); err != nil || got != want {
			t.Errorf("parseServer(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
}

func TestInfoJSON(t *testing.T) {
	yes := true
	info := Info{
		Type: TypePortRestricted, Mapping: BehaviorEndpointIndependent, Filtering: BehaviorAddressAndPortDependent,
		PublicIP: netip.MustParseAddr("8.0.0.3"), PublicPort: 4242, Hairpin: &yes,
		MeasuredAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Error: "x",
		Servers: []ServerResult{{Server: "7.0.0.2:3478", OK: true}},
	}
	b, err := json.Marshal(info)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(b, &m)
	for _, k := range []string{"type", "mapping", "filtering", "public_ip", "public_port", "hairpin", "measured_at", "error", "servers"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON has no %q: %s", k, b)
		}
	}
	if m["type"] != "port_restricted" || m["public_ip"] != "8.0.0.3" || m["filtering"] != "address_and_port_dependent" {
		t.Errorf("JSON %s", b)
	}
	var back Info
	if err := json.Unmarshal(b, &back); err != nil || back.PublicIP != info.PublicIP || *back.Hairpin != true {
		t.Errorf("round trip: %+v, %v", back, err)
	}
	b, _ = json.Marshal(Info{Type: TypeUnknown})
	if strings.Contains(string(b), "public_ip") || !strings.Contains(string(b), `"hairpin":null`) {
		t.Errorf("empty Info JSON %s", b)
	}
}

func TestClassify(t *testing.T) {
	E, A, AP, U := BehaviorEndpointIndependent, BehaviorAddressDependent, BehaviorAddressAndPortDependent, BehaviorUnknown
	for _, tc := range []struct {
		m, f Behavior
		want Type
	}{
		{E, E, TypeFullCone}, {E, A, TypeRestricted}, {E, AP, TypePortRestricted}, {E, U, TypeUnknown},
		{A, E, TypeSymmetric}, {A, U, TypeSymmetric}, {AP, AP, TypeSymmetric}, {U, E, TypeUnknown},
	} {
		if got := classify(tc.m, tc.f); got != tc.want {
			t.Errorf("classify(%s, %s) = %s, want %s", tc.m, tc.f, got, tc.want)
		}
	}
}
