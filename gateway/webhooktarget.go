package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	wire "github.com/macula-io/macula/api"
)

// Where webhooks may point: see the package doc, "Webhook targets". The
// rules are applied to the URL when it is registered and again to every
// address the node dials for it, so that a name that resolves elsewhere
// later (DNS rebinding) gains nothing.

// resolveTimeout bounds the resolution of a webhook URL's host name at
// registration.
const resolveTimeout = 5 * time.Second

// allowEntry is one entry of Config.WebhookAllow: an IP prefix (an address
// is a prefix of full length) or a host name ("*.example.com": any name
// under example.com), with a port or any.
type allowEntry struct {
	prefix netip.Prefix // valid for an IP entry
	name   string       // lower case, for a name entry
	port   uint16       // 0: any
}

// parseAllowEntry reads "10.0.0.0/8", "192.0.2.7:8080", "[fd00::/8]:443",
// "::1", "hooks.example.com", "*.example.com:443".
func parseAllowEntry(s string) (allowEntry, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return allowEntry{}, errors.New("an empty entry")
	}
	if e, ok := parseAllowHost(s); ok {
		return e, nil
	}
	if inner, ok := strings.CutPrefix(s, "["); ok && strings.HasSuffix(inner, "]") {
		if e, ok := parseAllowHost(strings.TrimSuffix(inner, "]")); ok && e.name == "" {
			return e, nil
		}
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return allowEntry{}, fmt.Errorf("want an IP address or prefix, or a host name, with an optional :port (a bracketed IPv6 with a port): %v", err)
	}
	e, ok := parseAllowHost(host)
	if !ok {
		return allowEntry{}, fmt.Errorf("%q is neither an IP address or prefix nor a host name", host)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return allowEntry{}, fmt.Errorf("port %q: want 1 to 65535", port)
	}
	e.port = uint16(p)
	return e, nil
}

func parseAllowHost(h string) (allowEntry, bool) {
	if p, err := netip.ParsePrefix(h); err == nil {
		return allowEntry{prefix: unmapPrefix(p).Masked()}, true
	}
	if a, err := netip.ParseAddr(h); err == nil && a.Zone() == "" {
		a = a.Unmap()
		return allowEntry{prefix: netip.PrefixFrom(a, a.BitLen())}, true
	}
	name := strings.ToLower(strings.TrimSuffix(h, "."))
	if validHostName(strings.TrimPrefix(name, "*.")) && strings.Count(name, "*") <= 1 {
		return allowEntry{name: name}, true
	}
	return allowEntry{}, false
}

func unmapPrefix(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p
}

func validHostName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

func (e allowEntry) String() string {
	h := e.name
	if e.name == "" {
		h = e.prefix.String()
		if e.prefix.IsSingleIP() {
			h = e.prefix.Addr().String()
		}
	}
	if e.port == 0 {
		return h
	}
	if strings.Contains(h, ":") {
		h = "[" + h + "]"
	}
	return h + ":" + strconv.Itoa(int(e.port))
}

// matchesName reports whether a name entry admits host (lower case).
func (e allowEntry) matchesName(host string) bool {
	if rest, ok := strings.CutPrefix(e.name, "*."); ok {
		return strings.HasSuffix(host, "."+rest)
	}
	return e.name != "" && host == e.name
}

func (e allowEntry) portOK(port uint16) bool { return e.port == 0 || e.port == port }

// Address classes of a webhook target.
type targetClass int

const (
	classOrdinary targetClass = iota
	// classLoopback: 127.0.0.0/8, ::1.
	classLoopback
	// classSensitive: link-local (169.254.0.0/16 and fe80::/10, where
	// cloud metadata services answer) and other metadata addresses.
	classSensitive
	// classNever: no host listens there as a webhook; dialling it may
	// reach the node's own host (0.0.0.0, ::), or many (multicast,
	// broadcast); IPv4-compatible IPv6 (::a.b.c.d) is deprecated.
	classNever
)

