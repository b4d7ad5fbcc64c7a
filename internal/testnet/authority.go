package testnet

import (
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/macula-io/macula/ucan"
)

// Authority is a secure realm's authority for tests: a key that issues
// grants and revocations.
type Authority struct {
	Key ed25519.PrivateKey
	// DID is the key's did:key: a secure realm's authority in Configs.
	DID string
}

// NewAuthority returns an authority with a new key.
func NewAuthority(t testing.TB) *Authority {
	t.Helper()
	k, err := ucan.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return &Authority{Key: k, DID: ucan.KeyDID(k)}
}

// Grant issues to did a root delegation of cmd on the pattern resource,
// valid for an hour.
func (a *Authority) Grant(t testing.TB, did string, cmd ucan.Command, resource string) ucan.Chain {
	t.Helper()
	return a.Issue(t, ucan.IssueOptions{Audience: did, Command: cmd, Resource: resource})
}

// Issue issues a delegation with opts (a membership with a Name, a
// NotBefore, a Proof...). Expires left zero is an hour from now.
func (a *Authority) Issue(t testing.TB, opts ucan.IssueOptions) ucan.Chain {
	t.Helper()
	if opts.Expires.IsZero() {
		opts.Expires = time.Now().Add(time.Hour)
	}
	c, err := ucan.Issue(a.Key, opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Revoke returns the record revoking the last token of c.
func (a *Authority) Revoke(t testing.TB, c ucan.Chain) []byte {
	t.Helper()
	rec, err := ucan.Revoke(a.Key, c.Leaf())
	if err != nil {
		t.Fatal(err)
	}
	return rec
}
