package ucan

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipld/go-ipld-prime/datamodel"
	"github.com/ucan-wg/go-ucan/pkg/policy"

	"github.com/macula-io/macula/realm"
)

// Config tunes a Validator. Realm and Authority are required; every other
// field has a default that its zero value selects. New does not modify it.
type Config struct {
	// Realm is the realm whose names resources are (e.g. "io.acme.orders").
	// Patterns in delegations must lie under it, and every capability is
	// narrowed to "<Realm>.>".
	Realm string
	// Authority is the did:key of the realm authority: every chain must
	// start with a root delegation it issued about itself.
	Authority string
	// Self is this node's did:key. ValidateInvocation refuses invocations
	// whose executor (aud, or sub without aud) is not Self. Optional when the
	// validator only checks chains presented on connections.
	Self string

	// Leeway is the clock skew tolerated on expiry and not-before times.
	// Zero means 60 s; a negative value means none.
	Leeway time.Duration
	// MaxChain is the most delegations a chain may have. Zero means 8.
	MaxChain int
	// MaxChains is the most chains one presentation may carry. Zero means 16.
	MaxChains int
	// MaxTokenSize is the largest sealed token in bytes, checked before
	// decoding. Zero means 8 KiB (a Macula delegation is about 400 bytes).
	MaxTokenSize int
	// MaxInvocationTTL is the longest an invocation may remain valid (its
	// exp minus now): the replay cache must hold every invocation that
	// could still be replayed, and this bounds for how long. Zero means
	// 5 min; invocations without exp are then refused. A negative value
	// lifts the bound (and allows invocations without exp, which stay in
	// the replay cache until it is full; then new ones are refused).
	MaxInvocationTTL time.Duration

	// VerdictCacheSize is how many verdicts are kept (least recently used
	// evicted), keyed by the peer and the content IDs of its chains. Zero
	// means 1024.
	VerdictCacheSize int
	// TokenCacheSize is how many decoded, signature-checked tokens are
	// kept, keyed by a hash of their bytes. Zero means 4096.
	TokenCacheSize int
	// ReplayCacheSize is how many live invocations are remembered. When it
	// is full of unexpired ones, invocations are refused with ErrBusy
	// rather than forgetting one. Zero means 100 000.
	ReplayCacheSize int
	// MaxRevocations is how many unexpired revocations are kept. Zero
	// means 65 536.
	MaxRevocations int
	// ReplayFile, when set, keeps the replay cache in that file (mode
	// 0600; its directory must exist by the first invocation), so that an
	// invocation used before a restart stays refused after it: see the
	// package doc, "Used invocations". Close must then be called. Empty
	// means in memory only: a restart forgets which invocations were used.
	ReplayFile string

	// Now is the clock; nil means time.Now. Tests inject one.
	Now func() time.Time
	// Logger receives Debug lines for refusals and Info lines for
	// revocations; nil means slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns the defaults, with Realm, Authority and Self empty.
func DefaultConfig() Config {
	return Config{
		Leeway:           60 * time.Second,
		MaxChain:         8,
		MaxChains:        16,
		MaxTokenSize:     8 << 10,
		MaxInvocationTTL: 5 * time.Minute,
		VerdictCacheSize: 1024,
		TokenCacheSize:   4096,
		ReplayCacheSize:  100_000,
		MaxRevocations:   65_536,
	}
}

// Validator checks delegation chains and invocations for one realm. It is
// safe for concurrent use. It starts no goroutine; caches are pruned as they
// are used.
type Validator struct {
	// Set in New, read-only after.
	cfg       Config
	authority string
	realmAll  string // "<realm>.>", the widest capability
	now       func() time.Time
	log       *slog.Logger

	tokens   *lru[[32]byte, *token]   // sha256(raw) -> decoded token
	verdicts *lru[[32]byte, *Verdict] // verdictKey -> verdict
	replay   *replayCache

	// revGen counts revocations added; a verdict rechecks its chains when
	// the generation it last saw differs.
	revGen atomic.Uint64
	revMu  sync.RWMutex // guards revoked
	// revoked maps the content ID of a revoked delegation to the record.
	revoked map[contentID]revocation
}

type revocation struct {
	record []byte
	until  time.Time // zero: for ever
}

// New checks cfg and returns a Validator. Errors wrap ErrConfig and name the
// field.
func New(cfg Config) (*Validator, error) {
	c := cfg
	d := DefaultConfig()
	if err := realm.ValidateRealm(c.Realm); err != nil {
		return nil, fmt.Errorf("%w: Realm: %v", ErrConfig, err)
	}
	if _, err := realm.ParseDIDKey(c.Authority); err != nil {
		return nil, fmt.Errorf("%w: Authority: %v", ErrConfig, err)
	}
	if c.Self != "" {
		if _, err := realm.ParseDIDKey(c.Self); err != nil {
			return nil, fmt.Errorf("%w: Self: %v", ErrConfig, err)
		}
	}
	switch {
	case c.Leeway == 0:
		c.Leeway = d.Leeway
	case c.Leeway < 0:
		c.Leeway = 0
	}
	if c.MaxInvocationTTL == 0 {
		c.MaxInvocationTTL = d.MaxInvocationTTL
	}
	ints := []struct {
		name string
		p    *int
		def  int
	}{
		{"MaxChain", &c.MaxChain, d.MaxChain},
		{"MaxChains", &c.MaxChains, d.MaxChains},
		{"MaxTokenSize", &c.MaxTokenSize, d.MaxTokenSize},
		{"VerdictCacheSize", &c.VerdictCacheSize, d.VerdictCacheSize},
		{"TokenCacheSize", &c.TokenCacheSize, d.TokenCacheSize},
		{"ReplayCacheSize", &c.ReplayCacheSize, d.ReplayCacheSize},
		{"MaxRevocations", &c.MaxRevocations, d.MaxRevocations},
	}
	for _, f := range ints {
		if *f.p < 0 {
			return nil, fmt.Errorf("%w: %s is %d, want 0 (default %d) or more", ErrConfig, f.name, *f.p, f.def)
		}
		if *f.p == 0 {
			*f.p = f.def
		}
	}
	if c.MaxChain > maxContainerItems || c.MaxChains > maxContainerItems {
		return nil, fmt.Errorf("%w: MaxChain and MaxChains are at most %d", ErrConfig, maxContainerItems)
	}
	v := &Validator{
		cfg:       c,
		authority: c.Authority,
		realmAll:  c.Realm + ".>",
		now:       c.Now,
		log:       c.Logger,
		tokens:    newLRU[[32]byte, *token](c.TokenCacheSize),
		verdicts:  newLRU[[32]byte, *Verdict](c.VerdictCacheSize),
		replay:    newReplayCache(c.ReplayCacheSize),
		revoked:   make(map[contentID]revocation),
	}
	if v.now == nil {
		v.now = time.Now
	}
	if v.log == nil {
		v.log = slog.Default()
	}
	if c.ReplayFile != "" {
		if err := openReplayFile(v.replay, c.ReplayFile, v.now(), c.Leeway, c.MaxInvocationTTL, v.log); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// Close ends the use of the replay file: when anything changed, it writes
// the invocations still live there, marked as written by a clean stop, and
// syncs it. After Close invocations are refused (ErrBusy); everything else
// keeps working. It is safe to call more than once.
func (v *Validator) Close() error { return v.replay.close(v.now()) }

// Verdict is the outcome of validating what a peer presented: the chains
// that passed, each with its effective capability, validity window and the
// content IDs of its delegations. It is immutable apart from revocation
// flags, shared by all connections that presented the same chains, and safe
// for concurrent use. Check consults it on every call.
type Verdict struct {
	v       *Validator // nil for an open verdict
	caller  string
	open    bool
	entries []*entry
	gen     atomic.Uint64 // revocation generation entries were checked at
	// memo remembers which entry granted a (command, concrete name) lately,
	// so that the per-call Check of a name seen before skips the pattern
	// matching: an immutable slice, replaced whole (at most memoSize).
	memo atomic.Pointer[[]memoItem]
}

// memoItem: entries[idx] grants cmd on res (time and revocation are checked
// again on every use).
type memoItem struct {
	cmd Command
	res string
	idx int
}

// memoSize bounds a verdict's memo; names beyond it take the slow path.
const memoSize = 16

// entry is one validated chain.
type entry struct {
	cap      Capability
	nbf, exp time.Time // latest not-before, earliest expiry along the chain (zero: none)
	// from and until are nbf and exp widened by the leeway, in Unix
	// nanoseconds (0: unbounded), for the per-call check.
	from, until int64
	ids         []contentID
	member      bool   // a direct grant from the authority covering Member
	name        string // node name bound by that grant
	other       policy.Policy
	revoked     atomic.Bool
	explicit    bool // some delegation constrained the resource
}

// OpenVerdict returns a verdict that allows everything, for a realm without
// an authority (development): the same code path in handlers, with
// Grant().Open set so that it can be told and logged.
func OpenVerdict(caller string) *Verdict {
	return &Verdict{caller: caller, open: true}
}

// Caller is the did:key of the principal the verdict is about.
func (vd *Verdict) Caller() string { return vd.caller }

// Grant returns what the verdict grants now: the chains that are within
// their validity window and not revoked.
func (vd *Verdict) Grant() Grant {
	g := Grant{Caller: vd.caller, Open: vd.open}
	if vd.open || vd.v == nil {
		return g
	}
	v := vd.v
	v.syncRevocations(vd)
	now := v.now()
	for _, e := range vd.entries {
		if e.revoked.Load() || v.timeCheck(e.nbf, e.exp, now) != nil {
			continue
		}
		g.Capabilities = append(g.Capabilities, e.cap)
		if e.member {
			g.Member = true
			if g.Name == "" {
				g.Name = e.name
			}
		}
		if !e.exp.IsZero() && (g.Expires.IsZero() || e.exp.Before(g.Expires)) {
			g.Expires = e.exp
		}
	}
	return g
}

// Check reports whether the verdict grants cmd on the concrete resource
// name now: some chain whose command covers cmd, whose pattern matches the
// resource, within its validity window (with the leeway) and not revoked.
// It is the per-call check: a few string comparisons, one clock read and one
// atomic load, no allocation on success. A nil verdict is refused.
func Check(vd *Verdict, cmd Command, resource string) error {
	return check(vd, cmd, resource, false)
}

func check(vd *Verdict, cmd Command, resource string, isPattern bool) error {
	if vd == nil {
		return refuse(ErrUnauthorized, "no verdict")
	}
	if vd.open {
		return nil
	}
	v := vd.v
	v.syncRevocations(vd)
	now := v.now()
	if !isPattern {
		if m := vd.memo.Load(); m != nil {
			for _, it := range *m {
				if it.res == resource && it.cmd == cmd {
					if e := vd.entries[it.idx]; !e.revoked.Load() && e.within(now.UnixNano()) {
						return nil
					}
					break // the slow path says why not
				}
			}
		}
	}
	reason, rank := error(nil), 0
	for i, e := range vd.entries {
		if !e.cap.Command.Covers(cmd) {
			continue
		}
		var ok bool
		if isPattern {
			ok = covers(e.cap.Resource, resource)
		} else {
			ok = realm.Match(e.cap.Resource, resource)
		}
		switch {
		case !ok:
			if rank < 1 {
				reason, rank = ErrResource, 1
			}
		case e.revoked.Load():
			reason, rank = ErrRevoked, 2
		default:
			if err := v.timeCheck(e.nbf, e.exp, now); err != nil {
				reason, rank = err, 2
				continue
			}
			if !isPattern {
				vd.remember(cmd, resource, i)
			}
			return nil
		}
	}
	if reason == nil {
		return refuse(ErrCommand, "%s is not granted to %s", cmd, vd.caller)
	}
	return refuse(reason, "%s %s for %s", cmd, resource, vd.caller)
}

// CheckMember reports whether the verdict holds a membership grant of the
// realm issued directly by the authority, valid now and not revoked. With a
// non-empty name, the grant must bind that node name (the alias
// did:macula:<realm>.<name> then belongs to the caller).
func CheckMember(vd *Verdict, name string) error {
	if vd == nil {
		return refuse(ErrNotMember, "no verdict")
	}
	if vd.open {
		return nil
	}
	v := vd.v
	v.syncRevocations(vd)
	now := v.now()
	for _, e := range vd.entries {
		if !e.member || (name != "" && e.name != name) {
			continue
		}
		if e.revoked.Load() {
			return refuse(ErrRevoked, "membership of %s", vd.caller)
		}
		if err := v.timeCheck(e.nbf, e.exp, now); err != nil {
			return refuse(err, "membership of %s", vd.caller)
		}
		return nil
	}
	if name != "" {
		return refuse(ErrNotMember, "%s holds no grant of the name %q", vd.caller, name)
	}
	return refuse(ErrNotMember, "%s", vd.caller)
}

// Validate checks the chains a peer presented on its connection (once per
// connection, and again when they change) and returns the verdict to check
// its calls and messages against. peer is the did:key the connection
// authenticated; each chain must end with a delegation to it. Every chain
// must be valid; the first failure is returned as a *TokenError that wraps
// the reason. A chain whose policy constrains invocation arguments is
// refused (ErrPolicy): there are none on a connection.
//
// The verdict is cached by the peer and the content IDs of the chains, so
// presenting the same chains again, even re-encoded, costs a hash per token;
// time and revocations are checked again on every use.
func (v *Validator) Validate(ctx context.Context, peer string, chains []Chain) (vd *Verdict, err error) {
	defer func() {
		if r := recover(); r != nil {
			vd, err = nil, fmt.Errorf("%w: validating: %v", ErrInternal, r)
		}
		if err != nil {
			v.log.Debug("ucan: chains refused", "peer", peer, "err", err)
		}
	}()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if _, err := realm.ParseDIDKey(peer); err != nil {
		return nil, refuse(ErrMalformed, "peer: %v", err)
	}
	if len(chains) == 0 {
		return nil, refuse(ErrBrokenChain, "no chain presented")
	}
	if len(chains) > v.cfg.MaxChains {
		return nil, refuse(ErrMalformed, "%d chains, at most %d", len(chains), v.cfg.MaxChains)
	}
	decoded := make([][]*token, len(chains))
	h := sha256.New()
	h.Write([]byte(peer))
	for i, c := range chains {
		if len(c) > v.cfg.MaxChain {
			return nil, &TokenError{Chain: i, Index: v.cfg.MaxChain, Err: refuse(ErrChainTooLong, "%d delegations, at most %d", len(c), v.cfg.MaxChain)}
		}
		h.Write([]byte{0xff})
		for j, raw := range c {
			t, err := v.decode(raw)
			if err != nil {
				return nil, &TokenError{Chain: i, Index: j, Err: err}
			}
			decoded[i] = append(decoded[i], t)
			h.Write(t.id[:])
		}
	}
	var key [32]byte
	h.Sum(key[:0])
	now := v.now()
	// A cached verdict stands if its chains are still in time and not
	// revoked; otherwise the full check below says precisely why not.
	if cached, ok := v.verdicts.get(key); ok && v.recheck(cached, now) {
		return cached, nil
	}
	vd = &Verdict{v: v, caller: peer}
	vd.gen.Store(v.revGen.Load())
	for i, toks := range decoded {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		e, idx, err := v.checkChain(toks, peer, now)
		if err == nil && len(e.other) > 0 {
			idx, err = len(toks)-1, refuse(ErrPolicy, "the chain's policy constrains invocation arguments (%s); present it with an invocation", e.other)
		}
		if err != nil {
			te := &TokenError{Chain: i, Index: idx, Err: err}
			if idx >= 0 && idx < len(toks) {
				te.ID = toks[idx].id.String()
			}
			return nil, te
		}
		vd.entries = append(vd.entries, e)
	}
	v.verdicts.put(key, vd)
	return vd, nil
}

// recheck applies what may have changed since a verdict was cached: time and
// revocations. It reports whether the verdict still stands whole.
func (v *Validator) recheck(vd *Verdict, now time.Time) bool {
	v.syncRevocations(vd)
	for _, e := range vd.entries {
		if e.revoked.Load() || v.timeCheck(e.nbf, e.exp, now) != nil {
			return false
		}
	}
	return true
}

// ValidateInvocation checks an invocation presented with its proofs (root
// first, the order of its prf field) and consumes it: the same invocation is
// refused afterwards (ErrReplay). The executor must be Config.Self. When cmd
// is not empty the invocation must be for cmd; when resource is not empty it
// must name it in its "resource" argument. The returned verdict holds the
// invoker's capability from this chain, for the handler.
func (v *Validator) ValidateInvocation(ctx context.Context, inv []byte, proofs Chain, cmd Command, resource string) (vd *Verdict, err error) {
	defer func() {
		if r := recover(); r != nil {
			vd, err = nil, fmt.Errorf("%w: validating invocation: %v", ErrInternal, r)
		}
		if err != nil {
			v.log.Debug("ucan: invocation refused", "err", err)
		}
	}()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if v.cfg.Self == "" {
		return nil, fmt.Errorf("%w: Self is required to validate invocations", ErrConfig)
	}
	invErr := func(err error) error { return &TokenError{Index: -1, Err: err} }
	t, err := decodeToken(inv, v.cfg.MaxTokenSize)
	if err != nil {
		return nil, invErr(err)
	}
	if !t.invocation {
		return nil, invErr(refuse(ErrMalformed, "a delegation where an invocation is expected"))
	}
	if ex := t.executor(); ex != v.cfg.Self {
		return nil, invErr(refuse(ErrWrongAudience, "invocation is for %s, this node is %s", ex, v.cfg.Self))
	}
	if t.sub != v.authority {
		return nil, invErr(refuse(ErrBrokenChain, "invocation's subject %s is not the realm authority", t.sub))
	}
	if cmd != "" && t.cmd != cmd {
		return nil, invErr(refuse(ErrCommand, "invocation is for %s, the request is %s", t.cmd, cmd))
	}
	now := v.now()
	if err := v.timeCheck(time.Time{}, t.exp, now); err != nil {
		return nil, invErr(err)
	}
	if !t.iat.IsZero() && t.iat.After(now.Add(v.cfg.Leeway)) {
		// A quarantine (see replayCache) relies on it: nothing accepted
		// before a start was issued later than the leeway after it.
		return nil, invErr(refuse(ErrNotYetValid, "invocation issued at %v, in the future", t.iat.UTC()))
	}
	if ttl := v.cfg.MaxInvocationTTL; ttl > 0 {
		if t.exp.IsZero() {
			return nil, invErr(refuse(ErrPolicy, "invocation without expiry (this node wants one within %v)", ttl))
		}
		if t.exp.After(now.Add(ttl + v.cfg.Leeway)) {
			return nil, invErr(refuse(ErrPolicy, "invocation valid until %v, more than %v ahead", t.exp.UTC(), ttl))
		}
	}

	var e *entry
	if t.iss == v.authority && len(t.prf) == 0 {
		// The authority acting on itself needs no proof.
		e = &entry{cap: Capability{Command: "/", Resource: v.realmAll}}
	} else {
		if len(t.prf) == 0 {
			return nil, invErr(refuse(ErrBrokenChain, "no proof"))
		}
		if len(t.prf) > v.cfg.MaxChain {
			return nil, invErr(refuse(ErrChainTooLong, "%d proofs, at most %d", len(t.prf), v.cfg.MaxChain))
		}
		if len(proofs) != len(t.prf) {
			return nil, invErr(refuse(ErrBrokenChain, "invocation cites %d proofs, %d presented", len(t.prf), len(proofs)))
		}
		toks := make([]*token, len(proofs))
		for j, raw := range proofs {
			if toks[j], err = v.decode(raw); err != nil {
				return nil, &TokenError{Index: j, Err: err}
			}
			if !toks[j].envelope.Equals(t.prf[j]) {
				return nil, &TokenError{Index: j, ID: toks[j].id.String(), Err: refuse(ErrBrokenChain, "proof %d is %s, the invocation cites %s there (root first)", j, toks[j].envelope, t.prf[j])}
			}
		}
		var idx int
		e, idx, err = v.checkChain(toks, t.iss, now)
		if err != nil {
			te := &TokenError{Index: idx, Err: err}
			if idx >= 0 && idx < len(toks) {
				te.ID = toks[idx].id.String()
			}
			return nil, te
		}
	}
	if !e.cap.Command.Covers(t.cmd) {
		return nil, invErr(refuse(ErrCommand, "the chain grants %s, the invocation is for %s", e.cap.Command, t.cmd))
	}
	args, err := t.inv.Arguments().ToIPLD()
	if err != nil {
		return nil, invErr(refuse(ErrMalformed, "arguments: %v", err))
	}
	res, err := resourceArg(args)
	if err != nil {
		return nil, invErr(err)
	}
	switch {
	case resource != "" && res != resource:
		return nil, invErr(refuse(ErrResource, "invocation is for resource %q, the request is for %q", res, resource))
	case res != "" && !realm.Match(e.cap.Resource, res) && !covers(e.cap.Resource, res):
		// A concrete name must match; a pattern (a subscription's) must lie
		// within the grant.
		return nil, invErr(refuse(ErrResource, "%q is outside %q", res, e.cap.Resource))
	case res == "" && e.explicit:
		return nil, invErr(refuse(ErrResource, "the chain grants %q, the invocation names no resource", e.cap.Resource))
	}
	if len(e.other) > 0 {
		if ok, st := e.other.Match(args); !ok {
			return nil, invErr(refuse(ErrPolicy, "arguments do not satisfy %v", st))
		}
	}
	until := time.Time{}
	if !t.exp.IsZero() {
		until = t.exp.Add(v.cfg.Leeway)
	}
	if err := v.replay.add(t.id, until, t.iat, now); err != nil {
		return nil, invErr(err)
	}
	vd = &Verdict{v: v, caller: t.iss, entries: []*entry{e}}
	vd.gen.Store(v.revGen.Load())
	return vd, nil
}

// resourceArg returns the "resource" argument of an invocation, "" if none.
func resourceArg(args datamodel.Node) (string, error) {
	n, err := args.LookupByString("resource")
	if err != nil || n == nil {
		return "", nil
	}
	s, err := n.AsString()
	if err != nil {
		return "", refuse(ErrMalformed, "the resource argument is not a string")
	}
	return s, nil
}

// decode returns the decoded token for raw bytes, from the cache when the
// same bytes were seen before. Only successfully decoded tokens are cached.
func (v *Validator) decode(raw []byte) (*token, error) {
	if len(raw) > v.cfg.MaxTokenSize {
		return nil, refuse(ErrMalformed, "token of %d bytes is over the limit of %d", len(raw), v.cfg.MaxTokenSize)
	}
	k := sha256.Sum256(raw)
	if t, ok := v.tokens.get(k); ok {
		return t, nil
	}
	t, err := decodeToken(raw, v.cfg.MaxTokenSize)
	if err != nil {
		return nil, err
	}
	v.tokens.put(k, t)
	return t, nil
}

// checkChain applies the rules to a decoded chain (root first) held by
// holder. On failure it returns the index of the offending token.
func (v *Validator) checkChain(toks []*token, holder string, now time.Time) (*entry, int, error) {
	if len(toks) == 0 {
		return nil, -1, refuse(ErrBrokenChain, "empty chain")
	}
	if len(toks) > v.cfg.MaxChain {
		return nil, v.cfg.MaxChain, refuse(ErrChainTooLong, "%d delegations, at most %d", len(toks), v.cfg.MaxChain)
	}
	e := &entry{}
	resource := v.realmAll
	for i, t := range toks {
		if t.invocation {
			return nil, i, refuse(ErrMalformed, "an invocation where a delegation is expected")
		}
		if i == 0 {
			if t.iss != v.authority {
				return nil, i, refuse(ErrNotRooted, "root issued by %s, the authority is %s", t.iss, v.authority)
			}
			if t.sub != v.authority {
				return nil, i, refuse(ErrNotRooted, "root delegation's subject is %q, not the authority", t.sub)
			}
		} else {
			prev := toks[i-1]
			if prev.aud != t.iss {
				return nil, i, refuse(ErrBrokenChain, "issued by %s, but the delegation before it is to %s", t.iss, prev.aud)
			}
			// A powerline delegation (no subject) may extend a chain.
			if t.sub != "" && t.sub != v.authority {
				return nil, i, refuse(ErrBrokenChain, "subject %s is not the realm authority", t.sub)
			}
			if !prev.cmd.Covers(t.cmd) {
				return nil, i, refuse(ErrCommandWidened, "%s is not within %s", t.cmd, prev.cmd)
			}
		}
		if v.isRevoked(t.id) {
			return nil, i, refuse(ErrRevoked, "delegation %s", t.id)
		}
		if err := v.timeCheck(t.nbf, t.exp, now); err != nil {
			return nil, i, err
		}
		if t.rules.bad != nil {
			return nil, i, refuse(ErrPolicy, "%v", t.rules.bad)
		}
		if p := t.rules.resource; p != "" {
			if err := realm.ValidatePattern(v.cfg.Realm, p); err != nil {
				return nil, i, refuse(ErrPolicy, "%v", err)
			}
			r, ok := intersect(resource, p)
			if !ok {
				return nil, i, refuse(ErrResource, "pattern %q has no name in common with %q granted before it", p, resource)
			}
			resource, e.explicit = r, true
		}
		e.other = append(e.other, t.rules.other...)
		if !t.nbf.IsZero() && t.nbf.After(e.nbf) {
			e.nbf = t.nbf
		}
		if !t.exp.IsZero() && (e.exp.IsZero() || t.exp.Before(e.exp)) {
			e.exp = t.exp
		}
		e.ids = append(e.ids, t.id)
	}
	leaf := toks[len(toks)-1]
	if leaf.aud != holder {
		return nil, len(toks) - 1, refuse(ErrWrongAudience, "delegated to %s, presented by %s", leaf.aud, holder)
	}
	e.cap = Capability{Command: leaf.cmd, Resource: resource}
	if len(toks) == 1 && leaf.cmd.Covers(Member) {
		e.member, e.name = true, leaf.rules.name
	}
	v.setBounds(e)
	return e, 0, nil
}

// timeCheck applies the leeway to a validity window (zero times: unbounded).
func (v *Validator) timeCheck(nbf, exp, now time.Time) error {
	if !nbf.IsZero() && now.Add(v.cfg.Leeway).Before(nbf) {
		return refuse(ErrNotYetValid, "valid from %v", nbf.UTC())
	}
	if !exp.IsZero() && now.Add(-v.cfg.Leeway).After(exp) {
		return refuse(ErrExpired, "expired at %v", exp.UTC())
	}
	return nil
}

// setBounds fills e.from and e.until from its window and the leeway.
func (v *Validator) setBounds(e *entry) {
	if !e.nbf.IsZero() {
		e.from = e.nbf.Add(-v.cfg.Leeway).UnixNano()
	}
	if !e.exp.IsZero() {
		e.until = e.exp.Add(v.cfg.Leeway).UnixNano()
	}
}

// within reports whether now (Unix nanoseconds) lies in e's window with the
// leeway; timeCheck says why not.
func (e *entry) within(now int64) bool {
	return (e.from == 0 || now >= e.from) && (e.until == 0 || now <= e.until)
}

// remember notes that entries[idx] granted cmd on res.
func (vd *Verdict) remember(cmd Command, res string, idx int) {
	old := vd.memo.Load()
	var items []memoItem
	if old != nil {
		if len(*old) >= memoSize {
			return
		}
		items = append(items, *old...)
	}
	items = append(items, memoItem{cmd: cmd, res: res, idx: idx})
	vd.memo.CompareAndSwap(old, &items) // a lost race only costs a slow check
}
