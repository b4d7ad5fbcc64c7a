package ucan

import (
	"crypto/ed25519"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/ipld/go-ipld-prime"
	"github.com/ipld/go-ipld-prime/codec/dagcbor"
	"github.com/ipld/go-ipld-prime/datamodel"
	"github.com/ipld/go-ipld-prime/node/basicnode"
	"github.com/ucan-wg/go-ucan/token/delegation"
)

// fuzzT0 is the fuzz target's fixed clock.
var fuzzT0 = time.Unix(1_900_000_000, 0)

// fuzzKeys are the principals a generated chain draws from: the authority,
// three others, and the node presenting the chain.
var (
	fuzzAuth = seedKey("authority")
	fuzzKeys = []ed25519.PrivateKey{fuzzAuth, keyA, keyB, keyX, keyNode}
)

// gen reads choices from fuzz input; past its end every choice is 0.
type gen struct{ data []byte }

func (g *gen) next() int {
	if len(g.data) == 0 {
		return 0
	}
	b := g.data[0]
	g.data = g.data[1:]
	return int(b)
}

func (g *gen) pick(n int) int { return g.next() % n }

// chain generates a well-formed token chain (each token a valid envelope,
// most signed by their issuer) from the input, plus a command and resource
// to check against it.
func (g *gen) chain(t *testing.T) (Chain, Command, string) {
	cmds := []string{"/macula", "/macula/call", "/macula/publish", "/", "/other", "/macula/call/x", "/macula/member"}
	patterns := []string{orders, "io.acme.>", "io.other.*", "io.acme.*.place", ">", "io.acme.orders.place", "bad..pattern", "*.*.>"}
	offsets := []time.Duration{0, -2 * time.Hour, -61 * time.Second, -59 * time.Second, 59 * time.Second, 61 * time.Second, time.Hour}
	n := 1 + g.pick(5)
	var c Chain
	prev := 0 // issuer index of the next token: the authority first
	if g.pick(6) == 5 {
		prev = 3 // a stranger's root
	}
	for i := 0; i < n; i++ {
		iss := prev
		if g.pick(6) == 5 {
			iss = g.pick(len(fuzzKeys))
		}
		aud := 4 // the node
		if i < n-1 || g.pick(5) == 4 {
			aud = g.pick(len(fuzzKeys))
		}
		rt := rawToken{iss: KeyDID(fuzzKeys[iss]), aud: KeyDID(fuzzKeys[aud]), cmd: cmds[g.pick(len(cmds))]}
		switch g.pick(8) {
		case 6:
			// powerline: no subject
		case 7:
			rt.sub = KeyDID(fuzzKeys[g.pick(len(fuzzKeys))])
		default:
			rt.sub = KeyDID(fuzzAuth)
		}
		var stmts []datamodel.Node
		for k := g.pick(3); k > 0; k-- {
			switch g.pick(6) {
			case 0, 1, 2:
				stmts = append(stmts, statement("like", ".resource", basicnode.NewString(patterns[g.pick(len(patterns))])))
			case 3:
				stmts = append(stmts, statement("==", ".name", basicnode.NewString("worker-1")))
			case 4:
				stmts = append(stmts, statement("==", ".x", basicnode.NewInt(int64(g.next()))))
			case 5:
				stmts = append(stmts, statement("==", ".x", basicnode.NewUint(uint64(1)<<63+uint64(g.next()))))
			}
		}
		if len(stmts) > 0 {
			rt.pol = policyOf(stmts...)
		}
		if o := offsets[g.pick(len(offsets))]; o != 0 {
			rt.exp = fuzzT0.Add(o).Unix()
		}
		if o := offsets[g.pick(len(offsets))]; o != 0 && g.pick(3) == 0 {
			rt.nbf = fuzzT0.Add(o).Unix()
		}
		if g.pick(10) == 9 {
			rt.tag = tagDelegationFinal
		}
		if g.pick(12) == 11 {
			rt.header = []byte{0x34, 0x01, 0xed, 0x01, 0xed, 0x01, 0x13, 0x5f}
		}
		signer := fuzzKeys[iss]
		if g.pick(8) == 7 {
			signer = fuzzKeys[g.pick(len(fuzzKeys))]
		}
		tok := rt.seal(t, signer)
		if g.pick(10) == 9 && len(tok) > 0 {
			tok[g.next()*7%len(tok)] ^= byte(1 + g.next())
		}
		c = append(c, tok)
		prev = aud
	}
	cmd := Command(cmds[g.pick(len(cmds))])
	res := []string{place, "io.acme.orders.place.eu", "io.acme.billing.x", "io.other.a"}[g.pick(4)]
	return c, cmd, res
}

