package ucan

import (
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/MetaMask/go-did-it"
	didkey "github.com/MetaMask/go-did-it/controller/did-key"
	goed "github.com/MetaMask/go-did-it/crypto/ed25519"
	"github.com/ipfs/go-cid"
	"github.com/ucan-wg/go-ucan/pkg/command"
	"github.com/ucan-wg/go-ucan/pkg/policy"
	"github.com/ucan-wg/go-ucan/pkg/policy/literal"
	"github.com/ucan-wg/go-ucan/token/delegation"
	"github.com/ucan-wg/go-ucan/token/invocation"

	"github.com/macula-io/macula/realm"
)

// IssueOptions says what a delegation grants.
type IssueOptions struct {
	// Audience is the did:key of the principal receiving the grant (a node
	// key, a program's key, or a sub-authority that will delegate further).
	Audience string
	// Command is what may be done, e.g. Call; see ParseCommand.
	Command Command
	// Resource is the pattern of names the command applies to, e.g.
	// "io.acme.orders.*". Empty or ">" means every name of the realm (the
	// policy is then empty).
	Resource string
	// Name, with Command Member, binds a node name to the membership: the
	// alias did:macula:<realm>.<Name> then belongs to Audience.
	Name string
	// NotBefore is when the grant starts (zero: at once).
	NotBefore time.Time
	// Expires is when the grant ends. Required: a grant without an end
	// can only be withdrawn by revocation.
	Expires time.Time
	// Proof is the chain granting the issuer what it delegates, root first;
	// empty when the issuer is the authority (a root delegation). The
	// issuer must be the audience of its last token, and the new grant must
	// lie within it: same or narrower command, same or narrower pattern.
	Proof Chain
	// Realm, when set, is checked against Resource (which must then lie
	// under it).
	Realm string
}

// Issue signs a delegation with key and returns the chain to hand to the
// audience: opts.Proof followed by the new token. Without a proof the
// delegation is a root one (key is the realm authority, the subject is its
// own DID); with a proof it is a sub-delegation about the same subject.
//
// The policy of the delegation is [["like", ".resource", Resource]] (empty
// when the resource is every name), plus ["==", ".name", Name] for a named
// membership; Macula reads "like" on .resource with its segment-aware
// matcher, not the glob of the spec (see the package documentation).
func Issue(key ed25519.PrivateKey, opts IssueOptions) (_ Chain, err error) {
	defer recoverIssue(&err)
	signer, iss, err := signerOf(key)
	if err != nil {
		return nil, err
	}
	aud, err := parseDID("Audience", opts.Audience)
	if err != nil {
		return nil, err
	}
	if !validCommand(opts.Command) {
		return nil, fmt.Errorf("%w: Command %q is not a command (see ParseCommand)", ErrIssue, opts.Command)
	}
	res := opts.Resource
	if res == "" {
		res = ">"
	}
	if _, err := parsePattern(res); err != nil {
		return nil, fmt.Errorf("%w: Resource: %v", ErrIssue, err)
	}
	if opts.Realm != "" && res != ">" {
		if err := realm.ValidatePattern(opts.Realm, res); err != nil {
			return nil, fmt.Errorf("%w: Resource: %v", ErrIssue, err)
		}
	}
	if opts.Name != "" {
		if opts.Command != Member {
			return nil, fmt.Errorf("%w: Name binds a node name to a membership; Command must be %s", ErrIssue, Member)
		}
		if err := realm.ValidateNodeName(opts.Name); err != nil {
			return nil, fmt.Errorf("%w: Name: %v", ErrIssue, err)
		}
	}
	now := time.Now()
	if opts.Expires.IsZero() {
		return nil, fmt.Errorf("%w: Expires is required", ErrIssue)
	}
	if !opts.Expires.After(now) {
		return nil, fmt.Errorf("%w: Expires %v is in the past", ErrIssue, opts.Expires.UTC())
	}
	if !opts.NotBefore.IsZero() && !opts.NotBefore.Before(opts.Expires) {
		return nil, fmt.Errorf("%w: NotBefore is not before Expires", ErrIssue)
	}

	sub := iss
	if len(opts.Proof) > 0 {
		if sub, err = checkProof(opts.Proof, iss.String(), opts.Command, res); err != nil {
			return nil, err
		}
	}

	var stmts []policy.Constructor
	if res != ">" {
		stmts = append(stmts, policy.Like(".resource", res))
	}
	if opts.Name != "" {
		stmts = append(stmts, policy.Equal(".name", literal.String(opts.Name)))
	}
	pol, err := policy.Construct(stmts...)
	if err != nil {
		return nil, fmt.Errorf("%w: policy: %v", ErrIssue, err)
	}
	dopts := []delegation.Option{delegation.WithExpiration(opts.Expires)}
	// go-ucan refuses a not-before in the past; one that has passed means
	// the same as none.
	if opts.NotBefore.After(now) {
		dopts = append(dopts, delegation.WithNotBefore(opts.NotBefore))
	}
	tok, err := delegation.New(iss, aud, command.Command(opts.Command), pol, sub, dopts...)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrIssue, err)
	}
	data, _, err := tok.ToSealed(signer)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrIssue, err)
	}
	out := make(Chain, 0, len(opts.Proof)+1)
	out = append(out, opts.Proof...)
	return append(out, data), nil
}

