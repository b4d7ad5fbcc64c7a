package gateway

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestParseAllowEntry(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.0/8":              "10.0.0.0/8",
		"10.1.2.3/8":              "10.0.0.0/8",
		" 192.0.2.7:8080 ":        "192.0.2.7:8080",
		"10.0.0.0/8:443":          "10.0.0.0/8:443",
		"::1":                     "::1",
		"fd00::/8":                "fd00::/8",
		"[fd00::/8]:443":          "[fd00::/8]:443",
		"[2001:db8::5]:80":        "[2001:db8::5]:80",
		"::ffff:10.0.0.0/104":     "10.0.0.0/8",
		"[::ffff:127.0.0.1]:9000": "127.0.0.1:9000",
		"Hooks.Example.com.":      "hooks.example.com",
		"*.example.com:443":       "*.example.com:443",
	} {
		e, err := parseAllowEntry(in)
		if err != nil || e.String() != want {
			t.Errorf("parseAllowEntry(%q) = %v, %v; want %s", in, e, err, want)
		}
	}
	for _, in := range []string{
		"", " ", "10.0.0.0/33", "1.2.3.4:0", "1.2.3.4:70000", "1.2.3.4:http", "fd00::/8:443", "*", "*.*.com",
		"a.*.com", "exa mple.com", "http://x", "fe80::1%eth0", "-bad.com", "x..com",
	} {
		if e, err := parseAllowEntry(in); err == nil {
			t.Errorf("parseAllowEntry(%q) = %v, want an error", in, e)
		}
	}
	if _, err := newTargetPolicy([]string{"10.0.0.0/8", "nope:nope"}, nil); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "nope:nope") {
		t.Errorf("a bad entry: %v", err)
	}
}

