package nat

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v3"
)

// ServerConfig tunes a STUN responder (a Server, or a Prober with Respond).
// The zero value works.
type ServerConfig struct {
	// Software, if set, is sent in the SOFTWARE attribute of every response
	// (at most 128 characters). Default: none.
	Software string
	// RateLimit caps the responses per second, over all clients together;
	// requests above it are dropped and counted. It bounds what the server
	// can be made to send to a spoofed address (a response is about three
	// times the size of the request). Default: 1000. Negative: no limit.
	RateLimit int
	// Logger receives the server's logs. Default: slog.Default().
	Logger *slog.Logger
}

const defaultRateLimit = 1000

func validateServer(cfg ServerConfig) (ServerConfig, error) {
	if len([]rune(cfg.Software)) > 128 || len(cfg.Software) > 763 {
		return cfg, fmt.Errorf("%w: Server.Software longer than 128 characters", ErrConfig)
	}
	if cfg.RateLimit == 0 {
		cfg.RateLimit = defaultRateLimit
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg, nil
}

// Sockets are the sockets a Server answers on. With Primary only, it answers
// Binding requests without OTHER-ADDRESS and refuses CHANGE-REQUEST. With all
// four, bound to two distinct specific IPs A1, A2 and two distinct ports P1,
// P2, it supports RFC 5780: OTHER-ADDRESS and CHANGE-REQUEST.
type Sockets struct {
	Primary net.PacketConn // A1:P1, required
	AltPort net.PacketConn // A1:P2
	AltIP   net.PacketConn // A2:P1
	AltBoth net.PacketConn // A2:P2
}

// Socket indexes: bit 0 is "other port", bit 1 "other IP", so that a
// CHANGE-REQUEST flips bits of the index a request arrived on.
const (
	sockPrimary = 0
	sockAltPort = 1
	sockAltIP   = 2
	sockAltBoth = 3
)

// ServerStats counts what a responder did.
type ServerStats struct {
	Requests    uint64 // Binding requests received
	Responses   uint64 // success responses sent
	Errors      uint64 // error responses sent (400, 420)
	RateLimited uint64 // requests dropped by RateLimit
	Ignored     uint64 // datagrams that were not Binding requests we answer
}

// responder builds answers to Binding requests; it owns no socket, so a
// Server and a Prober (on its shared socket) both use it.
type responder struct {
	cfg     ServerConfig      // read-only
	addrs   [4]netip.AddrPort // local address of each socket; read-only
	rfc5780 bool              // read-only: all four sockets exist

	requests, responses, errors, ratelimited, ignored atomic.Uint64

	mu     sync.Mutex // guards the token bucket
	tokens float64
	last   time.Time
}

func newResponder(cfg ServerConfig, addrs [4]netip.AddrPort, rfc5780 bool) *responder {
	return &responder{cfg: cfg, addrs: addrs, rfc5780: rfc5780, tokens: float64(cfg.RateLimit), last: time.Now()}
}

func (r *responder) stats() ServerStats {
	return ServerStats{
		Requests:    r.requests.Load(),
		Responses:   r.responses.Load(),
		Errors:      r.errors.Load(),
		RateLimited: r.ratelimited.Load(),
		Ignored:     r.ignored.Load(),
	}
}

// allow takes a token from the bucket (capacity and refill: RateLimit/s).
func (r *responder) allow() bool {
	if r.cfg.RateLimit < 0 {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	limit := float64(r.cfg.RateLimit)
	r.tokens = min(limit, r.tokens+now.Sub(r.last).Seconds()*limit)
	r.last = now
	if r.tokens < 1 {
		return false
	}
	r.tokens--
	return true
}

// attr is a raw attribute as a stun.Setter.
type attr struct {
	t stun.AttrType
	v []byte
}

func (a attr) AddTo(m *stun.Message) error { m.Add(a.t, a.v); return nil }

// handle answers a decoded message that arrived on socket `arrival` from
// `from`: the response and the socket to send it from, or ok false to send
// nothing. RFC 5389 section 7.3.1 and RFC 5780 section 6.1.
func (r *responder) handle(m *stun.Message, from netip.AddrPort, arrival int) (out []byte, via int, ok bool) {
	if m.Type != stun.BindingRequest || !usable(from) {
		r.ignored.Add(1)
		return nil, 0, false
	}
	r.requests.Add(1)
	if !r.allow() {
		r.ratelimited.Add(1)
		return nil, 0, false
	}
	var change changeFlags
	var unknown stun.UnknownAttributes
	seenChange := false
	for _, a := range m.Attributes {
		if !a.Type.Required() {
			continue
		}
		switch a.Type {
		case stun.AttrChangeRequest:
			// Only the first occurrence counts (RFC 5389 section 15), as
			// for every reader of the message (stun.Message.Get): the
			// last one did here, so a request with two answered from a
			// socket other than the one its first asked for (found by
			// FuzzResponder at 30,000 inputs).
			if seenChange {
				continue
			}
			seenChange = true
			c, err := parseChange(a.Value)
			if err != nil {
				return r.errorResponse(m, stun.CodeBadRequest, nil), arrival, true
			}
			change = c
		case stun.AttrUsername, stun.AttrMessageIntegrity, stun.AttrMessageIntegritySHA256:
			// Credentials: this server needs none, and ignores them.
		default:
			if len(unknown) < 16 {
				unknown = append(unknown, a.Type)
			}
		}
	}
	if change != 0 && !r.rfc5780 {
		// RFC 5780 section 6.1: no alternate address, so CHANGE-REQUEST is
		// an attribute we do not understand.
		unknown = append(unknown, stun.AttrChangeRequest)
	}
	if len(unknown) > 0 {
		return r.errorResponse(m, stun.CodeUnknownAttribute, unknown), arrival, true
	}
	via = arrival
	if change&changePort != 0 {
		via ^= sockAltPort
	}
	if change&changeIP != 0 {
		via ^= sockAltIP
	}
	setters := []stun.Setter{
		stun.NewTransactionIDSetter(m.TransactionID),
		stun.BindingSuccess,
		attr{stun.AttrXORMappedAddress, addrAttr(from, true, m.TransactionID)},
	}
	if origin := r.addrs[via]; usable(origin) {
		setters = append(setters, attr{stun.AttrResponseOrigin, addrAttr(origin, false, m.TransactionID)})
	}
	if r.rfc5780 {
		setters = append(setters, attr{stun.AttrOtherAddress, addrAttr(r.addrs[arrival^sockAltBoth], false, m.TransactionID)})
	}
	if r.cfg.Software != "" {
		setters = append(setters, stun.NewSoftware(r.cfg.Software))
	}
	setters = append(setters, stun.Fingerprint)
	resp, err := stun.Build(setters...)
	if err != nil {
		r.cfg.Logger.Debug("nat: cannot build response", "err", err)
		return nil, 0, false
	}
	r.responses.Add(1)
	return resp.Raw, via, true
}

func (r *responder) errorResponse(m *stun.Message, code stun.ErrorCode, unknown stun.UnknownAttributes) []byte {
	reason := "Bad Request"
	if code == stun.CodeUnknownAttribute {
		reason = "Unknown Attribute"
	}
	setters := []stun.Setter{
		stun.NewTransactionIDSetter(m.TransactionID),
		stun.BindingError,
		stun.ErrorCodeAttribute{Code: code, Reason: []byte(reason)},
	}
	if len(unknown) > 0 {
		setters = append(setters, unknown)
	}
	setters = append(setters, stun.Fingerprint)
	resp, err := stun.Build(setters...)
	if err != nil {
		return nil
	}
	r.errors.Add(1)
	return resp.Raw
}

// Server is a STUN server: it answers Binding requests on its sockets until
// Close.
type Server struct {
	resp   *responder
	socks  [4]net.PacketConn // set in NewServer, read-only after; nil where absent
	log    *slog.Logger
	wg     sync.WaitGroup // the read loops
	once   sync.Once
	closed atomic.Bool
}

// NewServer starts a STUN server on the given sockets, which it owns from
// then on and closes in Close.
func NewServer(cfg ServerConfig, socks Sockets) (*Server, error) {
	cfg, err := validateServer(cfg)
	if err != nil {
		return nil, err
	}
	if socks.Primary == nil {
		return nil, fmt.Errorf("%w: Sockets.Primary is required", ErrConfig)
	}
	all := [4]net.PacketConn{socks.Primary, socks.AltPort, socks.AltIP, socks.AltBoth}
	var addrs [4]netip.AddrPort
	n := 0
	for i, c := range all {
		if c != nil {
			addrs[i] = addrPortOf(c.LocalAddr())
			n++
		}
	}
	rfc5780 := n == 4
	if n != 1 && n != 4 {
		return nil, fmt.Errorf("%w: Sockets needs Primary alone or all four sockets, got %d", ErrConfig, n)
	}
	if rfc5780 {
		a1, a2 := addrs[sockPrimary].Addr(), addrs[sockAltIP].Addr()
		p1, p2 := addrs[sockPrimary].Port(), addrs[sockAltPort].Port()
		switch {
		case a1.IsUnspecified() || a2.IsUnspecified():
			return nil, fmt.Errorf("%w: Sockets: RFC 5780 needs specific IPs, not %v and %v", ErrConfig, a1, a2)
		case a1 == a2 || p1 == p2:
			return nil, fmt.Errorf("%w: Sockets: RFC 5780 needs two IPs and two ports, got %v and %v", ErrConfig, addrs[sockPrimary], addrs[sockAltBoth])
		case addrs[sockAltPort] != netip.AddrPortFrom(a1, p2) || addrs[sockAltIP] != netip.AddrPortFrom(a2, p1) || addrs[sockAltBoth] != netip.AddrPortFrom(a2, p2):
			return nil, fmt.Errorf("%w: Sockets: want A1:P1 %v, A1:P2, A2:P1, A2:P2; got %v %v %v", ErrConfig, addrs[sockPrimary], addrs[sockAltPort], addrs[sockAltIP], addrs[sockAltBoth])
		}
	}
	s := &Server{resp: newResponder(cfg, addrs, rfc5780), socks: all, log: cfg.Logger}
	for i, c := range all {
		if c != nil {
			s.wg.Add(1)
			go s.serve(i, c)
		}
	}
	return s, nil
}

// RFC5780 reports whether the server supports CHANGE-REQUEST and sends
// OTHER-ADDRESS.
func (s *Server) RFC5780() bool { return s.resp.rfc5780 }

// Addr returns the primary socket's address.
func (s *Server) Addr() netip.AddrPort { return s.resp.addrs[sockPrimary] }

// Stats returns the server's counters.
func (s *Server) Stats() ServerStats { return s.resp.stats() }

// Close closes the sockets and waits for the read loops. Safe to call more
// than once.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		s.closed.Store(true)
		for _, c := range s.socks {
			if c != nil {
				if cerr := c.Close(); cerr != nil && err == nil {
					err = cerr
				}
			}
		}
		s.wg.Wait()
	})
	return err
}

func (s *Server) serve(i int, c net.PacketConn) {
	defer s.wg.Done()
	buf := make([]byte, maxMessage+1)
	for {
		n, addr, err := c.ReadFrom(buf)
		if err != nil {
			if s.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Not ours to close: a transient error. Do not spin.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		m, err := decode(buf[:n])
		if err != nil {
			s.resp.ignored.Add(1)
			continue
		}
		from := addrPortOf(addr)
		out, via, ok := s.resp.handle(m, from, i)
		if !ok {
			continue
		}
		if _, err := s.socks[via].WriteTo(out, net.UDPAddrFromAddrPort(from)); err != nil {
			s.log.Debug("nat: stun server write", "to", from, "err", err)
		}
	}
}
