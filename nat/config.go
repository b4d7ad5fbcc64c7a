package nat

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// DefaultPort is the STUN port used for a server given without one.
const DefaultPort = 3478

// Limits that keep a probe bounded whatever the Config says.
const (
	maxServers     = 16 // servers queried by one probe
	maxRetransmits = 6  // RFC 5389's Rc is 7 transmissions; we never exceed it
)

// Config tunes a Prober. The zero value works (with no servers, a probe
// reports ErrNoServers until SetServers gives some); DefaultConfig returns
// the zero value's effective settings.
type Config struct {
	// Servers are the STUN servers, each HOST:PORT or HOST (port 3478); at
	// most 16. Any RFC 5389 server works; one that supports RFC 5780
	// (OTHER-ADDRESS, CHANGE-REQUEST), coturn with two IPs for instance,
	// also measures filtering. Public Macula nodes are servers too.
	Servers []string
	// Interval is the time between probes after the first, which runs when
	// the Prober starts; each wait varies by up to 10% so that nodes do not
	// probe in step. Negative: no timer (probe only on demand). Default: 5 min.
	Interval time.Duration
	// RTO is the first retransmission timeout of a STUN transaction; it
	// doubles on each retransmission (RFC 5389 section 7.2.1). Default: 250 ms.
	RTO time.Duration
	// Retransmits is how many times a request is sent again before the
	// transaction fails. The waits are RTO, 2*RTO, ... so a transaction that
	// gets no answer takes RTO*(2^(Retransmits+1)-1): 1.75 s with the
	// defaults. At most 6. Default: 2. Negative: 0.
	Retransmits int
	// ProbeTimeout bounds one whole probe. Default: 15 s.
	ProbeTimeout time.Duration
	// NoBehaviorTests limits probes to the public address (step 1), so that
	// no second socket is opened and nothing is sent but Binding requests to
	// the configured servers. Default: false.
	NoBehaviorTests bool
	// Respond makes the Prober answer STUN Binding requests that arrive on
	// its socket, as a public node does for its mesh (without CHANGE-REQUEST:
	// one socket). Default: false.
	Respond bool
	// Server tunes the responder when Respond is set.
	Server ServerConfig
	// OnUpdate, if set, is called with the Info of every finished probe, from
	// the goroutine that ran it. Calls never overlap; the callback must not
	// block for long and must not call Probe or Close.
	OnUpdate func(Info)
	// Logger receives the Prober's logs. Default: slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns a Config with every default written out.
func DefaultConfig() Config {
	return Config{
		Interval:     5 * time.Minute,
		RTO:          250 * time.Millisecond,
		Retransmits:  2,
		ProbeTimeout: 15 * time.Second,
	}
}

// settings is a validated Config with defaults filled in.
type settings struct {
	Config
	servers []server
}

// server is a configured STUN server, split but not resolved.
type server struct {
	name string // as configured
	host string
	port uint16
}

func validate(cfg Config) (settings, error) {
	s := settings{Config: cfg}
	s.Servers = append([]string(nil), cfg.Servers...)
	d := DefaultConfig()
	if s.Interval == 0 {
		s.Interval = d.Interval
	}
	if s.RTO == 0 {
		s.RTO = d.RTO
	}
	if s.RTO < 0 || s.RTO > 10*time.Second {
		return s, fmt.Errorf("%w: RTO %v outside (0, 10s]", ErrConfig, cfg.RTO)
	}
	if cfg.Retransmits == 0 {
		s.Retransmits = d.Retransmits
	}
	if s.Retransmits < 0 {
		s.Retransmits = 0
	}
	if s.Retransmits > maxRetransmits {
		return s, fmt.Errorf("%w: Retransmits %d above %d", ErrConfig, cfg.Retransmits, maxRetransmits)
	}
	if s.ProbeTimeout == 0 {
		s.ProbeTimeout = d.ProbeTimeout
	}
	if s.ProbeTimeout < 0 {
		return s, fmt.Errorf("%w: ProbeTimeout %v is negative", ErrConfig, cfg.ProbeTimeout)
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	servers, err := parseServers(s.Servers)
	if err != nil {
		return s, err
	}
	s.servers = servers
	if s.Server.Logger == nil {
		s.Server.Logger = s.Logger
	}
	if s.Server, err = validateServer(s.Server); err != nil {
		return s, err
	}
	return s, nil
}

func parseServers(list []string) ([]server, error) {
	if len(list) > maxServers {
		return nil, fmt.Errorf("%w: Servers has %d entries, at most %d", ErrConfig, len(list), maxServers)
	}
	out := make([]server, 0, len(list))
	for _, name := range list {
		sv, err := parseServer(name)
		if err != nil {
			return nil, err
		}
		out = append(out, sv)
	}
	return out, nil
}

// parseServer splits HOST:PORT, [V6]:PORT or a bare HOST (port 3478).
func parseServer(name string) (server, error) {
	host, portStr, err := net.SplitHostPort(name)
	if err != nil {
		// No port: a bare host name or IP (an IPv6 literal needs brackets
		// only when a port follows).
		if _, perr := netip.ParseAddr(name); perr != nil && strings.ContainsAny(name, ":[]") {
			return server{}, fmt.Errorf("%w: Servers: %q is not HOST:PORT", ErrConfig, name)
		}
		host, portStr = name, strconv.Itoa(DefaultPort)
	}
	if host == "" {
		return server{}, fmt.Errorf("%w: Servers: %q has no host", ErrConfig, name)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return server{}, fmt.Errorf("%w: Servers: %q has a bad port", ErrConfig, name)
	}
	return server{name: name, host: host, port: uint16(port)}, nil
}