// FuzzValidate feeds arbitrary bytes (as a token, a chain, a presentation,
// an invocation, a revocation) and arbitrary well-formed chains to the
// validator. It checks that nothing panics, that no panic even had to be
// recovered (ErrInternal), and that every accepted verdict rests on chains
// rooted at the authority whose signatures verify.
func FuzzValidate(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Add([]byte{2, 0, 0, 2, 4, 2, 0, 0, 6, 6, 0, 0, 0, 0, 1, 2, 2, 0, 0, 0, 1, 0})
	f.Add([]byte("\x82\x58\x40"))
	f.Add([]byte{0x81, 0x81, 0x41, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := New(Config{
			Realm: testRealmName, Authority: KeyDID(fuzzAuth), Self: didSelf,
			Now: func() time.Time { return fuzzT0 }, MaxChain: 4,
			Logger: slog.New(slog.DiscardHandler),
		})
		if err != nil {
			t.Fatal(err)
		}
		// Arbitrary bytes through every entry point.
		vd, err := v.Validate(ctxBg, didNode, []Chain{{data}})
		sound(t, vd, err, []Chain{{data}})
		if chains, err := UnmarshalChains(data); err == nil {
			vd, err := v.Validate(ctxBg, didNode, chains)
			sound(t, vd, err, chains)
		}
		if c, err := ParseChain(data); err == nil {
			vd, err := v.Validate(ctxBg, didNode, []Chain{c})
			sound(t, vd, err, []Chain{c})
		}
		_, err = v.ValidateInvocation(ctxBg, data, nil, "", "")
		notInternal(t, err)
		notInternal(t, v.AddRevocation(data))
		_, err = Inspect(data)
		notInternal(t, err)

		// A generated well-formed chain.
		g := &gen{data: data}
		c, cmd, res := g.chain(t)
		vd, err = v.Validate(ctxBg, didNode, []Chain{c})
		sound(t, vd, err, []Chain{c})
		if err == nil {
			notInternal(t, Check(vd, cmd, res))
			_ = vd.Grant()
		}
		_, err = Inspect([]byte(c.String()))
		notInternal(t, err)
	})
}

// TestFuzzGeneratorAccepts makes sure the generator reaches acceptance:
// with no input it builds a valid root delegation to the node, and a few
// inputs give longer valid chains.
func TestFuzzGeneratorAccepts(t *testing.T) {
	v, err := New(Config{Realm: testRealmName, Authority: KeyDID(fuzzAuth), Now: func() time.Time { return fuzzT0 }, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	accepted := 0
	for i := 0; i < 300; i++ {
		in := []byte{byte(i % 5), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, byte(i)}
		if i == 0 {
			in = nil
		}
		c, _, _ := (&gen{data: in}).chain(t)
		vd, err := v.Validate(ctxBg, didNode, []Chain{c})
		sound(t, vd, err, []Chain{c})
		if err == nil {
			accepted++
		} else if i == 0 {
			t.Fatalf("empty input: %v", err)
		}
	}
	t.Logf("%d of 300 generated chains accepted", accepted)
}

func notInternal(t *testing.T, err error) {
	t.Helper()
	if errors.Is(err, ErrInternal) {
		t.Fatalf("a panic was recovered: %v", err)
	}
}

// sound checks the invariant of an accepted verdict, independently of the
// validator: every chain starts with a root delegation issued by the
// authority about itself, links up, ends at the node, and every signature
// verifies (by go-ucan, and by plain Ed25519 over the canonical payload).
func sound(t *testing.T, vd *Verdict, err error, chains []Chain) {
	t.Helper()
	notInternal(t, err)
	if err != nil {
		return
	}
	if vd == nil || len(vd.entries) != len(chains) {
		t.Fatal("accepted without a verdict for every chain")
	}
	auth := KeyDID(fuzzAuth)
	for _, c := range chains {
		if len(c) == 0 {
			t.Fatal("accepted an empty chain")
		}
		var prevAud string
		for i, raw := range c {
			d, err := delegation.FromDagCbor(raw)
			if err != nil {
				t.Fatalf("accepted token %d that go-ucan refuses: %v", i, err)
			}
			if !signatureVerifies(t, raw, d.Issuer().String()) {
				t.Fatalf("accepted token %d whose signature does not verify", i)
			}
			if i == 0 && (d.Issuer().String() != auth || d.Subject() == nil || d.Subject().String() != auth) {
				t.Fatalf("accepted a chain not rooted at the authority: %s", d.Issuer())
			}
			if i > 0 && d.Issuer().String() != prevAud {
				t.Fatal("accepted a broken chain")
			}
			prevAud = d.Audience().String()
		}
		if prevAud != didNode {
			t.Fatal("accepted a chain for another node")
		}
	}
}

func signatureVerifies(t *testing.T, raw []byte, iss string) bool {
	n, err := ipld.Decode(raw, dagcbor.Decode)
	if err != nil {
		return false
	}
	sn, _ := n.LookupByIndex(0)
	sig, _ := sn.AsBytes()
	sp, _ := n.LookupByIndex(1)
	canon, err := ipld.Encode(sp, dagcbor.Encode)
	if err != nil {
		return false
	}
	pub, err := ed25519PublicOf(iss)
	return err == nil && len(sig) == ed25519.SignatureSize && ed25519.Verify(pub, canon, sig)
}
