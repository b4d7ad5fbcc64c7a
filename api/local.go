package api

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
)

// The local credential of a secure realm's API (see package gateway,
// Loopback): a secret that the node writes, at every start, into a file
// readable by its own user only, and accepts from loopback as proof that
// the request comes from that user. It grants what the node itself holds.

// LocalScheme is the scheme of the Authorization header that carries the
// local credential: "Authorization: Macula-Local <credential>".
const LocalScheme = "Macula-Local"

// CredentialFile is the name of the local credential's file in a node's
// data directory (mode 0600).
const CredentialFile = "api-credential"

// maxCredentialFile bounds the file read.
const maxCredentialFile = 4 << 10

// LocalCredential is the content of a credential file (JSON).
type LocalCredential struct {
	// API is the HTTP/1.1 address the node's API listens on, host:port,
	// the one the credential is for: a client sends it only there.
	API string `json:"api"`
	// HTTP3 is the API's HTTP/3 address (UDP), "" when it has none: an
	// HTTP/3 client sends the credential only there.
	HTTP3 string `json:"http3,omitempty"`
	// Credential is the secret, sent as "Macula-Local <Credential>".
	Credential string `json:"credential"`
}

// ReadLocalCredential reads a credential file.
func ReadLocalCredential(path string) (LocalCredential, error) {
	var lc LocalCredential
	f, err := os.Open(path)
	if err != nil {
		return lc, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCredentialFile))
	if err != nil {
		return lc, err
	}
	if err := json.Unmarshal(b, &lc); err != nil || lc.API == "" || lc.Credential == "" {
		return LocalCredential{}, fmt.Errorf("%s: not a Macula credential file", path)
	}
	return lc, nil
}

// For reports whether the credential may be sent to the API at addr
// (host:port, or a URL): only to the address it was issued for, on
// loopback. A node listening on every address (0.0.0.0, ::) owns its port
// on each loopback address; "localhost" counts only then, since it may
// resolve to an address where another program listens on the same port.
func (lc LocalCredential) For(addr string) bool { return forAddr(lc.API, addr) }

// ForHTTP3 is For, for the API's HTTP/3 address.
func (lc LocalCredential) ForHTTP3(addr string) bool { return forAddr(lc.HTTP3, addr) }

func forAddr(listen, addr string) bool {
	if u, err := url.Parse(addr); err == nil && u.Host != "" {
		addr = u.Host
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	lhost, lport, err := net.SplitHostPort(listen)
	if err != nil || lport != port {
		return false
	}
	la, lerr := netip.ParseAddr(lhost)
	wildcard := lerr == nil && la.IsUnspecified()
	if strings.EqualFold(host, "localhost") {
		return wildcard
	}
	a, err := netip.ParseAddr(host)
	if err != nil || !a.Unmap().IsLoopback() {
		return false
	}
	return wildcard || (lerr == nil && la.Unmap() == a.Unmap())
}

// localChallenge returns the credential file that a 401 answer's
// WWW-Authenticate names: `Macula-Local realm="macula", file="PATH"`.
func localChallenge(h http.Header) string {
	for _, v := range h.Values("WWW-Authenticate") {
		scheme, params, _ := strings.Cut(strings.TrimSpace(v), " ")
		if !strings.EqualFold(scheme, LocalScheme) {
			continue
		}
		for p := range strings.SplitSeq(params, ",") {
			k, val, ok := strings.Cut(strings.TrimSpace(p), "=")
			if ok && strings.EqualFold(k, "file") {
				return strings.Trim(val, `"`)
			}
		}
	}
	return ""
}

// credential returns the credential to send, "" if none.
func (c *Client) credential() string {
	if p := c.found.Load(); p != nil {
		return *p
	}
	return c.Credential
}

// learnCredential reads the file a 401 answer names, when the client may
// look (Local) and the file holds a credential for the client's address. It
// reports whether there is a new credential to try.
func (c *Client) learnCredential(resp *http.Response) bool {
	if !c.Local || resp.StatusCode != http.StatusUnauthorized {
		return false
	}
	path := localChallenge(resp.Header)
	if path == "" {
		return false
	}
	lc, err := ReadLocalCredential(path)
	if err != nil || lc.Credential == c.credential() {
		return false
	}
	if (c.http3 && !lc.ForHTTP3(c.base)) || (!c.http3 && !lc.For(c.base)) {
		return false
	}
	c.found.Store(&lc.Credential)
	return true
}

// send sends req (authorized already) and, when the answer is a 401 that
// names a credential file the client may read, sends it again once with
// the credential.
func (c *Client) send(req *http.Request) (*http.Response, error) {
	resp, err := c.hc.Do(req)
	if err != nil || !c.learnCredential(resp) {
		return resp, err
	}
	if req.Header.Get("Authorization") != "" && !strings.HasPrefix(req.Header.Get("Authorization"), LocalScheme+" ") {
		return resp, nil // a bearer token was refused: not ours to replace
	}
	retry := req.Clone(req.Context())
	if req.Body != nil && req.Body != http.NoBody {
		if req.GetBody == nil {
			return resp, nil
		}
		if retry.Body, err = req.GetBody(); err != nil {
			return resp, nil
		}
	}
	retry.Header.Set("Authorization", LocalScheme+" "+c.credential())
	resp.Body.Close()
	return c.hc.Do(retry)
}
