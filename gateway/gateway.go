package gateway

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	wire "github.com/macula-io/macula/api"
	"github.com/macula-io/macula/internal/atomicfile"
	"github.com/macula-io/macula/node"
)

// Server timeouts. There is no write timeout: a lookup may take up to
// MaxTimeout, and event streams will last as long as their client.
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
)

// Gateway serves a node's API over HTTP/1.1 and HTTP/3. Its methods are safe
// for concurrent use.
type Gateway struct {
	log     *slog.Logger
	api     *api
	ln      net.Listener   // HTTP/1.1; closed by srv.Close
	pc      net.PacketConn // HTTP/3; nil when disabled; closed by Close after h3
	srv     *http.Server
	h3      *http3.Server // nil when HTTP/3 is disabled
	certPEM []byte        // nil when HTTP/3 is disabled
	addr    string        // actual addresses; set in New, read-only after
	addr3   string

	ctx    context.Context // lifetime: cancelled by Close, which aborts requests in flight
	cancel context.CancelFunc
	// wg counts the two serve goroutines and every request in flight.
	wg sync.WaitGroup

	// mu guards closed; a request is counted in wg only while !closed, so
	// that Close's wg.Wait never races with a wg.Add.
	mu     sync.Mutex
	closed bool
}

// New binds the HTTP/1.1 listener (TCP) and, unless disabled, the HTTP/3
// listener (UDP), and starts serving the API of n on them. A port that
// cannot be bound is an error wrapping ErrListen that names the address. On
// any error nothing is left listening and nothing is written to disk; a new
// certificate for Config.DataDir is saved only once both listeners are bound.
// In a secure realm it writes the local credential to Config.CredentialFile
// (see Loopback in the package doc).
func New(cfg Config, n *node.Node) (*Gateway, error) {
	if n == nil {
		return nil, fmt.Errorf("%w: no node", ErrConfig)
	}
	s, err := validate(cfg)
	if err != nil {
		return nil, err
	}
	var cert *apiCert
	if s.http3 {
		if cert, err = loadCert(s, time.Now()); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return nil, listenError("tcp", s.Addr, err)
	}
	g := &Gateway{log: s.Logger, ln: ln, addr: ln.Addr().String()}
	if s.http3 {
		pc, err := net.ListenPacket("udp", s.HTTP3Addr)
		if err != nil {
			ln.Close()
			return nil, listenError("udp", s.HTTP3Addr, err)
		}
		g.pc, g.addr3, g.certPEM = pc, pc.LocalAddr().String(), cert.pem
	}
	// Files only once the addresses are bound: the local credential (for
	// those addresses), then the certificate; the first goes again if the
	// second cannot be written.
	fail := func(err error) (*Gateway, error) {
		if g.pc != nil {
			g.pc.Close()
		}
		ln.Close()
		return nil, err
	}
	cred, credFile := rand.Text(), ""
	if n.Secure() && s.CredentialFile != "" {
		credFile = s.CredentialFile
		if err := writeCredential(credFile, wire.LocalCredential{API: g.addr, HTTP3: g.addr3, Credential: cred}); err != nil {
			return fail(fmt.Errorf("%w: %s: %v", ErrCredential, credFile, err))
		}
	}
	if s.http3 {
		if err := cert.persist(); err != nil {
			if credFile != "" {
				removeCredential(credFile, cred)
			}
			return fail(err)
		}
	}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	g.api = newAPI(n, s.LogLevel, s.Logger, wire.APIAddrs{HTTP: g.addr, HTTP3: g.addr3})
	g.api.actors = s.Actors
	g.api.reg = s.Registry
	g.api.cred, g.api.credFile = cred, credFile
	g.api.wh.policy, _ = newTargetPolicy(s.WebhookAllow, func() string { return g.addr }) // validated
	g.api.metrics = s.Metrics
	h := g.track(g.api)
	g.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.Logger.Handler(), slog.LevelDebug),
	}
	g.wg.Add(1)
	go g.serve("http", func() error { return g.srv.Serve(ln) })
	if s.http3 {
		g.h3 = &http3.Server{
			Handler: h,
			TLSConfig: &tls.Config{
				Certificates: []tls.Certificate{cert.tls},
				NextProtos:   []string{http3.NextProtoH3},
				MinVersion:   tls.VersionTLS13,
			},
			// No 0-RTT: early data can be replayed, and some requests
			// change the node (provide, log level).
			QUICConfig:     &quic.Config{Allow0RTT: false},
			IdleTimeout:    idleTimeout,
			MaxHeaderBytes: maxHeaderBytes,
			Logger:         s.Logger,
		}
		g.wg.Add(1)
		go g.serve("http3", func() error { return g.h3.Serve(g.pc) })
	}
	g.log.Info("API listening", "http", g.addr, "http3", g.addr3)
	g.logSecurity(n)
	return g, nil
}

