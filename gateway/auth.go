package gateway

import (
	"crypto/subtle"
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
	h := strings.TrimSpace(r.Header.Get("Authorization"))
	scheme, cred, _ := strings.Cut(h, " ")
	switch {
	case h == "":
		return nil, a.unauthenticated(r, s, "")
	case strings.EqualFold(scheme, wire.LocalScheme):
		if err := a.checkLocal(r, cred); err != nil {
			return nil, a.unauthenticated(r, s, "local credential refused: "+err.Error())
		}
		// The node's own user: the node's own grant applies (the
		// services check it).
		return nil, serr
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
		return nil, a.unauthenticated(r, s, "unreadable Authorization header: "+err.Error())
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
		if errors.Is(err, ucan.ErrBusy) {
			// Not the token's fault: the node cannot record it now (its
			// replay cache is full of live invocations, or its file
			// cannot be written). Retrying later may work.
			return nil, newAPIError(http.StatusServiceUnavailable, wire.CodeUnavailable,
				fmt.Sprintf("token not accepted for %s now: %s", what, ucan.Reason(err)))
		}
		return nil, newAPIError(http.StatusForbidden, wire.CodeUnauthorized,
			fmt.Sprintf("token refused for %s: %s", what, ucan.Reason(err)))
	}
	return vd, nil
}

// unauthenticated is the 401 answer: what to send, and why the header sent
// (if any) was no good. On loopback it names the credential file.
func (a *api) unauthenticated(r *http.Request, s scope, why string) error {
	what := string(s.cmd)
	if s.res != "" {
		what += " on " + s.res
	}
	token := fmt.Sprintf("\"Authorization: Bearer <chain>\", the text (ucan.Chain.String) of a UCAN invocation of %s "+
		"addressed to this node (%s), after its proofs, root first; make a new invocation per request", what, a.n.DID())
	var msg string
	challenges := []string{wire.BearerScheme + ` realm="macula"`}
	switch {
	case !isLoopbackAddr(r.RemoteAddr):
		msg = fmt.Sprintf("the realm %s is secure: a request from off loopback needs the header %s", a.n.Realm(), token)
	case a.credFile != "":
		msg = fmt.Sprintf("the realm %s is secure: on loopback, a request acts as the node only with the node's local credential, "+
			"\"Authorization: %s <credential>\" with the credential of %s (readable by the node's user only; macula-node reads it itself), "+
			"or else it needs the header %s", a.n.Realm(), wire.LocalScheme, a.credFile, token)
		challenges = append(challenges, fmt.Sprintf(`%s realm="macula", file=%q`, wire.LocalScheme, a.credFile))
	default:
		msg = fmt.Sprintf("the realm %s is secure and this API keeps no local credential: a request needs the header %s", a.n.Realm(), token)
	}
	if why != "" {
		msg = why + "; " + msg
	}
	return &apiError{status: http.StatusUnauthorized, code: wire.CodeUnauthenticated, message: msg, challenges: challenges}
}

// checkLocal checks a local credential: from loopback, and the one this
// API made at its start.
func (a *api) checkLocal(r *http.Request, cred string) error {
	if !isLoopbackAddr(r.RemoteAddr) {
		return errors.New("the local credential is accepted from loopback only")
	}
	if subtle.ConstantTimeCompare([]byte(strings.TrimSpace(cred)), []byte(a.cred)) != 1 {
		if a.credFile != "" {
			return fmt.Errorf("not this node's local credential (it changes at every start: read %s again)", a.credFile)
		}
		return errors.New("not this node's local credential")
	}
	return nil
}

// isLocal reports whether a request comes from the node's own user: in a
// secure realm, one with the local credential (from loopback); in an open
// realm, one from loopback (where the API is the node, for whoever reaches
// it). Only such requests may register loopback webhooks by default.
func (a *api) isLocal(r *http.Request) bool {
	if a.n.Validator() == nil {
		return isLoopbackAddr(r.RemoteAddr)
	}
	scheme, cred, _ := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	return strings.EqualFold(scheme, wire.LocalScheme) && a.checkLocal(r, cred) == nil
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