// The rules of Webhook targets (package doc), address by address: who may
// name loopback, what an allow-list entry admits, and what nobody may.
func TestTargetPolicy(t *testing.T) {
	type tc struct {
		allow []string
		self  string // the API's listen address
		local bool   // the node's own user registers
		host  string // the URL's host
		addr  string // the address dialled
		ok    bool
		why   string // a word of the refusal
	}
	cases := []tc{
		// The node's own user: its loopback, anything but the API itself.
		{local: true, host: "127.0.0.1", addr: "127.0.0.1:8080", ok: true},
		{local: true, host: "127.1.2.3", addr: "127.1.2.3:80", ok: true},
		{local: true, host: "localhost", addr: "[::1]:80", ok: true},
		{local: true, host: "::ffff:127.0.0.1", addr: "[::ffff:127.0.0.1]:80", ok: true},
		{local: true, self: "127.0.0.1:7401", host: "127.0.0.1", addr: "127.0.0.1:7401", why: "own API"},
		{local: true, self: "127.0.0.1:7401", host: "localhost", addr: "[::ffff:127.0.0.1]:7401", why: "own API"},
		{local: true, self: "127.0.0.1:7401", host: "127.0.0.2", addr: "127.0.0.2:7401", ok: true}, // another listener may be there
		{local: true, self: "0.0.0.0:7401", host: "127.0.0.2", addr: "127.0.0.2:7401", why: "own API"},
		{local: true, self: "[::]:7401", host: "::1", addr: "[::1]:7401", why: "own API"},
		{local: true, host: "10.0.0.1", addr: "10.0.0.1:80", why: "allow-list"},
		{local: true, host: "169.254.169.254", addr: "169.254.169.254:80", why: "metadata"},
		// Nobody: unspecified, multicast, broadcast, IPv4-compatible.
		{local: true, host: "0.0.0.0", addr: "0.0.0.0:8080", why: "not an address"},
		{local: true, host: "::", addr: "[::]:8080", why: "not an address"},
		{local: true, host: "0.1.2.3", addr: "0.1.2.3:80", why: "not an address"},
		{local: true, host: "224.0.0.1", addr: "224.0.0.1:80", why: "not an address"},
		{local: true, host: "255.255.255.255", addr: "255.255.255.255:80", why: "not an address"},
		{local: true, host: "::127.0.0.1", addr: "[::127.0.0.1]:80", why: "not an address"},
		{allow: []string{"0.0.0.0/0", "::/0"}, local: true, host: "0.0.0.0", addr: "0.0.0.0:80", why: "not an address"},
		// Another registrant: nothing without the allow-list.
		{host: "127.0.0.1", addr: "127.0.0.1:8080", why: "loopback"},
		{host: "localhost", addr: "127.0.0.1:8080", why: "loopback"},
		{host: "::ffff:127.0.0.1", addr: "[::ffff:127.0.0.1]:8080", why: "loopback"},
		{host: "evil.example.com", addr: "127.0.0.1:8080", why: "loopback"}, // a name resolving to loopback
		{host: "10.0.0.1", addr: "10.0.0.1:80", why: "allow-list"},
		{host: "203.0.113.9", addr: "203.0.113.9:443", why: "allow-list"},
		// With it.
		{allow: []string{"127.0.0.1:9000"}, host: "127.0.0.1", addr: "127.0.0.1:9000", ok: true},
		{allow: []string{"127.0.0.1:9000"}, host: "localhost", addr: "[::ffff:127.0.0.1]:9000", ok: true},
		{allow: []string{"127.0.0.1:9000"}, host: "127.0.0.1", addr: "127.0.0.1:9001", why: "loopback"},
		{allow: []string{"127.0.0.0/8"}, self: "127.0.0.1:7401", host: "127.0.0.1", addr: "127.0.0.1:7401", why: "own API"},
		{allow: []string{"0.0.0.0/0"}, host: "10.0.0.1", addr: "10.0.0.1:80", ok: true},
		{allow: []string{"0.0.0.0/0"}, host: "127.0.0.1", addr: "127.0.0.1:80", why: "loopback"},
		{allow: []string{"0.0.0.0/0"}, host: "169.254.169.254", addr: "169.254.169.254:80", why: "metadata"},
		{allow: []string{"0.0.0.0/0"}, host: "100.100.100.200", addr: "100.100.100.200:80", why: "metadata"},
		{allow: []string{"::/0"}, host: "fd00:ec2::254", addr: "[fd00:ec2::254]:80", why: "metadata"},
		{allow: []string{"::/0"}, host: "fe80::1", addr: "[fe80::1%eth0]:80", why: "link-local"},
		{allow: []string{"::/0"}, host: "2001:db8::1", addr: "[2001:db8::1]:80", ok: true},
		{allow: []string{"::/0"}, host: "64:ff9b::7f00:1", addr: "[64:ff9b::7f00:1]:80", why: "loopback"},       // NAT64 of 127.0.0.1
		{allow: []string{"::/0"}, host: "64:ff9b::a9fe:a9fe", addr: "[64:ff9b::a9fe:a9fe]:80", why: "metadata"}, // of 169.254.169.254
		{allow: []string{"::/0"}, host: "64:ff9b::c000:205", addr: "[64:ff9b::c000:205]:80", ok: true},          // of 192.0.2.5
		{local: true, host: "64:ff9b::7f00:1", addr: "[64:ff9b::7f00:1]:80", ok: true},
		{allow: []string{"169.254.169.254:80"}, host: "169.254.169.254", addr: "169.254.169.254:80", ok: true},
		{allow: []string{"[::ffff:10.0.0.0/104]"}, host: "10.1.2.3", addr: "10.1.2.3:80", ok: true},
		{allow: []string{"10.0.0.0/8:443"}, host: "10.1.2.3", addr: "10.1.2.3:80", why: "allow-list"},
		// Names admit what they resolve to, never loopback or link-local.
		{allow: []string{"hooks.example.com:443"}, host: "hooks.example.com", addr: "203.0.113.5:443", ok: true},
		{allow: []string{"hooks.example.com:443"}, host: "HOOKS.example.com.", addr: "203.0.113.5:443", ok: true},
		{allow: []string{"hooks.example.com:443"}, host: "hooks.example.com", addr: "203.0.113.5:80", why: "allow-list"},
		{allow: []string{"hooks.example.com"}, host: "hooks.example.com", addr: "127.0.0.1:443", why: "loopback"},
		{allow: []string{"hooks.example.com"}, host: "hooks.example.com", addr: "169.254.169.254:80", why: "metadata"},
		{allow: []string{"*.example.com"}, host: "a.b.example.com", addr: "203.0.113.5:80", ok: true},
		{allow: []string{"*.example.com"}, host: "example.com", addr: "203.0.113.5:80", why: "allow-list"},
		{allow: []string{"*.example.com"}, host: "evilexample.com", addr: "203.0.113.5:80", why: "allow-list"},
	}
	for _, c := range cases {
		self := func() string { return c.self }
		p, err := newTargetPolicy(c.allow, self)
		if err != nil {
			t.Fatal(err)
		}
		ap, err := netip.ParseAddrPort(c.addr)
		if err != nil {
			t.Fatal(err)
		}
		err = p.check(c.host, ap, c.local)
		switch {
		case c.ok && err != nil:
			t.Errorf("%+v: refused: %v", c, err)
		case !c.ok && err == nil:
			t.Errorf("%+v: allowed", c)
		case !c.ok && !strings.Contains(err.Error(), c.why):
			t.Errorf("%+v: %v, want a word on %q", c, err, c.why)
		}
	}
}

