package ucan

import (
	"errors"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/ipld/go-ipld-prime/datamodel"
	"github.com/ipld/go-ipld-prime/fluent/qp"
	"github.com/ipld/go-ipld-prime/node/basicnode"
	"github.com/ucan-wg/go-ucan/token/delegation"
	"github.com/ucan-wg/go-ucan/token/invocation"
)

func panics(f func()) (did bool) {
	defer func() { did = recover() != nil }()
	f()
	return false
}

type loader map[cid.Cid]*delegation.Token

func (l loader) GetDelegation(c cid.Cid) (*delegation.Token, error) {
	if d, ok := l[c]; ok {
		return d, nil
	}
	return nil, delegation.ErrDelegationNotFound
}

// TestGoUCANPanics pins the panics of go-ucan v1.1.0 on tokens that anyone
// can sign, and shows that this package's entry points are not affected.
// If go-ucan fixes one, its assertion here fails: then the guard can be
// reconsidered.
func TestGoUCANPanics(t *testing.T) {
	r := newTestRealm(t)
	exp := r.start.Add(time.Hour).Unix()
	soon := r.start.Add(time.Minute).Unix()
	v := r.validator(t, didSelf, nil)

	t.Run("integer above 2^63-1 in a policy", func(t *testing.T) {
		// limits.ValidateIntegerBoundsIPLD calls must.Int, which panics on
		// the unsigned node go-ipld-prime decodes such an integer to.
		pol := policyOf(statement("==", ".a", basicnode.NewUint(1<<63)))
		tok := rawToken{iss: r.authDID, aud: didNode, sub: r.authDID, cmd: string(Call), pol: pol, exp: exp}.seal(t, r.auth)
		if !panics(func() { delegation.FromDagCbor(tok) }) {
			t.Error("go-ucan no longer panics here")
		}
		_, err := v.Validate(ctxBg, didNode, []Chain{{tok}})
		if !errors.Is(err, ErrMalformed) || errors.Is(err, ErrInternal) {
			t.Fatalf("Validate: %v", err)
		}
	})
	t.Run("integer above 2^63-1 in arguments", func(t *testing.T) {
		args, _ := qp.BuildMap(basicnode.Prototype.Any, 1, func(ma datamodel.MapAssembler) {
			qp.MapEntry(ma, "a", qp.Node(basicnode.NewUint(1<<63)))
		})
		inv := rawInvocation(t, r.auth, r.authDID, didSelf, r.authDID, Call, args, nil, soon)
		if !panics(func() { invocation.FromDagCbor(inv) }) {
			t.Error("go-ucan no longer panics here")
		}
		_, err := v.ValidateInvocation(ctxBg, inv, nil, "", "")
		if !errors.Is(err, ErrMalformed) || errors.Is(err, ErrInternal) {
			t.Fatalf("ValidateInvocation: %v", err)
		}
	})
	t.Run("String of a root delegation", func(t *testing.T) {
		// delegation.Token.String compares issuer and subject with ==; two
		// equal did:keys hold Ed25519 keys with slices: uncomparable.
		root := r.issue(t, r.auth, IssueOptions{Audience: didNode, Command: Call})
		d, err := delegation.FromDagCbor(root[0])
		if err != nil {
			t.Fatal(err)
		}
		if !panics(func() { _ = d.String() }) {
			t.Error("go-ucan no longer panics here")
		}
		if _, err := Inspect(root[0]); err != nil {
			t.Fatalf("Inspect: %v", err)
		}
	})
	t.Run("WithAudience equal to the subject", func(t *testing.T) {
		// invocation.WithAudience compares with == too.
		d, _ := (&testRealm{}).didOf(r.auth)
		if !panics(func() { invocation.New(d, "/macula/call", d, nil, invocation.WithAudience(d)) }) {
			t.Error("go-ucan no longer panics here")
		}
		// The authority invoking on itself, executed by itself.
		if _, err := Invoke(r.auth, InvokeOptions{Executor: r.authDID, Command: Call, Resource: place}); err != nil {
			t.Fatalf("Invoke: %v", err)
		}
	})
	t.Run("ExecutionAllowed with a powerline proof", func(t *testing.T) {
		// verifyProofs calls Subject().Equal on every proof; a powerline
		// delegation has a nil subject.
		toA := r.issue(t, r.auth, IssueOptions{Audience: didA, Command: Call})
		power := rawToken{iss: didA, aud: didNode, cmd: string(Call), exp: exp}.seal(t, keyA)
		root, rootCID, _ := delegation.FromSealed(toA[0])
		pl, plCID, err := delegation.FromSealed(power)
		if err != nil {
			t.Fatal(err)
		}
		args := policyArgs(t, map[string]any{"resource": place})
		// go-ucan wants its proofs leaf first.
		goInv := rawInvocation(t, keyNode, didNode, didSelf, r.authDID, Call, args, Chain{power, toA[0]}, exp)
		inv, err := invocation.FromDagCbor(goInv)
		if err != nil {
			t.Fatal(err)
		}
		if !panics(func() { inv.ExecutionAllowed(loader{rootCID: root, plCID: pl}) }) {
			t.Error("go-ucan no longer panics here")
		}
		ours := rawInvocation(t, keyNode, didNode, didSelf, r.authDID, Call, args, Chain{toA[0], power}, soon)
		if _, err := v.ValidateInvocation(ctxBg, ours, Chain{toA[0], power}, Call, place); err != nil {
			t.Fatalf("ValidateInvocation: %v", err)
		}
	})
}