// logSecurity says once, at start, who may use an API that listens off
// loopback: everyone in an open realm (Warn), holders of a token in a
// secure one.
func (g *Gateway) logSecurity(n *node.Node) {
	if isLoopbackAddr(g.addr) && (g.addr3 == "" || isLoopbackAddr(g.addr3)) {
		return
	}
	if !n.Secure() {
		g.log.Warn("OPEN REALM: the API listens off loopback without authentication: whoever reaches it can use the node "+
			"(call, publish, subscribe, advertise, change its log level); keep it on loopback or secure the realm with an authority",
			"http", g.addr, "http3", g.addr3)
		return
	}
	g.log.Info("the API listens off loopback: requests from off loopback need a UCAN bearer token", "http", g.addr, "http3", g.addr3, "executor", n.DID())
}

// listenError turns a failed bind into one line that names the address.
func listenError(network, addr string, err error) error {
	reason := err.Error()
	var se *net.OpError
	if errors.As(err, &se) && se.Err != nil {
		reason = se.Err.Error()
	}
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		reason = "address already in use (is another node running?)"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		reason = "no such local address"
	case errors.Is(err, syscall.EACCES):
		reason = "permission denied"
	}
	return &ListenError{Network: network, Addr: addr, Reason: reason, Err: err}
}

// serve runs one server until Close.
func (g *Gateway) serve(name string, run func() error) {
	defer g.wg.Done()
	err := run()
	if err != nil && !errors.Is(err, http.ErrServerClosed) && g.ctx.Err() == nil {
		g.log.Error("API server stopped", "server", name, "err", err)
	}
}

// track counts each request in g.wg and ends its context when the gateway
// closes, so that Close can abort the requests in flight and wait for them.
func (g *Gateway) track(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		if g.closed {
			g.mu.Unlock()
			writeJSON(w, http.StatusServiceUnavailable, wire.ErrorBody{Error: wire.Error{Code: wire.CodeUnavailable, Message: "the gateway is closing"}})
			return
		}
		g.wg.Add(1)
		g.mu.Unlock()
		defer g.wg.Done()
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		stop := context.AfterFunc(g.ctx, cancel)
		defer stop()
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}

// Addr returns the HTTP/1.1 address, host:port, with the actual port.
func (g *Gateway) Addr() string { return g.addr }

// HTTP3Addr returns the HTTP/3 UDP address, host:port, with the actual
// port; "" when HTTP/3 is disabled.
func (g *Gateway) HTTP3Addr() string { return g.addr3 }

// CertPEM returns the HTTP/3 certificate, PEM encoded, so that clients can
// pin it (see NewHTTP3Client); nil when HTTP/3 is disabled. The caller must
// not modify it.
func (g *Gateway) CertPEM() []byte { return g.certPEM }

// Close stops both servers, aborting the requests in flight, withdraws the
// procedures advertised through the API with a webhook, and waits for every
// goroutine the gateway started, every request handler, webhook request and
// lease timer. It is safe to call more than once; later calls return nil.
func (g *Gateway) Close() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	g.mu.Unlock()
	// Cancel first, so that handlers waiting on the DHT return at once
	// instead of holding their server's Close.
	g.cancel()
	var errs []error
	if err := g.srv.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		errs = append(errs, fmt.Errorf("gateway: http: %w", err))
	}
	if g.h3 != nil {
		// http3.Server.Close closes the QUIC listener it made over pc
		// but not pc itself.
		if err := g.h3.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, fmt.Errorf("gateway: http3: %w", err))
		}
		if err := g.pc.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, fmt.Errorf("gateway: http3: %w", err))
		}
	}
	g.wg.Wait()
	// Then the webhook advertisements: the node stops serving them, and
	// their calls in flight end with an "unavailable" remote error.
	g.api.close()
	if f := g.api.credFile; f != "" {
		if err := removeCredential(f, g.api.cred); err != nil {
			errs = append(errs, fmt.Errorf("gateway: %w", err))
		}
	}
	g.log.Info("API stopped", "http", g.addr, "http3", g.addr3)
	return errors.Join(errs...)
}

// writeCredential writes the local credential's file, mode 0600, whole or
// not at all.
func writeCredential(path string, lc wire.LocalCredential) error {
	b, err := json.Marshal(lc)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.Write(path, append(b, '\n'), 0o600)
}

// removeCredential removes the credential's file if it still holds cred
// (another gateway may have replaced it since).
func removeCredential(path, cred string) error {
	lc, err := wire.ReadLocalCredential(path)
	if err != nil || lc.Credential != cred {
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("local credential: %w", err)
	}
	return nil
}