// A URL is checked when it is registered, for every address its name
// resolves to.
func TestCheckWebhookURL(t *testing.T) {
	p, _ := newTargetPolicy([]string{"203.0.113.0/24"}, func() string { return "127.0.0.1:7401" })
	names := map[string][]netip.Addr{
		"hooks.example.com": {netip.MustParseAddr("203.0.113.5")},
		"mixed.example.com": {netip.MustParseAddr("203.0.113.5"), netip.MustParseAddr("127.0.0.1")},
		"localhost":         {netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")},
	}
	p.lookup = func(_ context.Context, host string) ([]netip.Addr, error) {
		if a, err := netip.ParseAddr(host); err == nil {
			return []netip.Addr{a}, nil
		}
		if a, ok := names[host]; ok {
			return a, nil
		}
		return nil, errors.New("no such host")
	}
	ctx := context.Background()
	for _, c := range []struct {
		url    string
		local  bool
		status int // 0: accepted
	}{
		{"http://127.0.0.1:8080/x", true, 0},
		{"https://localhost:8443/x?y=1", true, 0},
		{"http://[::1]/x", true, 0},
		{"http://hooks.example.com/x", false, 0},
		{"http://localhost:8080/x", false, 403},
		{"http://mixed.example.com/x", false, 403}, // one of its addresses is loopback
		{"http://127.0.0.1:7401/v1/publish/x", true, 403},
		{"http://localhost:7401/v1/call/x", true, 403},
		{"http://0.0.0.0:8080/x", true, 403},
		{"http://nowhere.example.com/x", true, 400},
		{"ftp://127.0.0.1/x", true, 400},
		{"127.0.0.1:8080/x", true, 400},
		{"http:///x", true, 400},
		{"http://127.0.0.1:0/x", true, 400},
		{"mailto:someone@127.0.0.1", true, 400},
	} {
		_, err := p.checkURL(ctx, c.url, c.local)
		var ae *apiError
		switch {
		case c.status == 0 && err != nil:
			t.Errorf("%s (local %v): %v", c.url, c.local, err)
		case c.status != 0 && (!errors.As(err, &ae) || ae.status != c.status):
			t.Errorf("%s (local %v): %v, want HTTP %d", c.url, c.local, err, c.status)
		}
	}
}

// The address dialled is checked again: a name that resolved to an
// allowed address at registration and resolves to loopback later (DNS
// rebinding) is not dialled there.
func TestWebhookDialRechecks(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("reached")) }))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	p, _ := newTargetPolicy([]string{"hooks.example.com"}, nil)
	answer := netip.MustParseAddr("203.0.113.5")
	p.lookup = func(context.Context, string) ([]netip.Addr, error) { return []netip.Addr{answer}, nil }
	if _, err := p.checkURL(context.Background(), "http://hooks.example.com:"+port+"/x", false); err != nil {
		t.Fatalf("registration: %v", err)
	}
	answer = netip.MustParseAddr("127.0.0.1") // rebinding
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if c, err := p.dial(ctx, false, "tcp", "hooks.example.com:"+port); err == nil || !strings.Contains(err.Error(), "not dialled") {
		if c != nil {
			c.Close()
		}
		t.Fatalf("dial after rebinding to loopback: %v, want a refusal", err)
	}
	// The node's own user may reach its loopback through the name.
	c, err := p.dial(ctx, true, "tcp", "hooks.example.com:"+port)
	if err != nil {
		t.Fatalf("dial for the node's own user: %v", err)
	}
	c.Close()
}
