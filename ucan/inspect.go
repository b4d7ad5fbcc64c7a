package ucan

import (
	"encoding/hex"
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
// Validate's job. It never panics.
func Inspect(data []byte) (out string, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = "", fmt.Errorf("%w: inspecting: %v", ErrInternal, r)
		}
	}()
	chain, err := ParseChain(data)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if len(chain) == 1 {
		b.WriteString("1 token\n")
	} else {
		fmt.Fprintf(&b, "chain of %d tokens, root first\n", len(chain))
	}
	toks := make([]*token, len(chain))
	for i, raw := range chain {
		fmt.Fprintf(&b, "\n[%d] ", i)
		t, err := decodeToken(raw, maxContainerBytes)
		if err != nil {
			fmt.Fprintf(&b, "undecodable (%d bytes): %v\n", len(raw), err)
			continue
		}
		toks[i] = t
		describe(&b, t)
	}
	if len(chain) > 1 {
		b.WriteString("\nchain:\n")
		describeLinks(&b, toks)
	}
	return b.String(), nil
}

func describe(b *strings.Builder, t *token) {
	line := func(label, format string, args ...any) {
		fmt.Fprintf(b, "    %-13s %s\n", label, fmt.Sprintf(format, args...))
	}
	switch {
	case t.invocation && t.cmd == revokeCommand:
		b.WriteString("revocation record (an invocation, " + tagInvocation + ")\n")
	case t.invocation:
		b.WriteString("invocation (" + tagInvocation + ")\n")
	default:
		b.WriteString("delegation (" + tagDelegation + ")\n")
	}
	line("content id", "%s", t.id)
	line("envelope cid", "%s", t.envelope)
	line("issuer", "%s", t.iss)
	switch {
	case t.invocation && t.aud == "":
		line("executor", "%s (the subject)", t.sub)
	case t.invocation:
		line("executor", "%s", t.aud)
	default:
		line("audience", "%s", t.aud)
	}
	switch {
	case t.sub == "":
		line("subject", "none (powerline delegation: any subject)")
	case !t.invocation && t.sub == t.iss:
		line("subject", "%s (root delegation)", t.sub)
	default:
		line("subject", "%s", t.sub)
	}
	line("command", "%s", t.cmd)
	if !t.invocation {
		line("policy", "%s", strings.ReplaceAll(t.pol.String(), "\n", "\n                  "))
		res := t.rules.resource
		if res == "" {
			res = "> (any name of the realm)"
		}
		line("resource", "%s", res)
		if t.rules.name != "" {
			line("node name", "%s", t.rules.name)
		}
		if len(t.rules.other) > 0 {
			line("arguments", "constrained by %d statement(s): needs an invocation", len(t.rules.other))
		}
		if t.rules.bad != nil {
			line("problem", "%v", t.rules.bad)
		}
		line("not before", "%s", when(t.nbf, "-"))
	} else {
		if args, err := t.inv.Arguments().ToIPLD(); err == nil {
			if j, err := ipld.Encode(args, dagjson.Encode); err == nil {
				line("arguments", "%s", j)
			}
		}
		for i, p := range t.prf {
			line(fmt.Sprintf("proof %d", i), "%s", p)
		}
		line("issued at", "%s", when(t.iat, "-"))
	}
	line("expires", "%s", when(t.exp, "never"))
	line("nonce", "%s", hex.EncodeToString(t.nonce))
	b.WriteString("    signature     verified (Ed25519, issuer's key)\n")
}

func describeLinks(b *strings.Builder, toks []*token) {
	mark := func(ok bool, format string, args ...any) {
		m := "ok  "
		if !ok {
			m = "FAIL"
		}
		fmt.Fprintf(b, "    %s %s\n", m, fmt.Sprintf(format, args...))
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
			return
		}
		cmd = t.cmd
		if t.rules.resource != "" && ok {
			res, ok = intersect(res, t.rules.resource)
		}
	}
	if !ok {
		fmt.Fprintf(b, "    effective: nothing (the patterns have no name in common)\n")
		return
	}
	fmt.Fprintf(b, "    effective: %s on %s, held by %s\n", cmd, res, toks[len(toks)-1].aud)
}

func when(t time.Time, none string) string {
	if t.IsZero() {
		return none
	}
	return t.UTC().Format(time.RFC3339)
}
