package gateway

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	wire "github.com/macula-io/macula/api"
	"github.com/macula-io/macula/ucan"
)

// scope says what a route asks of a bearer token: the command, the resource
// (a concrete name, a subscription pattern, or "" for the node itself), and
// whether the resource is a pattern (then the token's grant must cover every
// name it matches, ucan.CheckPattern).
type scope struct {
	cmd     ucan.Command
	res     string
	pattern bool
}

// scopeFunc computes a route's scope from its request. An error (a missing
// parameter) is answered as it is, before the token is looked at, unless
// the request is unauthenticated.
type scopeFunc func(r *http.Request) (scope, error)

// adminScope is the scope of the routes about the node itself (its
// identity, peers, DHT, NAT, logs, pub/sub counters, revocations): the root
// command, on every name of the realm.
func adminScope(*http.Request) (scope, error) { return scope{cmd: ucan.All}, nil }

// pathScope is the scope of a route acting on the name in its path value.
func pathScope(cmd ucan.Command, param string) scopeFunc {
	return func(r *http.Request) (scope, error) { return scope{cmd: cmd, res: r.PathValue(param)}, nil }
}

// subscribeScope is the scope of GET /v1/subscribe: the pattern of
// ?pattern=, which the grant must cover whole.
func subscribeScope(r *http.Request) (scope, error) {
	q := r.URL.Query()
	if !q.Has("pattern") {
		return scope{cmd: ucan.Subscribe}, badRequest("missing query parameter pattern")
	}
	return scope{cmd: ucan.Subscribe, res: q.Get("pattern"), pattern: true}, nil
}

// authorize applies the authentication rules of a secure realm (see the
// package doc) to a request of a route of scope sf. In an open realm it
// lets everything through, token or not.
func (a *api) authorize(r *http.Request, sf scopeFunc) error {
	_, err := a.authorizeVerdict(r, sf)
	return err
}

// authorizeVerdict is authorize that also returns the verdict the request
// acts on, for requests that last (a subscription checks it again on every
// message): the invoker's in a request with a token, the node's own
// otherwise; nil in an open realm.
func (a *api) authorizeVerdict(r *http.Request, sf scopeFunc) (*ucan.Verdict, error) {
	v := a.n.Validator()
	if v == nil {
		return nil, nil // open realm: tokens are neither needed nor read
	}
	vd, err := a.authorizeSecure(r, sf, v)
	if err != nil {
		return nil, err
	}
	if vd == nil {
		vd = a.n.Access().Self()
	}
	return vd, nil
}

func (a *api) authorizeSecure(r *http.Request, sf scopeFunc, v *ucan.Validator) (*ucan.Verdict, error) {
	s, serr := sf(r)
	h := r.Header.Get("Authorization")
	if h == "" {
		if isLoopbackAddr(r.RemoteAddr) {
			// The loopback API is the node itself: its own grant applies
			// (the services check it).
			return nil, serr
		}
		return nil, a.unauthenticated(s, "")
	}
	if serr != nil {
		return nil, serr
	}
	if s.cmd != ucan.All && s.res == "" {
		// ValidateInvocation reads an empty resource as "any": never
		// let a route's empty name through to it.
		return nil, newAPIError(http.StatusBadRequest, wire.CodeInvalidName, "an empty name")
	}
	inv, proofs, err := parseBearer(h)
	if err != nil {
		return nil, a.unauthenticated(s, err.Error())
	}
	vd, err := v.ValidateInvocation(r.Context(), inv, proofs, s.cmd, s.res)
	if err == nil {
		switch {
		case s.pattern:
			err = ucan.CheckPattern(vd, s.cmd, s.res)
		case s.cmd == ucan.All:
			// The node's own routes need the root command on every name
			// of the realm, not on a part of it.
			err = ucan.CheckPattern(vd, ucan.All, a.n.Realm()+".>")
		}
	}
	if err != nil {
		if !errors.Is(err, ucan.ErrUnauthorized) {
			return nil, err // the request's context ended, or a validator misconfiguration
		}
		what := string(s.cmd)
		if s.res != "" {
			what += " on " + s.res
		}
		return nil, newAPIError(http.StatusForbidden, wire.CodeUnauthorized,
			fmt.Sprintf("token refused for %s: %s", what, ucan.Reason(err)))
	}
	return vd, nil
}

// unauthenticated is the 401 answer: what to send, and why the header sent
// (if any) could not be read.
func (a *api) unauthenticated(s scope, why string) error {
	what := string(s.cmd)
	if s.res != "" {
		what += " on " + s.res
	}
	msg := fmt.Sprintf("the realm %s is secure: a request from off loopback needs the header "+
		"\"Authorization: Bearer <chain>\", the text (ucan.Chain.String) of a UCAN invocation of %s "+
		"addressed to this node (%s), after its proofs, root first; make a new invocation per request",
		a.n.Realm(), what, a.n.DID())
	if why != "" {
		msg = "unreadable Authorization header: " + why + "; " + msg
	}
	return &apiError{status: http.StatusUnauthorized, code: wire.CodeUnauthenticated, message: msg, authenticate: true}
}

// parseBearer reads "Bearer <chain>" and splits the chain into the
// invocation (its last token) and its proofs.
func parseBearer(h string) (inv []byte, proofs ucan.Chain, err error) {
	scheme, text, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, wire.BearerScheme) {
		return nil, nil, fmt.Errorf("want the scheme %s", wire.BearerScheme)
	}
	c, err := ucan.ParseChain([]byte(text))
	if err != nil {
		return nil, nil, fmt.Errorf("not a UCAN chain: %v", ucan.Reason(err))
	}
	if len(c) == 0 {
		return nil, nil, errors.New("an empty chain")
	}
	return c[len(c)-1], c[:len(c)-1], nil
}

// isLoopbackAddr reports whether addr (host:port, or a host) is a loopback
// address: 127.0.0.0/8, ::1 (or an IPv4-mapped 127.x), or "localhost".
func isLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}
