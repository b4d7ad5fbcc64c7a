package ucan

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ipld/go-ipld-prime/node/basicnode"
)

// Principals of the tests.
var (
	keyNode  = seedKey("node")
	keyA     = seedKey("a")
	keyB     = seedKey("b")
	keyC     = seedKey("c")
	keyX     = seedKey("stranger")
	keySelf  = seedKey("self") // the executor of invocations
	didNode  = KeyDID(keyNode)
	didA     = KeyDID(keyA)
	didB     = KeyDID(keyB)
	didC     = KeyDID(keyC)
	didX     = KeyDID(keyX)
	didSelf  = KeyDID(keySelf)
	orders   = "io.acme.orders.*"
	place    = "io.acme.orders.place"
	ctxBg    = context.Background()
	oneHour  = time.Hour
	leewayOK = 59 * time.Second
	leewayNo = 61 * time.Second
)

// scenario is one attempt: chains presented by a peer and one Check, or an
// invocation with its proofs.
type scenario struct {
	peer   string
	chains []Chain
	at     time.Time // clock; zero: the realm's start
	cmd    Command   // zero: Call
	res    string    // zero: place

	inv    []byte
	proofs Chain

	cfg    func(*Config)
	before func(t *testing.T, v *Validator)
}

func (r *testRealm) run(t *testing.T, s scenario) error {
	t.Helper()
	v := r.validator(t, didSelf, s.cfg)
	r.clock.Set(r.start)
	if !s.at.IsZero() {
		r.clock.Set(s.at)
	}
	if s.before != nil {
		s.before(t, v)
	}
	cmd, res := s.cmd, s.res
	if cmd == "" {
		cmd = Call
	}
	if res == "" {
		res = place
	}
	if s.inv != nil {
		_, err := v.ValidateInvocation(ctxBg, s.inv, s.proofs, cmd, res)
		return err
	}
	peer := s.peer
	if peer == "" {
		peer = didNode
	}
	vd, err := v.Validate(ctxBg, peer, s.chains)
	if err != nil {
		return err
	}
	return Check(vd, cmd, res)
}

