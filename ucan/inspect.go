package ucan

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/ipld/go-ipld-prime"
	"github.com/ipld/go-ipld-prime/codec/dagjson"
)

// Inspect describes a token or a chain for people: each token's kind,
// principals, command, policy (and the resource pattern Macula reads in it),
// validity window, content ID and envelope CID, then whether the tokens
// link up as a chain. data is anything ParseChain reads (a token, a chain,
// or their base64 text). It checks signatures (a token whose signature fails
// is reported as such) but not time, the realm or revocations: that is
// Validate's job. It never panics. Describe gives the same as data.
func Inspect(data []byte) (string, error) {
	d, err := Describe(data)
	if err != nil {
		return "", err
	}
	return d.String(), nil
}

// Description is what Describe reads in a token or chain; its JSON form is
// what macula-node ucan inspect --json prints.
type Description struct {
	Tokens []TokenDescription `json:"tokens"` // root first
	// Checks are the links of a chain of more than one token, in order.
	Checks []ChainCheck `json:"checks,omitempty"`
	// Effective is what a chain of more than one token grants, when every
	// token decoded; Nothing says that its patterns have no name in common.
	Effective *EffectiveGrant `json:"effective,omitempty"`
}

// TokenDescription is one token of a Description. Times are omitted when
// the token has none.
type TokenDescription struct {
	Index int `json:"index"`
	// Kind is "delegation", "invocation", "revocation" (a revocation
	// record) or "undecodable" (Error says why; Size is its length).
	Kind        string `json:"kind"`
	Error       string `json:"error,omitempty"`
	Size        int    `json:"size,omitempty"`
	ContentID   string `json:"content_id,omitempty"`
	EnvelopeCID string `json:"envelope_cid,omitempty"`
	Issuer      string `json:"issuer,omitempty"`
	// Audience of a delegation; Executor of an invocation (its subject
	// when it names no audience).
	Audience string `json:"audience,omitempty"`
	Executor string `json:"executor,omitempty"`
	// Subject is "" for a powerline delegation (any subject); Root says
	// the issuer is the subject.
	Subject string `json:"subject,omitempty"`
	Root    bool   `json:"root,omitempty"`
	Command string `json:"command,omitempty"`
	// Delegations: the policy, the resource pattern Macula reads in it
	// ("" for any name of the realm), the node name it binds, how many
	// statements constrain the arguments, and a problem with its rules.
	Policy          string `json:"policy,omitempty"`
	Resource        string `json:"resource,omitempty"`
	NodeName        string `json:"node_name,omitempty"`
	ArgsConstrained int    `json:"args_constrained,omitempty"`
	Problem         string `json:"problem,omitempty"`
	// Invocations: the arguments (DAG-JSON) and the proofs' CIDs.
	Arguments json.RawMessage `json:"arguments,omitempty"`
	Proofs    []string        `json:"proofs,omitempty"`
	NotBefore *time.Time      `json:"not_before,omitempty"`
	IssuedAt  *time.Time      `json:"issued_at,omitempty"`
	Expires   *time.Time      `json:"expires,omitempty"`
	Nonce     string          `json:"nonce,omitempty"` // hex
	// SignatureVerified is true for every token that decoded: one whose
	// signature fails does not decode.
	SignatureVerified bool `json:"signature_verified"`
}

// ChainCheck is one check of how a chain's tokens link up.
type ChainCheck struct {
	OK    bool   `json:"ok"`
	Check string `json:"check"`
}

// EffectiveGrant is what a whole chain grants.
type EffectiveGrant struct {
	Command  string `json:"command"`
	Resource string `json:"resource,omitempty"`
	Holder   string `json:"holder,omitempty"`
	Nothing  bool   `json:"nothing,omitempty"`
}