var (
	loopback4    = netip.MustParsePrefix("127.0.0.0/8")
	loopback6    = netip.MustParsePrefix("::1/128")
	linkLocal4   = netip.MustParsePrefix("169.254.0.0/16")
	linkLocal6   = netip.MustParsePrefix("fe80::/10")
	thisNetwork  = netip.MustParsePrefix("0.0.0.0/8")
	v4Compatible = netip.MustParsePrefix("::/96")
	broadcast    = netip.MustParseAddr("255.255.255.255")
	nat64        = netip.MustParsePrefix("64:ff9b::/96")
	// Metadata services outside link-local: AWS over IPv6, Alibaba Cloud.
	metadata = []netip.Prefix{netip.MustParsePrefix("fd00:ec2::254/128"), netip.MustParsePrefix("100.100.100.200/32")}
)

// classifyTarget returns the class of an address and, for loopback and
// sensitive ones, the range that an allow-list entry must lie within to
// admit it.
func classifyTarget(a netip.Addr) (targetClass, netip.Prefix) {
	a = a.Unmap().WithZone("")
	if nat64.Contains(a) {
		// A NAT64 translator (RFC 6052) reaches the IPv4 address inside:
		// it is what counts, and only an entry naming it admits it.
		b := a.As16()
		if c, _ := classifyTarget(netip.AddrFrom4([4]byte(b[12:]))); c != classOrdinary {
			return c, netip.PrefixFrom(a, 128)
		}
	}
	switch {
	case a.IsUnspecified(), a.IsMulticast(), a == broadcast, thisNetwork.Contains(a):
		return classNever, netip.Prefix{}
	case loopback4.Contains(a):
		return classLoopback, loopback4
	case loopback6.Contains(a):
		return classLoopback, loopback6
	case v4Compatible.Contains(a):
		return classNever, netip.Prefix{}
	case linkLocal4.Contains(a):
		return classSensitive, linkLocal4
	case linkLocal6.Contains(a):
		return classSensitive, linkLocal6
	}
	for _, p := range metadata {
		if p.Contains(a) {
			return classSensitive, p
		}
	}
	return classOrdinary, netip.Prefix{}
}

// targetPolicy decides where webhooks may point. It is immutable.
type targetPolicy struct {
	allow []allowEntry
	// lookup resolves a host name: resolveTarget, or a fake in tests.
	lookup func(ctx context.Context, host string) ([]netip.Addr, error)
	// self returns the API's own TCP listen address ("" when unknown: a
	// handler without a Gateway).
	self func() string
}

// CheckWebhookAllow checks the entries of Config.WebhookAllow, naming the
// first bad one.
func CheckWebhookAllow(entries []string) error {
	for _, s := range entries {
		if _, err := parseAllowEntry(s); err != nil {
			return fmt.Errorf("%q: %v", s, err)
		}
	}
	return nil
}

func newTargetPolicy(entries []string, self func() string) (*targetPolicy, error) {
	p := &targetPolicy{self: self, lookup: resolveTarget}
	for _, s := range entries {
		e, err := parseAllowEntry(s)
		if err != nil {
			return nil, fmt.Errorf("%w: WebhookAllow %q: %v", ErrConfig, s, err)
		}
		p.allow = append(p.allow, e)
	}
	return p, nil
}

// check reports why the node may not send a local (or, with local false,
// another) registrant's webhook request to addr, reached through the URL
// host; nil if it may.
func (p *targetPolicy) check(host string, addr netip.AddrPort, local bool) error {
	a := addr.Addr().Unmap().WithZone("")
	port := addr.Port()
	if p.isSelf(a, port) {
		return fmt.Errorf("%s is this node's own API", addr)
	}
	class, within := classifyTarget(a)
	switch class {
	case classNever:
		return fmt.Errorf("%s is not an address a webhook may have (unspecified, multicast, broadcast or IPv4-compatible)", a)
	case classLoopback:
		if local {
			return nil // the node's own user reaches its loopback anyway
		}
		if p.allowsWithin(a, port, within) {
			return nil
		}
		return fmt.Errorf("%s is a loopback address: only the node's own user (the local credential; loopback in an open realm) "+
			"may name one, unless the operator lists it in the webhook allow-list (--webhook-allow %s)", a, a)
	case classSensitive:
		if p.allowsWithin(a, port, within) {
			return nil
		}
		return fmt.Errorf("%s is link-local or a cloud metadata address: allowed only when the webhook allow-list names it (--webhook-allow %s)", a, a)
	}
	for _, e := range p.allow {
		if !e.portOK(port) {
			continue
		}
		if (e.name == "" && e.prefix.Contains(a)) || (e.name != "" && e.matchesName(strings.ToLower(strings.TrimSuffix(host, ".")))) {
			return nil
		}
	}
	if local {
		return fmt.Errorf("%s is not on loopback, and the webhook allow-list (--webhook-allow) admits neither it nor %s", a, host)
	}
	return fmt.Errorf("the webhook allow-list (--webhook-allow) admits neither %s nor %s", a, host)
}