// TestRules has, for every rule of the validator, a case that must pass and
// one that must fail for that rule's reason.
func TestRules(t *testing.T) {
	r := newTestRealm(t)
	grant := func(o IssueOptions) Chain {
		if o.Audience == "" {
			o.Audience = didNode
		}
		if o.Command == "" {
			o.Command = Call
		}
		if o.Resource == "" {
			o.Resource = orders
		}
		return r.issue(t, r.auth, o)
	}
	direct := grant(IssueOptions{})
	toA := r.issue(t, r.auth, IssueOptions{Audience: didA, Command: Call, Resource: orders})
	aToNode := r.issue(t, keyA, IssueOptions{Audience: didNode, Command: Call, Resource: orders, Proof: toA})
	exp := r.start.Add(oneHour)
	later := grant(IssueOptions{NotBefore: r.start.Add(oneHour), Expires: r.start.Add(2 * oneHour)})

	// Raw tokens that Issue refuses to make.
	widened := Chain{toA[0], rawToken{iss: didA, aud: didNode, sub: r.authDID, cmd: string(All), exp: exp.Unix()}.seal(t, keyA)}
	fromB := Chain{toA[0], rawToken{iss: didB, aud: didNode, sub: r.authDID, cmd: string(Call), exp: exp.Unix()}.seal(t, keyB)}
	byStranger := r.issue(t, keyX, IssueOptions{Audience: didNode, Command: Call, Resource: orders})
	claimsAuth := rawToken{iss: r.authDID, aud: didNode, sub: r.authDID, cmd: string(Call), exp: exp.Unix()}
	signedByAuth := Chain{claimsAuth.seal(t, r.auth)}
	signedByX := Chain{claimsAuth.seal(t, keyX)}

	// Chains of three and four delegations.
	c2 := r.issue(t, keyA, IssueOptions{Audience: didB, Command: Call, Resource: orders, Proof: toA})
	three := r.issue(t, keyB, IssueOptions{Audience: didNode, Command: Call, Resource: orders, Proof: c2})
	c3 := r.issue(t, keyB, IssueOptions{Audience: didC, Command: Call, Resource: orders, Proof: c2})
	four := r.issue(t, keyC, IssueOptions{Audience: didNode, Command: Call, Resource: orders, Proof: c3})
	maxThree := func(c *Config) { c.MaxChain = 3 }

	invoke := func(exec string) []byte {
		inv, err := Invoke(keyNode, InvokeOptions{Executor: exec, Command: Call, Resource: place, Proof: direct, Expires: r.start.Add(time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		return inv
	}
	inv := invoke(didSelf)
	revoke := func(tok []byte) func(*testing.T, *Validator) {
		return func(t *testing.T, v *Validator) {
			rec, err := Revoke(r.auth, tok)
			if err != nil {
				t.Fatal(err)
			}
			if err := v.AddRevocation(rec); err != nil {
				t.Fatal(err)
			}
		}
	}

	cases := []struct {
		name       string
		pass, fail scenario
		want       error
	}{
		{"expired",
			scenario{chains: []Chain{direct}, at: exp.Add(leewayOK)},
			scenario{chains: []Chain{direct}, at: exp.Add(leewayNo)}, ErrExpired},
		{"not yet valid",
			scenario{chains: []Chain{later}, at: r.start.Add(oneHour - leewayOK)},
			scenario{chains: []Chain{later}, at: r.start.Add(oneHour - leewayNo)}, ErrNotYetValid},
		{"wrong command",
			scenario{chains: []Chain{direct}, cmd: Call},
			scenario{chains: []Chain{direct}, cmd: Publish}, ErrCommand},
		{"command widened",
			scenario{chains: []Chain{aToNode}},
			scenario{chains: []Chain{widened}}, ErrCommandWidened},
		{"resource outside the pattern",
			scenario{chains: []Chain{direct}, res: place},
			scenario{chains: []Chain{direct}, res: "io.acme.orders.place.eu"}, ErrResource},
		{"resource in another part of the realm",
			scenario{chains: []Chain{direct}, res: "io.acme.orders.cancel"},
			scenario{chains: []Chain{direct}, res: "io.acme.billing.pay"}, ErrResource},
		{"broken chain",
			scenario{chains: []Chain{aToNode}},
			scenario{chains: []Chain{fromB}}, ErrBrokenChain},
		{"chain not rooted at the authority",
			scenario{chains: []Chain{direct}},
			scenario{chains: []Chain{byStranger}}, ErrNotRooted},
		{"wrong signer",
			scenario{chains: []Chain{signedByAuth}},
			scenario{chains: []Chain{signedByX}}, ErrBadSignature},
		{"replayed invocation",
			scenario{inv: inv, proofs: direct},
			scenario{inv: inv, proofs: direct, before: func(t *testing.T, v *Validator) {
				if _, err := v.ValidateInvocation(ctxBg, inv, direct, Call, place); err != nil {
					t.Fatal(err)
				}
			}}, ErrReplay},
		{"replayed invocation, re-encoded",
			scenario{inv: reencode(t, inv), proofs: direct},
			scenario{inv: reencode(t, inv), proofs: direct, before: func(t *testing.T, v *Validator) {
				if _, err := v.ValidateInvocation(ctxBg, inv, direct, Call, place); err != nil {
					t.Fatal(err)
				}
			}}, ErrReplay},
		{"revoked delegation",
			scenario{chains: []Chain{aToNode}},
			scenario{chains: []Chain{aToNode}, before: revoke(aToNode[1])}, ErrRevoked},
		{"revoked delegation, re-encoded",
			scenario{chains: []Chain{{aToNode[0], reencode(t, aToNode[1])}}},
			scenario{chains: []Chain{{aToNode[0], reencode(t, aToNode[1])}}, before: revoke(aToNode[1])}, ErrRevoked},
		{"revoked root, re-encoded",
			scenario{chains: []Chain{{reencode(t, aToNode[0]), aToNode[1]}}},
			scenario{chains: []Chain{{reencode(t, aToNode[0]), aToNode[1]}}, before: revoke(aToNode[0])}, ErrRevoked},
		{"too long a chain",
			scenario{chains: []Chain{three}, cfg: maxThree},
			scenario{chains: []Chain{four}, cfg: maxThree}, ErrChainTooLong},
		{"token for another node",
			scenario{chains: []Chain{direct}, peer: didNode},
			scenario{chains: []Chain{direct}, peer: didX}, ErrWrongAudience},
		{"invocation for another node",
			scenario{inv: invoke(didSelf), proofs: direct},
			scenario{inv: invoke(didX), proofs: direct}, ErrWrongAudience},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := r.run(t, c.pass); err != nil {
				t.Fatalf("must pass: %v", err)
			}
			err := r.run(t, c.fail)
			if !errors.Is(err, c.want) {
				t.Fatalf("must fail with %v, got %v", c.want, err)
			}
			if !errors.Is(err, ErrUnauthorized) {
				t.Fatalf("%v does not wrap ErrUnauthorized", err)
			}
			t.Logf("refused: %v", err)
		})
	}
}

func TestTokenErrorLocates(t *testing.T) {
	r := newTestRealm(t)
	toA := r.issue(t, r.auth, IssueOptions{Audience: didA, Command: Call, Resource: orders})
	bad := Chain{toA[0], rawToken{iss: didB, aud: didNode, sub: r.authDID, cmd: string(Call)}.seal(t, keyB)}
	good := r.issue(t, r.auth, IssueOptions{Audience: didNode, Command: Publish})
	v := r.validator(t, "", nil)
	_, err := v.Validate(ctxBg, didNode, []Chain{good, bad})
	var te *TokenError
	if !errors.As(err, &te) || te.Chain != 1 || te.Index != 1 || te.ID == "" {
		t.Fatalf("want a TokenError at chain 1 token 1, got %#v", err)
	}
}

func TestCheckAfterRevocation(t *testing.T) {
	r := newTestRealm(t)
	calls := r.issue(t, r.auth, IssueOptions{Audience: didNode, Command: Call, Resource: orders})
	pubs := r.issue(t, r.auth, IssueOptions{Audience: didNode, Command: Publish, Resource: "io.acme.orders.>"})
	v := r.validator(t, "", nil)
	vd, err := v.Validate(ctxBg, didNode, []Chain{calls, pubs})
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(vd, Call, place); err != nil {
		t.Fatal(err)
	}
	rec, err := Revoke(r.auth, calls[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := v.AddRevocation(rec); err != nil {
		t.Fatal(err)
	}
	// The verdict handed out before the revocation stops granting at once,
	// for the revoked chain only.
	if err := Check(vd, Call, place); !errors.Is(err, ErrRevoked) {
		t.Fatalf("after revocation: %v", err)
	}
	if err := Check(vd, Publish, "io.acme.orders.placed"); err != nil {
		t.Fatalf("other chain: %v", err)
	}
	if g := vd.Grant(); len(g.Capabilities) != 1 || g.Capabilities[0].Command != Publish {
		t.Fatalf("grant after revocation: %+v", g)
	}
	// Presenting the same chains again is refused, from the cache or not.
	if _, err := v.Validate(ctxBg, didNode, []Chain{calls, pubs}); !errors.Is(err, ErrRevoked) {
		t.Fatalf("re-presented: %v", err)
	}
	if got := v.Revocations(); len(got) != 1 {
		t.Fatalf("Revocations: %d", len(got))
	}
	// Only the authority revokes.
	fake, err := Revoke(keyX, calls[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := v.AddRevocation(fake); !errors.Is(err, ErrNotRooted) {
		t.Fatalf("revocation by a stranger: %v", err)
	}
}

func TestVerdictCacheByContent(t *testing.T) {
	r := newTestRealm(t)
	c := r.issue(t, r.auth, IssueOptions{Audience: didNode, Command: Call, Resource: orders})
	v := r.validator(t, "", nil)
	vd1, err := v.Validate(ctxBg, didNode, []Chain{c})
	if err != nil {
		t.Fatal(err)
	}
	vd2, err := v.Validate(ctxBg, didNode, []Chain{{reencode(t, c[0])}})
	if err != nil {
		t.Fatal(err)
	}
	if vd1 != vd2 {
		t.Fatal("a re-encoded chain did not hit the verdict cache")
	}
	// The cached verdict is still checked against the clock.
	r.clock.Set(r.start.Add(2 * time.Hour))
	if _, err := v.Validate(ctxBg, didNode, []Chain{c}); !errors.Is(err, ErrExpired) {
		t.Fatalf("cached but expired: %v", err)
	}
	if err := Check(vd1, Call, place); !errors.Is(err, ErrExpired) {
		t.Fatalf("Check of an expired verdict: %v", err)
	}
}

func TestMembership(t *testing.T) {
	r := newTestRealm(t)
	named := r.issue(t, r.auth, IssueOptions{Audience: didNode, Command: Member, Name: "worker-1"})
	v := r.validator(t, "", nil)
	vd, err := v.Validate(ctxBg, didNode, []Chain{named})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		want error
	}{{"", nil}, {"worker-1", nil}, {"worker-2", ErrNotMember}} {
		if err := CheckMember(vd, c.name); !errors.Is(err, c.want) && !(c.want == nil && err == nil) {
			t.Errorf("CheckMember(%q) = %v, want %v", c.name, err, c.want)
		}
	}
	if g := vd.Grant(); !g.Member || g.Name != "worker-1" {
		t.Fatalf("grant: %+v", g)
	}
	// Membership is granted by the authority itself, not through a chain.
	toA := r.issue(t, r.auth, IssueOptions{Audience: didA, Command: All})
	sub := r.issue(t, keyA, IssueOptions{Audience: didNode, Command: Member, Proof: toA})
	vd2, err := v.Validate(ctxBg, didNode, []Chain{sub})
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckMember(vd2, ""); !errors.Is(err, ErrNotMember) {
		t.Fatalf("sub-delegated membership: %v", err)
	}
	// A Call grant is no membership.
	calls := r.issue(t, r.auth, IssueOptions{Audience: didNode, Command: Call, Resource: orders})
	vd3, err := v.Validate(ctxBg, didNode, []Chain{calls})
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckMember(vd3, ""); !errors.Is(err, ErrNotMember) {
		t.Fatalf("call grant as membership: %v", err)
	}
}

func TestPolicyOnArguments(t *testing.T) {
	r := newTestRealm(t)
	exp := r.start.Add(time.Hour).Unix()
	pol := policyOf(
		statement("like", ".resource", basicnode.NewString(orders)),
		statement("==", ".priority", basicnode.NewInt(1)),
	)
	chain := Chain{rawToken{iss: r.authDID, aud: didNode, sub: r.authDID, cmd: string(Call), pol: pol, exp: exp}.seal(t, r.auth)}
	v := r.validator(t, didSelf, nil)
	// On a connection there are no arguments: the chain cannot be honoured.
	if _, err := v.Validate(ctxBg, didNode, []Chain{chain}); !errors.Is(err, ErrPolicy) {
		t.Fatalf("Validate: %v", err)
	}
	invoke := func(prio int64, resource string) []byte {
		args := policyArgs(t, map[string]any{"resource": resource, "priority": prio})
		return rawInvocation(t, keyNode, didNode, didSelf, r.authDID, Call, args, chain, r.start.Add(time.Minute).Unix())
	}
	if _, err := v.ValidateInvocation(ctxBg, invoke(1, place), chain, Call, place); err != nil {
		t.Fatalf("satisfying arguments: %v", err)
	}
	if _, err := v.ValidateInvocation(ctxBg, invoke(2, place), chain, Call, place); !errors.Is(err, ErrPolicy) {
		t.Fatalf("violating arguments: %v", err)
	}
	if _, err := v.ValidateInvocation(ctxBg, invoke(1, "io.acme.billing.pay"), chain, Call, "io.acme.billing.pay"); !errors.Is(err, ErrResource) {
		t.Fatalf("resource outside: %v", err)
	}
	if _, err := v.ValidateInvocation(ctxBg, invoke(1, place), chain, Call, "io.acme.orders.cancel"); !errors.Is(err, ErrResource) {
		t.Fatalf("resource other than the request's: %v", err)
	}
}

func TestInvocationLifetime(t *testing.T) {
	r := newTestRealm(t)
	direct := r.issue(t, r.auth, IssueOptions{Audience: didNode, Command: Call, Resource: orders})
	v := r.validator(t, didSelf, nil)
	noExp := rawInvocation(t, keyNode, didNode, didSelf, r.authDID, Call, policyArgs(t, map[string]any{"resource": place}), direct, 0)
	if _, err := v.ValidateInvocation(ctxBg, noExp, direct, Call, place); !errors.Is(err, ErrPolicy) {
		t.Fatalf("without exp: %v", err)
	}
	far, err := Invoke(keyNode, InvokeOptions{Executor: didSelf, Command: Call, Resource: place, Proof: direct, Expires: r.start.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.ValidateInvocation(ctxBg, far, direct, Call, place); !errors.Is(err, ErrPolicy) {
		t.Fatalf("an hour ahead: %v", err)
	}
	soon, err := Invoke(keyNode, InvokeOptions{Executor: didSelf, Command: Call, Resource: place, Proof: direct})
	if err != nil {
		t.Fatal(err)
	}
	vd, err := v.ValidateInvocation(ctxBg, soon, direct, Call, place)
	if err != nil {
		t.Fatal(err)
	}
	if g := vd.Grant(); g.Caller != didNode || len(g.Capabilities) != 1 || g.Capabilities[0].Resource != orders {
		t.Fatalf("grant: %+v", g)
	}
	// The proofs must be the ones the invocation cites.
	other := r.issue(t, r.auth, IssueOptions{Audience: didNode, Command: Call, Resource: orders})
	inv2, _ := Invoke(keyNode, InvokeOptions{Executor: didSelf, Command: Call, Resource: place, Proof: direct})
	if _, err := v.ValidateInvocation(ctxBg, inv2, other, Call, place); !errors.Is(err, ErrBrokenChain) {
		t.Fatalf("other proofs: %v", err)
	}
}

func TestPowerlineInChain(t *testing.T) {
	r := newTestRealm(t)
	exp := r.start.Add(time.Hour).Unix()
	toA := r.issue(t, r.auth, IssueOptions{Audience: didA, Command: Call, Resource: orders})
	// go-ucan's schema has sub optional, not nullable: a powerline
	// delegation omits it.
	power := rawToken{iss: didA, aud: didNode, cmd: string(Call), exp: exp}.seal(t, keyA)
	v := r.validator(t, "", nil)
	vd, err := v.Validate(ctxBg, didNode, []Chain{{toA[0], power}})
	if err != nil {
		t.Fatalf("powerline after a root: %v", err)
	}
	if err := Check(vd, Call, place); err != nil {
		t.Fatal(err)
	}
	// A powerline root is no root.
	rootPower := rawToken{iss: r.authDID, aud: didNode, cmd: string(Call), exp: exp}.seal(t, r.auth)
	if _, err := v.Validate(ctxBg, didNode, []Chain{{rootPower}}); !errors.Is(err, ErrNotRooted) {
		t.Fatalf("powerline root: %v", err)
	}
}

func TestResourcePatternsAlongAChain(t *testing.T) {
	r := newTestRealm(t)
	v := r.validator(t, "", nil)
	wide := r.issue(t, r.auth, IssueOptions{Audience: didA, Command: All, Resource: "io.acme.>"})
	narrow := r.issue(t, keyA, IssueOptions{Audience: didNode, Command: Subscribe, Resource: "io.acme.*.placed", Proof: wide})
	vd, err := v.Validate(ctxBg, didNode, []Chain{narrow})
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(vd, Subscribe, "io.acme.orders.placed"); err != nil {
		t.Fatal(err)
	}
	if err := CheckPattern(vd, Subscribe, "io.acme.*.placed"); err != nil {
		t.Fatal(err)
	}
	if err := CheckPattern(vd, Subscribe, "io.acme.orders.*"); !errors.Is(err, ErrResource) {
		t.Fatalf("wider subscription: %v", err)
	}
	if err := Check(vd, Call, "io.acme.orders.placed"); !errors.Is(err, ErrCommand) {
		t.Fatalf("other command: %v", err)
	}
	// Issue refuses to widen a pattern or a command.
	if _, err := Issue(keyA, IssueOptions{Audience: didNode, Command: Call, Resource: "io.>", Proof: wide, Expires: r.start.Add(time.Hour)}); !errors.Is(err, ErrResource) {
		t.Fatalf("widening Issue: %v", err)
	}
	toA := r.issue(t, r.auth, IssueOptions{Audience: didA, Command: Call})
	if _, err := Issue(keyA, IssueOptions{Audience: didNode, Command: All, Proof: toA, Expires: r.start.Add(time.Hour)}); !errors.Is(err, ErrCommandWidened) {
		t.Fatalf("widening Issue: %v", err)
	}
	// A pattern outside the realm makes the chain invalid.
	other := Chain{rawToken{iss: r.authDID, aud: didNode, sub: r.authDID, cmd: string(Call),
		pol: policyOf(statement("like", ".resource", basicnode.NewString("io.other.*"))), exp: r.start.Add(time.Hour).Unix()}.seal(t, r.auth)}
	if _, err := v.Validate(ctxBg, didNode, []Chain{other}); !errors.Is(err, ErrPolicy) {
		t.Fatalf("pattern outside the realm: %v", err)
	}
}

func TestOpenVerdict(t *testing.T) {
	vd := OpenVerdict(didNode)
	if err := Check(vd, Call, "anything.at.all"); err != nil {
		t.Fatal(err)
	}
	if !vd.Grant().Open || vd.Caller() != didNode {
		t.Fatal("open grant")
	}
	if err := Check(nil, Call, place); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("nil verdict: %v", err)
	}
}

func TestConfig(t *testing.T) {
	r := newTestRealm(t)
	for _, c := range []struct {
		cfg   Config
		field string
	}{
		{Config{Authority: r.authDID}, "Realm"},
		{Config{Realm: testRealmName}, "Authority"},
		{Config{Realm: testRealmName, Authority: r.authDID, Self: "did:key:nope"}, "Self"},
		{Config{Realm: testRealmName, Authority: r.authDID, MaxChain: -1}, "MaxChain"},
		{Config{Realm: testRealmName, Authority: r.authDID, ReplayCacheSize: -5}, "ReplayCacheSize"},
	} {
		_, err := New(c.cfg)
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: %v", c.field, err)
		}
	}
	v, err := New(Config{Realm: testRealmName, Authority: r.authDID})
	if err != nil {
		t.Fatal(err)
	}
	if d := DefaultConfig(); v.cfg.Leeway != d.Leeway || v.cfg.MaxChain != d.MaxChain || v.cfg.ReplayCacheSize != d.ReplayCacheSize {
		t.Fatalf("defaults not applied: %+v", v.cfg)
	}
	if _, err := v.ValidateInvocation(ctxBg, nil, nil, Call, place); !errors.Is(err, ErrConfig) {
		t.Fatalf("invocation without Self: %v", err)
	}
}

func TestReplayCacheBounded(t *testing.T) {
	r := newTestRealm(t)
	direct := r.issue(t, r.auth, IssueOptions{Audience: didNode, Command: Call, Resource: orders})
	v := r.validator(t, didSelf, func(c *Config) { c.ReplayCacheSize = 2 })
	inv := func() []byte {
		b, err := Invoke(keyNode, InvokeOptions{Executor: didSelf, Command: Call, Resource: place, Proof: direct, Expires: r.start.Add(time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for i := 0; i < 2; i++ {
		if _, err := v.ValidateInvocation(ctxBg, inv(), direct, Call, place); err != nil {
			t.Fatal(err)
		}
	}
	// Full of live entries: refused rather than forgetting one.
	if _, err := v.ValidateInvocation(ctxBg, inv(), direct, Call, place); !errors.Is(err, ErrBusy) {
		t.Fatalf("full cache: %v", err)
	}
	// Once they expire there is room again.
	r.clock.Set(r.start.Add(3 * time.Minute))
	late, err := Invoke(keyNode, InvokeOptions{Executor: didSelf, Command: Call, Resource: place, Proof: direct, Expires: r.start.Add(4 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.ValidateInvocation(ctxBg, late, direct, Call, place); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
}

// A subscription's invocation names a pattern: it passes when the pattern
// lies within the grant, and "*" never admits ">".
func TestInvocationForPattern(t *testing.T) {
	r := newTestRealm(t)
	chain := r.issue(t, r.auth, IssueOptions{Audience: didNode, Command: Subscribe, Resource: orders})
	v := r.validator(t, didSelf, nil)
	for _, tc := range []struct {
		pattern string
		ok      bool
	}{
		{orders, true},
		{place, true},
		{"io.acme.orders.*.eu", false},
		{"io.acme.orders.>", false},
		{"io.acme.>", false},
	} {
		inv, err := Invoke(keyNode, InvokeOptions{Executor: didSelf, Command: Subscribe, Resource: tc.pattern, Proof: chain})
		if err != nil {
			t.Fatal(err)
		}
		_, err = v.ValidateInvocation(ctxBg, inv, chain, Subscribe, tc.pattern)
		if tc.ok && err != nil {
			t.Errorf("%s: %v", tc.pattern, err)
		}
		if !tc.ok && !errors.Is(err, ErrResource) {
			t.Errorf("%s: %v, want ErrResource", tc.pattern, err)
		}
	}
}

// Check remembers which chain granted a name; time and revocation still
// apply to a remembered name on every use.
func TestCheckMemoStillChecks(t *testing.T) {
	r := newTestRealm(t)
	chain := r.issue(t, r.auth, IssueOptions{Audience: didNode, Command: Call, Resource: orders, Expires: r.start.Add(time.Hour)})
	v := r.validator(t, didSelf, nil)
	vd, err := v.Validate(ctxBg, didNode, []Chain{chain})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ { // the first fills the memo, the others use it
		if err := Check(vd, Call, place); err != nil {
			t.Fatal(err)
		}
	}
	if err := Check(vd, Subscribe, place); !errors.Is(err, ErrCommand) {
		t.Fatalf("another command on a remembered name: %v", err)
	}
	r.clock.Set(r.start.Add(time.Hour + 59*time.Second)) // within the leeway
	if err := Check(vd, Call, place); err != nil {
		t.Fatalf("within the leeway: %v", err)
	}
	r.clock.Set(r.start.Add(time.Hour + 61*time.Second))
	if err := Check(vd, Call, place); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired, remembered: %v", err)
	}
	r.clock.Set(r.start)
	if err := Check(vd, Call, place); err != nil {
		t.Fatal(err)
	}
	rec, err := Revoke(r.auth, chain.Leaf())
	if err != nil {
		t.Fatal(err)
	}
	if err := v.AddRevocation(rec); err != nil {
		t.Fatal(err)
	}
	if err := Check(vd, Call, place); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revoked, remembered: %v", err)
	}
	// Many names: past the memo's size they still pass, the slow way.
	vd2, err := v.Validate(ctxBg, didNode, []Chain{r.issue(t, r.auth, IssueOptions{Audience: didNode, Command: Call, Resource: orders})})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3*memoSize; i++ {
		if err := Check(vd2, Call, fmt.Sprintf("io.acme.orders.p%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := Check(vd2, Call, "io.acme.billing.pay"); !errors.Is(err, ErrResource) {
		t.Fatalf("outside: %v", err)
	}
}

// TestServeCapabilityNames: a capability is served under its name in the
// realm (ServeResource); a pattern grants every capability it matches.
func TestServeCapabilityNames(t *testing.T) {
	r := newTestRealm(t)
	game := ServeResource(testRealmName, "game")
	c := r.issue(t, r.auth, IssueOptions{Audience: didNode, Command: Serve, Resource: game, Realm: testRealmName})
	all := r.issue(t, r.auth, IssueOptions{Audience: didA, Command: Serve, Resource: testRealmName + ".*", Realm: testRealmName})
	v := r.validator(t, "", nil)
	vd, err := v.Validate(ctxBg, didNode, []Chain{c})
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(vd, Serve, game); err != nil {
		t.Fatalf("serve game: %v", err)
	}
	if err := Check(vd, Serve, ServeResource(testRealmName, "chat")); !errors.Is(err, ErrResource) {
		t.Fatalf("serve chat: %v, want ErrResource", err)
	}
	vdA, err := v.Validate(ctxBg, didA, []Chain{all})
	if err != nil {
		t.Fatal(err)
	}
	for _, capName := range []string{"game", "chat"} {
		if err := Check(vdA, Serve, ServeResource(testRealmName, capName)); err != nil {
			t.Fatalf("serve %s with %s.*: %v", capName, testRealmName, err)
		}
	}
	if err := Check(vdA, Call, ServeResource(testRealmName, "game")); !errors.Is(err, ErrCommand) {
		t.Fatalf("a serve grant used for a call: %v", err)
	}
}
