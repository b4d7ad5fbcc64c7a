package ucan

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestChainHolder(t *testing.T) {
	r := newTestRealm(t)
	toA := r.issue(t, r.auth, IssueOptions{Audience: didA, Command: Call, Resource: orders})
	chain := r.issue(t, keyA, IssueOptions{Audience: didNode, Command: Call, Resource: orders, Proof: toA})
	for _, c := range []struct {
		chain Chain
		want  string
	}{{toA, didA}, {chain, didNode}} {
		if got, err := c.chain.Holder(); err != nil || got != c.want {
			t.Errorf("Holder of a chain of %d = %q, %v; want %q", len(c.chain), got, err, c.want)
		}
	}

	inv, err := Invoke(keyA, InvokeOptions{Executor: didNode, Command: Call, Resource: orders + ".get", Proof: toA, Expires: time.Now().Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	forged := bytes.Clone(chain.Leaf())
	forged[len(forged)/2] ^= 0xff
	for name, c := range map[string]Chain{
		"empty":      nil,
		"invocation": append(Chain{}, toA[0], inv),
		"garbage":    {[]byte("not a token")},
		"forged":     {toA[0], forged},
	} {
		if got, err := c.Holder(); !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: Holder = %q, %v; want a refusal", name, got, err)
		}
	}
}

func TestReason(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{&TokenError{Index: -1, ID: "bafy", Err: refuse(ErrReplay, "seen at %s", "12:00")}, "invocation (bafy): replayed invocation: seen at 12:00"},
		{fmt.Errorf("%w: no Audience", ErrIssue), "no Audience"},
		{fmt.Errorf("%w: Realm %q", ErrConfig, "x"), `Realm "x"`},
		{ErrUnauthorized, "unauthorized"},
		{errors.New("keyfile: corrupt"), "keyfile: corrupt"},
	} {
		if got := Reason(c.err); got != c.want {
			t.Errorf("Reason(%q) = %q, want %q", c.err, got, c.want)
		}
	}
}