// allowsWithin reports whether an IP entry that lies within the range
// admits a at port: "127.0.0.1:9000" or "127.0.0.0/8" admit loopback
// addresses, "0.0.0.0/0" does not (loopback and link-local are named, never
// swept in by a wide prefix), and name entries never do.
func (p *targetPolicy) allowsWithin(a netip.Addr, port uint16, within netip.Prefix) bool {
	for _, e := range p.allow {
		if e.name == "" && e.portOK(port) && e.prefix.Contains(a) &&
			e.prefix.Bits() >= within.Bits() && within.Contains(e.prefix.Addr()) {
			return true
		}
	}
	return false
}

// isSelf reports whether a:port is the API itself: its TCP listen address,
// or, when it listens on every address, any loopback or local address of
// the host at its port.
func (p *targetPolicy) isSelf(a netip.Addr, port uint16) bool {
	if p.self == nil {
		return false
	}
	self, err := netip.ParseAddrPort(p.self())
	if err != nil || self.Port() != port {
		return false
	}
	sa := self.Addr().Unmap().WithZone("")
	if !sa.IsUnspecified() {
		return sa == a
	}
	if a.IsLoopback() || a.IsUnspecified() {
		return true
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return true // cannot tell: assume it is
	}
	for _, ia := range addrs {
		if n, ok := ia.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == a {
				return true
			}
		}
	}
	return false
}

// checkURL checks a webhook URL at registration: an absolute http or https
// URL whose host, and every address its name resolves to now, the
// registrant may have the node send requests to. It returns the URL to keep.
func (p *targetPolicy) checkURL(ctx context.Context, raw string, local bool) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") || u.Opaque != "" {
		return "", badRequest("webhook URL %q: want an absolute http:// or https:// URL", raw)
	}
	host := u.Hostname()
	port, err := urlPort(u)
	if err != nil {
		return "", badRequest("webhook URL %q: %v", raw, err)
	}
	addrs, err := p.lookup(ctx, host)
	if err != nil {
		return "", badRequest("webhook URL %q: cannot resolve %s: %v", raw, host, err)
	}
	for _, a := range addrs {
		if err := p.check(host, netip.AddrPortFrom(a, port), local); err != nil {
			return "", newAPIError(http.StatusForbidden, wire.CodeUnauthorized, fmt.Sprintf("webhook URL %q: %v", raw, err))
		}
	}
	return u.String(), nil
}

func urlPort(u *url.URL) (uint16, error) {
	s := u.Port()
	if s == "" {
		if u.Scheme == "https" {
			return 443, nil
		}
		return 80, nil
	}
	p, err := strconv.ParseUint(s, 10, 16)
	if err != nil || p == 0 {
		return 0, fmt.Errorf("port %q: want 1 to 65535", s)
	}
	return uint16(p), nil
}

// resolveTarget returns the addresses of a URL host: the address itself,
// or what the name resolves to (within resolveTimeout).
func resolveTarget(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) {
			return nil, errors.New(de.Err)
		}
		return nil, err
	}
	if len(addrs) == 0 {
		return nil, errors.New("no address")
	}
	return addrs, nil
}

// webhookDialer dials webhooks; its Timeout bounds a connection attempt.
var webhookDialer = &net.Dialer{Timeout: 5 * time.Second}

// dial is the DialContext of the webhook transport of local (or other)
// registrants: it resolves the host itself and dials only the addresses the
// policy admits, so that the rules hold for the address actually dialled,
// whatever the name resolves to by then.
func (p *targetPolicy) dial(ctx context.Context, local bool, network, addr string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("port %q: %v", portStr, err)
	}
	addrs, err := p.lookup(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("resolving %s: %w", host, err)
	}
	var errs []error
	for _, a := range addrs {
		ap := netip.AddrPortFrom(a.Unmap(), uint16(port))
		if err := p.check(host, ap, local); err != nil {
			errs = append(errs, fmt.Errorf("not dialled: %w", err))
			continue
		}
		c, err := webhookDialer.DialContext(ctx, network, ap.String())
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}
