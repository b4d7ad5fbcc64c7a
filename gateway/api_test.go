package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	wire "github.com/macula-io/macula/api"
	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/node"
)

// TestAPI runs the same checks of every route through HTTP/1.1 and HTTP/3,
// against two real nodes of one realm, each with its own gateway.
func TestAPI(t *testing.T) {
	a := startNode(t, testRealm, "a")
	b := startNode(t, testRealm, "b", a)
	// Waiting for a and b to see each other.
	testnet.Eventually(t, 10*time.Second, func() error {
		if len(a.Peers()) != 1 || len(b.Peers()) != 1 {
			return fmt.Errorf("a has %d peers, b %d", len(a.Peers()), len(b.Peers()))
		}
		return nil
	})
	ga := startGateway(t, a, nil)
	gb := startGateway(t, b, nil)

	for _, proto := range []string{"http", "http3"} {
		t.Run(proto, func(t *testing.T) {
			ca, cb := clientFor(t, ga, proto), clientFor(t, gb, proto)
			checks := []struct {
				name string
				run  func(t *testing.T)
			}{
				{"node", func(t *testing.T) {
					info, err := ca.Node(ctxFor(t, 5*time.Second))
					if err != nil {
						t.Fatal(err)
					}
					if info.PeerID != a.ID().String() || info.DID != a.DID() || info.Alias != a.Alias() ||
						info.Realm != testRealm || info.Name != "a" || info.Agent != node.Agent || info.Peers != 1 {
						t.Errorf("node = %+v", info)
					}
					if len(info.Addrs) == 0 || info.StartedAt.IsZero() {
						t.Errorf("node has no addrs or start time: %+v", info)
					}
					if info.API.HTTP != ga.Addr() || info.API.HTTP3 != ga.HTTP3Addr() {
						t.Errorf("api = %+v, want %s and %s", info.API, ga.Addr(), ga.HTTP3Addr())
					}
				}},
				{"peers", func(t *testing.T) {
					ps, err := ca.Peers(ctxFor(t, 5*time.Second))
					if err != nil {
						t.Fatal(err)
					}
					if len(ps) != 1 {
						t.Fatalf("peers = %+v, want b alone", ps)
					}
					p := ps[0]
					if p.PeerID != b.ID().String() || p.DID != b.DID() || p.Alias != b.Alias() || p.Name != "b" ||
						len(p.Addrs) == 0 || p.Since.IsZero() || (p.Direction != "inbound" && p.Direction != "outbound") {
						t.Errorf("peer = %+v", p)
					}
				}},
				{"resolve did:key", func(t *testing.T) {
					res, err := ca.Resolve(ctxFor(t, 5*time.Second), b.DID())
					if err != nil {
						t.Fatal(err)
					}
					if res.DID != b.DID() || res.PeerID != b.ID().String() {
						t.Errorf("resolve(b's did:key) = %+v", res)
					}
				}},
				{"resolve alias", func(t *testing.T) {
					// b publishes its alias record shortly after it has a peer.
					// Waiting for b's alias to resolve from a.
					testnet.Eventually(t, 20*time.Second, func() error {
						res, err := ca.Resolve(ctxFor(t, 5*time.Second), b.Alias())
						if err != nil {
							return err
						}
						if res.DID != b.DID() || res.PeerID != b.ID().String() || res.Alias != b.Alias() || res.Record == nil {
							return fmt.Errorf("resolve(%s) = %+v", b.Alias(), res)
						}
						return nil
					})
				}},
				{"resolve own alias", func(t *testing.T) {
					res, err := ca.Resolve(ctxFor(t, 5*time.Second), a.Alias())
					if err != nil {
						t.Fatal(err)
					}
					if res.DID != a.DID() || res.PeerID != a.ID().String() || len(res.Addrs) == 0 {
						t.Errorf("resolve(own alias) = %+v", res)
					}
				}},
				{"resolve bad DIDs", func(t *testing.T) {
					for _, tc := range []struct{ did, code string }{
						{"did:key:zNotAKey", wire.CodeInvalidDID},
						{"did:web:example.com", wire.CodeInvalidDID},
						{"did:macula:nodots", wire.CodeInvalidDID},
						{"did:macula:io.other.realm.x", wire.CodeOtherRealm},
					} {
						_, err := ca.Resolve(ctxFor(t, 5*time.Second), tc.did)
						wantAPIError(t, err, http.StatusBadRequest, tc.code)
					}
				}},
				{"resolve unknown alias", func(t *testing.T) {
					_, err := ca.Resolve(ctxFor(t, 10*time.Second), "did:macula:"+testRealm+".nobody-"+proto)
					wantAPIError(t, err, http.StatusNotFound, wire.CodeNotFound)
				}},
				{"dht provide and lookup", func(t *testing.T) {
					key := "gateway-test-" + proto
					res, err := cb.DHTProvide(ctxFor(t, 10*time.Second), key)
					if err != nil || res.Key != key || !res.Announced {
						t.Fatalf("provide: %+v, %v (b has a peer: the announcement is done)", res, err)
					}
					// Waiting for a to find b providing key.
					testnet.Eventually(t, 15*time.Second, func() error {
						res, err := ca.DHTLookup(ctxFor(t, 5*time.Second), key)
						if err != nil {
							return err
						}
						if res.Key != key {
							return fmt.Errorf("lookup key = %q", res.Key)
						}
						for _, p := range res.Providers {
							if p.PeerID == b.ID().String() {
								if p.DID != b.DID() {
									return fmt.Errorf("provider b has DID %q, want %q", p.DID, b.DID())
								}
								return nil
							}
						}
						return fmt.Errorf("providers = %+v, want b", res.Providers)
					})
				}},
				{"dht lookup nothing", func(t *testing.T) {
					res, err := ca.DHTLookup(ctxFor(t, 5*time.Second), "nobody-provides-this-"+proto)
					if err != nil {
						t.Fatal(err)
					}
					if res.Providers == nil || len(res.Providers) != 0 {
						t.Errorf("providers = %#v, want empty", res.Providers)
					}
				}},
				{"dht bad keys", func(t *testing.T) {
					_, err := ca.DHTLookup(ctxFor(t, 5*time.Second), "")
					wantAPIError(t, err, http.StatusBadRequest, wire.CodeInvalidKey)
					long := string(make([]byte, 600))
					_, err = ca.DHTProvide(ctxFor(t, 5*time.Second), long)
					wantAPIError(t, err, http.StatusBadRequest, wire.CodeInvalidKey)
					err = ca.raw(ctxFor(t, 5*time.Second), http.MethodGet, "/v1/dht/lookup", nil, nil)
					wantAPIError(t, err, http.StatusBadRequest, wire.CodeBadRequest)
				}},
				{"dht stats", func(t *testing.T) {
					s, err := ca.DHTStats(ctxFor(t, 5*time.Second))
					if err != nil {
						t.Fatal(err)
					}
					if s.Nodes < 1 || s.Buckets < 1 || s.Mode != "server" {
						t.Errorf("stats = %+v, want b in the routing table", s)
					}
				}},
				{"log level", func(t *testing.T) {
					ctx := ctxFor(t, 5*time.Second)
					for _, l := range []string{"debug", "warn", "error", "info"} {
						if err := ca.SetLogLevel(ctx, l); err != nil {
							t.Fatalf("set %s: %v", l, err)
						}
						got, err := ca.LogLevel(ctx)
						if err != nil || got != l {
							t.Fatalf("level after set %s = %q, %v", l, got, err)
						}
					}
					wantAPIError(t, ca.SetLogLevel(ctx, "loud"), http.StatusBadRequest, wire.CodeInvalidLevel)
					if got, _ := ca.LogLevel(ctx); got != "info" {
						t.Errorf("a bad level changed the level to %q", got)
					}
				}},
				{"unknown route", func(t *testing.T) {
					err := ca.raw(ctxFor(t, 5*time.Second), http.MethodGet, "/v1/nothing-here", nil, nil)
					wantAPIError(t, err, http.StatusNotFound, wire.CodeNotFound)
				}},
				{"wrong method", func(t *testing.T) {
					err := ca.raw(ctxFor(t, 5*time.Second), http.MethodDelete, "/v1/node", nil, nil)
					wantAPIError(t, err, http.StatusMethodNotAllowed, wire.CodeMethodNotAllowed)
				}},
			}
			for _, c := range checks {
				t.Run(c.name, c.run)
			}
		})
	}
}

// wantAPIError fails unless err is an *APIError with status and code.
func wantAPIError(t *testing.T, err error, status int, code string) {
	t.Helper()
	var ae *wire.APIError
	if !errors.As(err, &ae) {
		t.Errorf("err = %v (%T), want an *wire.APIError %d %s", err, err, status, code)
		return
	}
	if ae.Status != status || ae.Code != code || ae.Message == "" {
		t.Errorf("err = %+v, want status %d, code %s and a message", ae, status, code)
	}
}

// TestNoPeers checks that a node without peers has an empty JSON array of
// them, never null.
func TestNoPeers(t *testing.T) {
	n := startNode(t, testRealm, "alone")
	g := startGateway(t, n, nil)
	c := clientFor(t, g, "http")
	ps, err := c.Peers(ctxFor(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if ps == nil || len(ps) != 0 {
		t.Errorf("peers = %#v, want []", ps)
	}
}