// checkProof decodes a proof chain (signatures included), checks that it is
// a chain held by issuer and that it covers cmd on res, and returns its
// subject. It does not check time or revocation: the validator does.
func checkProof(proof Chain, issuer string, cmd Command, res string) (did.DID, error) {
	toks := make([]*token, len(proof))
	for i, raw := range proof {
		t, err := decodeToken(raw, maxContainerBytes)
		if err != nil {
			return nil, fmt.Errorf("%w: proof token %d: %w", ErrIssue, i, err)
		}
		if t.invocation {
			return nil, fmt.Errorf("%w: proof token %d is an invocation", ErrIssue, i)
		}
		toks[i] = t
	}
	root := toks[0]
	if root.iss != root.sub {
		return nil, fmt.Errorf("%w: proof does not start with a root delegation", ErrIssue)
	}
	granted, gcmd := ">", root.cmd
	for i, t := range toks {
		if i > 0 && toks[i-1].aud != t.iss {
			return nil, fmt.Errorf("%w: proof is broken at token %d", ErrIssue, i)
		}
		if i > 0 && !gcmd.Covers(t.cmd) {
			return nil, fmt.Errorf("%w: proof widens the command at token %d", ErrIssue, i)
		}
		gcmd = t.cmd
		if t.rules.bad != nil {
			return nil, fmt.Errorf("%w: proof token %d: %v", ErrIssue, i, t.rules.bad)
		}
		if t.rules.resource != "" {
			r, ok := intersect(granted, t.rules.resource)
			if !ok {
				return nil, fmt.Errorf("%w: proof grants no resource", ErrIssue)
			}
			granted = r
		}
	}
	if leaf := toks[len(toks)-1]; leaf.aud != issuer {
		return nil, fmt.Errorf("%w: the proof is delegated to %s, not to the issuer %s", ErrIssue, leaf.aud, issuer)
	}
	if !gcmd.Covers(cmd) {
		return nil, fmt.Errorf("%w: %w: the proof grants %s, not %s", ErrIssue, ErrCommandWidened, gcmd, cmd)
	}
	if !covers(granted, res) {
		return nil, fmt.Errorf("%w: %w: the proof grants %q, which does not cover %q", ErrIssue, ErrResource, granted, res)
	}
	return did.Parse(root.sub)
}

// InvokeOptions says what an invocation asks for.
type InvokeOptions struct {
	// Executor is the did:key of the node asked to run the invocation (its
	// aud). Required.
	Executor string
	// Command is what is invoked, e.g. Call.
	Command Command
	// Resource is the concrete name it applies to, sent as the "resource"
	// argument.
	Resource string
	// Proof is the chain granting the invoker the command, root first
	// (the order of the prf field); empty only for the authority itself.
	Proof Chain
	// Expires is when the invocation stops being valid; zero means one
	// minute from now. Validators bound it (Config.MaxInvocationTTL).
	Expires time.Time
	// IssuedAt is the invocation's iat; zero means now. Validators refuse
	// one more than their leeway in the future.
	IssuedAt time.Time
}

// Invoke signs an invocation with key: a request to the executor, for
// programs that reach a node over its HTTP API (a bearer token) and for
// tests. Each invocation is accepted once (replay protection): make a new
// one per request.
func Invoke(key ed25519.PrivateKey, opts InvokeOptions) (_ []byte, err error) {
	defer recoverIssue(&err)
	signer, iss, err := signerOf(key)
	if err != nil {
		return nil, err
	}
	exec, err := parseDID("Executor", opts.Executor)
	if err != nil {
		return nil, err
	}
	if !validCommand(opts.Command) {
		return nil, fmt.Errorf("%w: Command %q is not a command", ErrIssue, opts.Command)
	}
	sub := iss
	prf := make([]cid.Cid, len(opts.Proof))
	for i, raw := range opts.Proof {
		t, err := decodeToken(raw, maxContainerBytes)
		if err != nil {
			return nil, fmt.Errorf("%w: proof token %d: %w", ErrIssue, i, err)
		}
		if i == 0 {
			if sub, err = did.Parse(t.sub); err != nil {
				return nil, fmt.Errorf("%w: proof root has no subject", ErrIssue)
			}
		}
		prf[i] = t.envelope
	}
	exp := opts.Expires
	if exp.IsZero() {
		exp = time.Now().Add(time.Minute)
	}
	iopts := []invocation.Option{invocation.WithExpiration(exp)}
	if !opts.IssuedAt.IsZero() {
		iopts = append(iopts, invocation.WithIssuedAt(opts.IssuedAt))
	}
	if opts.Resource != "" {
		iopts = append(iopts, invocation.WithArgument("resource", opts.Resource))
	}
	// go-ucan's WithAudience compares DIDs with ==, which panics for two
	// equal Ed25519 did:keys (their keys hold slices): compare strings here.
	if exec.String() != sub.String() {
		iopts = append(iopts, invocation.WithAudience(exec))
	}
	inv, err := invocation.New(iss, command.Command(opts.Command), sub, prf, iopts...)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrIssue, err)
	}
	data, _, err := inv.ToSealed(signer)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrIssue, err)
	}
	return data, nil
}

// recoverIssue turns a panic in go-ucan's encoders into an error.
func recoverIssue(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("%w: %w: %v", ErrIssue, ErrInternal, r)
	}
}

// signerOf converts an Ed25519 key for go-ucan and returns its DID.
func signerOf(key ed25519.PrivateKey) (goed.PrivateKey, did.DID, error) {
	if len(key) != ed25519.PrivateKeySize {
		return goed.PrivateKey{}, nil, fmt.Errorf("%w: key is %d bytes, want %d", ErrIssue, len(key), ed25519.PrivateKeySize)
	}
	k, err := goed.PrivateKeyFromBytes(key)
	if err != nil {
		return goed.PrivateKey{}, nil, fmt.Errorf("%w: %v", ErrIssue, err)
	}
	return k, didkey.FromPrivateKey(k), nil
}

func parseDID(field, s string) (did.DID, error) {
	if _, err := realm.ParseDIDKey(s); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrIssue, field, err)
	}
	d, err := did.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrIssue, field, err)
	}
	return d, nil
}
