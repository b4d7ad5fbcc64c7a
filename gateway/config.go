package gateway

import (
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"

	"github.com/macula-io/macula/actors"
	wire "github.com/macula-io/macula/api"
	"github.com/macula-io/macula/metrics"
	"github.com/macula-io/macula/registry"
)

// Default listen addresses: loopback only, since in an open realm the API
// has no authentication and lets its caller change the node's log level and
// what it provides (in a secure realm, requests from off loopback need a
// bearer token: see the package doc). The same port number serves HTTP/1.1
// on TCP and HTTP/3 on UDP.
const (
	DefaultAddr      = "127.0.0.1:7401"
	DefaultHTTP3Addr = "127.0.0.1:7401"
)

// Files of the HTTP/3 certificate in Config.DataDir, both mode 0600.
const (
	CertFile = "api-cert.pem"
	KeyFile  = "api-key.pem"
)

// Config configures a Gateway. The zero value serves HTTP/1.1 on
// DefaultAddr, without HTTP/3. New never modifies the caller's Config.
type Config struct {
	// Addr is the HTTP/1.1 TCP listen address, host:port. Port 0 picks a
	// free port (see Gateway.Addr). Default: "127.0.0.1:7401".
	Addr string
	// HTTP3Addr is the HTTP/3 UDP listen address, host:port; "" or "off"
	// disables HTTP/3. Port 0 picks a free port (see Gateway.HTTP3Addr).
	// DefaultConfig sets "127.0.0.1:7401".
	HTTP3Addr string
	// DataDir keeps the self-signed HTTP/3 certificate (CertFile and
	// KeyFile, mode 0600), so that clients that pinned it keep working
	// across restarts. "" means a new certificate in memory on every start.
	DataDir string
	// TLSCertFile and TLSKeyFile name a PEM certificate and key to serve
	// HTTP/3 with instead of the self-signed one: both or neither.
	TLSCertFile string
	TLSKeyFile  string
	// WebhookAllow lists where webhooks may point besides the node's
	// loopback (which only the node's own user may name): entries of an
	// IP address or prefix, or a host name ("*.example.com" for the names
	// under it), each with an optional port ("10.0.0.0/8",
	// "192.0.2.7:8080", "[fd00::/8]:443", "hooks.example.com:443"). An
	// entry admits loopback and link-local addresses only when it lies
	// within them ("127.0.0.1:9000", not "0.0.0.0/0"); a name entry never
	// does. Empty by default: webhooks on loopback, registered by the
	// node's own user, and nothing else. See the package doc, Webhook
	// targets.
	WebhookAllow []string
	// CredentialFile is where a secure realm's gateway writes its local
	// credential (api.LocalCredential, mode 0600) at every start, and
	// removes it at Close. "" means DataDir/api-credential, or none without
	// a DataDir (then only bearer tokens authenticate).
	CredentialFile string
	// LogLevel is the level the API reads and sets (GET and PUT
	// /v1/log/level), normally the one the process's slog handler uses.
	// nil: the endpoint answers 501.
	LogLevel *slog.LevelVar
	// Logger receives the gateway's logs. Default: slog.Default().
	Logger *slog.Logger
	// Actors is the node's actor system, served under /v1/actors and
	// /v1/ring; nil: those routes answer 404 not_enabled.
	Actors *actors.System
	// Registry is the node's registry, served under /v1/registry,
	// /v1/groups, /v1/dispatch, /v1/send, /v1/clusters and /v1/processes;
	// nil: those routes answer 404 not_enabled.
	Registry *registry.Registry
	// Metrics are the node's metrics (package metrics), served at GET
	// /metrics and shown by the dashboard; nil: /metrics answers 404
	// not_enabled.
	Metrics *metrics.Metrics
}

// DefaultConfig returns the defaults: HTTP/1.1 and HTTP/3 both on
// 127.0.0.1:7401, a certificate in memory.
func DefaultConfig() Config {
	return Config{Addr: DefaultAddr, HTTP3Addr: DefaultHTTP3Addr}
}

// settings is a validated Config with defaults filled in.
type settings struct {
	Config
	http3 bool // HTTP/3 enabled
}

func validate(cfg Config) (*settings, error) {
	s := &settings{Config: cfg}
	if s.Addr == "" {
		s.Addr = DefaultAddr
	}
	if err := checkHostPort(s.Addr); err != nil {
		return nil, fmt.Errorf("%w: Addr %q: %v", ErrConfig, s.Addr, err)
	}
	switch strings.TrimSpace(s.HTTP3Addr) {
	case "", "off":
		s.HTTP3Addr = ""
	default:
		s.http3 = true
		if err := checkHostPort(s.HTTP3Addr); err != nil {
			return nil, fmt.Errorf("%w: HTTP3Addr %q: %v", ErrConfig, s.HTTP3Addr, err)
		}
	}
	if (s.TLSCertFile == "") != (s.TLSKeyFile == "") {
		return nil, fmt.Errorf("%w: TLSCertFile %q and TLSKeyFile %q: give both or neither", ErrConfig, s.TLSCertFile, s.TLSKeyFile)
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	if _, err := newTargetPolicy(s.WebhookAllow, nil); err != nil {
		return nil, err
	}
	if s.CredentialFile == "" && s.DataDir != "" {
		s.CredentialFile = filepath.Join(s.DataDir, wire.CredentialFile)
	}
	return s, nil
}

func checkHostPort(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want host:port: %v", err)
	}
	if port == "" {
		return fmt.Errorf("want host:port: missing port")
	}
	return nil
}