// Describe reads a token or a chain as Inspect does, and returns it as data.
func Describe(data []byte) (d *Description, err error) {
	defer func() {
		if r := recover(); r != nil {
			d, err = nil, fmt.Errorf("%w: inspecting: %v", ErrInternal, r)
		}
	}()
	chain, err := ParseChain(data)
	if err != nil {
		return nil, err
	}
	d = &Description{}
	toks := make([]*token, len(chain))
	for i, raw := range chain {
		t, err := decodeToken(raw, maxContainerBytes)
		if err != nil {
			d.Tokens = append(d.Tokens, TokenDescription{Index: i, Kind: "undecodable", Error: err.Error(), Size: len(raw)})
			continue
		}
		toks[i] = t
		d.Tokens = append(d.Tokens, describeToken(i, t))
	}
	if len(chain) > 1 {
		d.Checks, d.Effective = checkLinks(toks)
	}
	return d, nil
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func describeToken(i int, t *token) TokenDescription {
	td := TokenDescription{
		Index: i, Kind: "delegation", ContentID: t.id.String(), EnvelopeCID: t.envelope.String(), Issuer: t.iss,
		Subject: t.sub, Command: string(t.cmd), Expires: timePtr(t.exp), Nonce: hex.EncodeToString(t.nonce),
		SignatureVerified: true,
	}
	switch {
	case t.invocation && t.cmd == revokeCommand:
		td.Kind = "revocation"
	case t.invocation:
		td.Kind = "invocation"
	}
	if t.invocation {
		td.Executor = t.aud
		if t.aud == "" {
			td.Executor = t.sub
		}
		if args, err := t.inv.Arguments().ToIPLD(); err == nil {
			if j, err := ipld.Encode(args, dagjson.Encode); err == nil {
				td.Arguments = j
			}
		}
		for _, p := range t.prf {
			td.Proofs = append(td.Proofs, p.String())
		}
		td.IssuedAt = timePtr(t.iat)
		return td
	}
	td.Audience = t.aud
	td.Root = t.sub != "" && t.sub == t.iss
	td.Policy = t.pol.String()
	td.Resource = t.rules.resource
	td.NodeName = t.rules.name
	td.ArgsConstrained = len(t.rules.other)
	if t.rules.bad != nil {
		td.Problem = t.rules.bad.Error()
	}
	td.NotBefore = timePtr(t.nbf)
	return td
}

// String is the description for people, as Inspect prints it.
func (d *Description) String() string {
	var b strings.Builder
	if len(d.Tokens) == 1 {
		b.WriteString("1 token\n")
	} else {
		fmt.Fprintf(&b, "chain of %d tokens, root first\n", len(d.Tokens))
	}
	for _, td := range d.Tokens {
		fmt.Fprintf(&b, "\n[%d] ", td.Index)
		if td.Kind == "undecodable" {
			fmt.Fprintf(&b, "undecodable (%d bytes): %s\n", td.Size, td.Error)
			continue
		}
		td.write(&b)
	}
	if len(d.Tokens) > 1 {
		b.WriteString("\nchain:\n")
		for _, c := range d.Checks {
			m := "ok  "
			if !c.OK {
				m = "FAIL"
			}
			fmt.Fprintf(&b, "    %s %s\n", m, c.Check)
		}
		switch e := d.Effective; {
		case e == nil:
		case e.Nothing:
			fmt.Fprintf(&b, "    effective: nothing (the patterns have no name in common)\n")
		default:
			fmt.Fprintf(&b, "    effective: %s on %s, held by %s\n", e.Command, e.Resource, e.Holder)
		}
	}
	return b.String()
}

func (td *TokenDescription) write(b *strings.Builder) {
	line := func(label, format string, args ...any) {
		fmt.Fprintf(b, "    %-13s %s\n", label, fmt.Sprintf(format, args...))
	}
	invocation := td.Kind != "delegation"
	switch td.Kind {
	case "revocation":
		b.WriteString("revocation record (an invocation, " + tagInvocation + ")\n")
	case "invocation":
		b.WriteString("invocation (" + tagInvocation + ")\n")
	default:
		b.WriteString("delegation (" + tagDelegation + ")\n")
	}
	line("content id", "%s", td.ContentID)
	line("envelope cid", "%s", td.EnvelopeCID)
	line("issuer", "%s", td.Issuer)
	switch {
	case invocation && td.Executor == td.Subject:
		line("executor", "%s (the subject)", td.Executor)
	case invocation:
		line("executor", "%s", td.Executor)
	default:
		line("audience", "%s", td.Audience)
	}
	switch {
	case td.Subject == "":
		line("subject", "none (powerline delegation: any subject)")
	case td.Root:
		line("subject", "%s (root delegation)", td.Subject)
	default:
		line("subject", "%s", td.Subject)
	}
	line("command", "%s", td.Command)
	if !invocation {
		line("policy", "%s", strings.ReplaceAll(td.Policy, "\n", "\n                  "))
		res := td.Resource
		if res == "" {
			res = "> (any name of the realm)"
		}
		line("resource", "%s", res)
		if td.NodeName != "" {
			line("node name", "%s", td.NodeName)
		}
		if td.ArgsConstrained > 0 {
			line("arguments", "constrained by %d statement(s): needs an invocation", td.ArgsConstrained)
		}
		if td.Problem != "" {
			line("problem", "%s", td.Problem)
		}
		line("not before", "%s", when(td.NotBefore, "-"))
	} else {
		if len(td.Arguments) > 0 {
			line("arguments", "%s", td.Arguments)
		}
		for i, p := range td.Proofs {
			line(fmt.Sprintf("proof %d", i), "%s", p)
		}
		line("issued at", "%s", when(td.IssuedAt, "-"))
	}
	line("expires", "%s", when(td.Expires, "never"))
	line("nonce", "%s", td.Nonce)
	b.WriteString("    signature     verified (Ed25519, issuer's key)\n")
}

// checkLinks checks how the tokens of a chain link up, and what the chain
// grants when every token decoded.
func checkLinks(toks []*token) ([]ChainCheck, *EffectiveGrant) {
	var out []ChainCheck
	mark := func(ok bool, format string, args ...any) {
		out = append(out, ChainCheck{OK: ok, Check: fmt.Sprintf(format, args...)})
	}
	if toks[0] != nil {
		mark(toks[0].sub != "" && toks[0].iss == toks[0].sub, "[0] is a root delegation (issuer = subject %s)", toks[0].iss)
	}
	for i := 1; i < len(toks); i++ {
		p, t := toks[i-1], toks[i]
		if p == nil || t == nil {
			mark(false, "[%d] cannot be checked against [%d]", i, i-1)
			continue
		}
		mark(p.aud == t.iss, "[%d] is issued by the audience of [%d]", i, i-1)
		if toks[0] != nil {
			mark(t.sub == "" || t.sub == toks[0].sub, "[%d] has the subject of the root", i)
		}
		mark(p.cmd.Covers(t.cmd), "[%d] command %s is within %s", i, t.cmd, p.cmd)
	}
	res, ok, cmd := ">", true, Command("")
	for _, t := range toks {
		if t == nil {
			return out, nil
		}
		cmd = t.cmd
		if t.rules.resource != "" && ok {
			res, ok = intersect(res, t.rules.resource)
		}
	}
	if !ok {
		return out, &EffectiveGrant{Command: string(cmd), Nothing: true}
	}
	return out, &EffectiveGrant{Command: string(cmd), Resource: res, Holder: toks[len(toks)-1].aud}
}

func when(t *time.Time, none string) string {
	if t == nil {
		return none
	}
	return t.UTC().Format(time.RFC3339)
}
