// Package ucantoken makes the bearer tokens of a secure realm's API: UCAN
// invocations signed with a key, for api.Client.Token. It lives apart from
// package api so that a client of an open realm, or one that gets its
// tokens elsewhere, does not link go-ucan.
package ucantoken

import (
	"context"
	"crypto/ed25519"
	"time"

	"github.com/macula-io/macula/api"
	"github.com/macula-io/macula/ucan"
)

// InvocationTokens returns an api.TokenFunc that signs a new invocation
// with key for every request, addressed to the node whose did:key is
// executor, proven by proof (the chain granting key's DID what it invokes,
// root first; empty only for the realm authority's own key) and valid for
// ttl (0: one minute; nodes refuse more than their MaxInvocationTTL, 5
// minutes by default). The executor must be known beforehand (macula-node
// id on the node's host): GET /v1/node itself needs a token from off
// loopback.
func InvocationTokens(key ed25519.PrivateKey, executor string, proof ucan.Chain, ttl time.Duration) api.TokenFunc {
	if ttl <= 0 {
		ttl = time.Minute
	}
	return func(_ context.Context, req api.TokenRequest) (string, error) {
		inv, err := ucan.Invoke(key, ucan.InvokeOptions{
			Executor: executor, Command: ucan.Command(req.Command), Resource: req.Resource,
			Proof: proof, Expires: time.Now().Add(ttl),
		})
		if err != nil {
			return "", err
		}
		c := make(ucan.Chain, 0, len(proof)+1)
		return append(append(c, proof...), inv).String(), nil
	}
}
