package ucan

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"strings"
	"time"

	// Registers did:key with go-did-it, which go-ucan resolves issuers with.
	_ "github.com/MetaMask/go-did-it/verifiers/did-key"
	"github.com/ipfs/go-cid"
	"github.com/ipld/go-ipld-prime"
	"github.com/ipld/go-ipld-prime/codec/dagcbor"
	"github.com/ipld/go-ipld-prime/datamodel"
	"github.com/multiformats/go-multihash"
	"github.com/ucan-wg/go-ucan/pkg/policy"
	"github.com/ucan-wg/go-ucan/pkg/policy/limits"
	"github.com/ucan-wg/go-ucan/token/delegation"
	"github.com/ucan-wg/go-ucan/token/invocation"

	"github.com/macula-io/macula/realm"
)

// Envelope facts this package insists on before go-ucan sees a token.
const (
	tagDelegation      = delegation.Tag // "ucan/dlg@1.0.0-rc.1"
	tagInvocation      = invocation.Tag // "ucan/inv@1.0.0-rc.1"
	tagDelegationFinal = "ucan/dlg@1.0.0"
	tagInvocationFinal = "ucan/inv@1.0.0"

	// tokenDepth bounds the nesting of a token: envelope, signature
	// payload, payload, policy, statements, and room for and/or/not.
	tokenDepth = 24
)

// ed25519Header is the varsig header of an Ed25519 signature over a DAG-CBOR
// payload: varsig 0x34, version 1, EdDSA 0xed, curve Ed25519 0xed, hash
// SHA2-512 0x13 (intrinsic to Ed25519), payload encoding DAG-CBOR 0x71. Every
// other header (other algorithms, a DAG-JSON or raw payload) is refused.
var ed25519Header = []byte{0x34, 0x01, 0xed, 0x01, 0xed, 0x01, 0x13, 0x71}

// contentID names a token by its content: SHA2-256 of the canonical DAG-CBOR
// encoding of its signature payload (the varsig header and the tagged
// payload), which is exactly the byte string its issuer signed. See the
// package documentation for why this, and not the envelope's CID.
type contentID [32]byte

// CID is the content ID as a CIDv1 (dag-cbor, sha2-256): the CID of the
// signature payload taken as an IPLD block.
func (id contentID) CID() cid.Cid {
	mh, _ := multihash.Encode(id[:], multihash.SHA2_256) // cannot fail for SHA2_256 and 32 bytes
	return cid.NewCidV1(cid.DagCBOR, mh)
}

func (id contentID) String() string { return id.CID().String() }

// token is a decoded, signature-checked token, as the validator uses it.
// Immutable after decodeToken, so it can be cached and shared.
type token struct {
	raw        []byte
	id         contentID
	envelope   cid.Cid // CID of the envelope bytes, which invocations cite in prf
	invocation bool

	iss, aud, sub string // did:key strings; sub "" is a powerline delegation, aud "" an invocation without aud
	cmd           Command
	nbf, exp      time.Time // zero when absent
	nonce         []byte

	// Delegations only.
	pol   policy.Policy
	rules rules

	// Invocations only.
	inv *invocation.Token
	prf []cid.Cid
	iat time.Time
}

// decodeToken runs a token through the checks of the package, then go-ucan.
// It never panics: go-ucan v1.1.0 panics on some tokens anyone can sign (see
// guardGoUCAN), which the checks before it keep away, and a recover turns
// anything else into ErrInternal.
func decodeToken(data []byte, maxSize int) (t *token, err error) {
	defer func() {
		if r := recover(); r != nil {
			t, err = nil, fmt.Errorf("%w: decoding token: %v", ErrInternal, r)
		}
	}()
	if len(data) > maxSize {
		return nil, refuse(ErrMalformed, "token of %d bytes is over the limit of %d", len(data), maxSize)
	}
	node, err := decodeCBOR(data, tokenDepth)
	if err != nil {
		return nil, refuse(ErrMalformed, "not DAG-CBOR: %v", err)
	}
	sig, sigPayload, tag, payload, err := envelopeParts(node)
	if err != nil {
		return nil, err
	}
	if err := checkInts(node, 0); err != nil {
		return nil, err
	}
	isInv := tag == tagInvocation
	iss, err := didField(payload, "iss", true, false)
	if err != nil {
		return nil, err
	}
	// aud: required in a delegation, optional in an invocation. sub:
	// required in an invocation; in a delegation absent or null means a
	// powerline delegation (go-ucan's schema takes only absent).
	if _, err := didField(payload, "aud", !isInv, false); err != nil {
		return nil, err
	}
	if _, err := didField(payload, "sub", isInv, !isInv); err != nil {
		return nil, err
	}
	canon, err := ipld.Encode(sigPayload, dagcbor.Encode)
	if err != nil {
		return nil, refuse(ErrMalformed, "signature payload: %v", err)
	}
	t = &token{raw: bytes.Clone(data), id: sha256.Sum256(canon), invocation: isInv}
	t.envelope, _ = cid.V1Builder{Codec: cid.DagCBOR, MhType: multihash.SHA2_256}.Sum(data)

	// go-ucan decodes the envelope again from the node, checks its schema,
	// and verifies the signature over the same canonical bytes.
	classify := func(err error) error {
		if !ed25519.Verify(iss, canon, sig) {
			return refuse(ErrBadSignature, "signature does not verify with the key of %s", t.issString(payload))
		}
		return refuse(ErrMalformed, "%v", err)
	}
	if isInv {
		inv, err := invocation.FromIPLD(node)
		if err != nil {
			return nil, classify(err)
		}
		t.fromInvocation(inv)
	} else {
		dlg, err := delegation.FromIPLD(node)
		if err != nil {
			return nil, classify(err)
		}
		t.fromDelegation(dlg)
	}
	return t, nil
}

func (t *token) issString(payload datamodel.Node) string {
	n, err := payload.LookupByString("iss")
	if err != nil {
		return "the issuer"
	}
	s, _ := n.AsString()
	return s
}

// envelopeParts checks the envelope's shape: [signature, {h, tag: payload}],
// a 64-byte signature, the Ed25519/DAG-CBOR varsig header and a tag we take.
func envelopeParts(node datamodel.Node) (sig []byte, sigPayload datamodel.Node, tag string, payload datamodel.Node, err error) {
	if node.Kind() != datamodel.Kind_List || node.Length() != 2 {
		return nil, nil, "", nil, refuse(ErrMalformed, "envelope is not a list of two")
	}
	sn, _ := node.LookupByIndex(0)
	if sig, err = sn.AsBytes(); err != nil {
		return nil, nil, "", nil, refuse(ErrMalformed, "signature is not a byte string")
	}
	if len(sig) != ed25519.SignatureSize {
		return nil, nil, "", nil, refuse(ErrBadSignature, "signature of %d bytes, an Ed25519 signature has %d", len(sig), ed25519.SignatureSize)
	}
	sigPayload, _ = node.LookupByIndex(1)
	if sigPayload.Kind() != datamodel.Kind_Map || sigPayload.Length() != 2 {
		return nil, nil, "", nil, refuse(ErrMalformed, "signature payload is not a map of two")
	}
	h, err := sigPayload.LookupByString("h")
	if err != nil {
		return nil, nil, "", nil, refuse(ErrMalformed, "no varsig header")
	}
	if hb, err := h.AsBytes(); err != nil || !bytes.Equal(hb, ed25519Header) {
		return nil, nil, "", nil, refuse(ErrMalformed, "varsig header %x: only Ed25519 signatures over DAG-CBOR are accepted", hb)
	}
	for it := sigPayload.MapIterator(); !it.Done(); {
		k, v, err := it.Next()
		if err != nil {
			return nil, nil, "", nil, refuse(ErrMalformed, "%v", err)
		}
		ks, _ := k.AsString()
		if ks != "h" {
			tag, payload = ks, v
		}
	}
	switch tag {
	case tagDelegation, tagInvocation:
	case tagDelegationFinal, tagInvocationFinal:
		return nil, nil, "", nil, refuse(ErrUnsupportedVersion, "tag %q: go-ucan v1.1.0 reads only the @1.0.0-rc.1 tags, and the tag is signed, so it cannot be rewritten", tag)
	default:
		return nil, nil, "", nil, refuse(ErrMalformed, "unknown tag %.40q", tag)
	}
	if payload.Kind() != datamodel.Kind_Map {
		return nil, nil, "", nil, refuse(ErrMalformed, "payload is not a map")
	}
	return sig, sigPayload, tag, payload, nil
}

// checkInts refuses integers outside the 53-bit range of the spec anywhere
// in the token. go-ucan v1.1.0 calls must.Int on policy values and
// invocation arguments, which panics on a CBOR integer above 2^63-1 (decoded
// as an unsigned node): this check is what keeps that panic unreachable.
func checkInts(n datamodel.Node, depth int) error {
	if depth > tokenDepth {
		return refuse(ErrMalformed, "nested too deep")
	}
	switch n.Kind() {
	case datamodel.Kind_Int:
		v, err := n.AsInt()
		if err != nil || v > limits.MaxInt53 || v < limits.MinInt53 {
			return refuse(ErrMalformed, "integer outside the 53-bit range")
		}
	case datamodel.Kind_List:
		for it := n.ListIterator(); !it.Done(); {
			_, v, err := it.Next()
			if err != nil {
				return refuse(ErrMalformed, "%v", err)
			}
			if err := checkInts(v, depth+1); err != nil {
				return err
			}
		}
	case datamodel.Kind_Map:
		for it := n.MapIterator(); !it.Done(); {
			_, v, err := it.Next()
			if err != nil {
				return refuse(ErrMalformed, "%v", err)
			}
			if err := checkInts(v, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// didField checks that a payload field holding a DID is an Ed25519 did:key,
// the only kind of principal a Macula realm has. This also keeps go-did-it's
// decoders for RSA and the NIST curves, and any DID method that resolves over
// the network, out of reach of untrusted input.
func didField(payload datamodel.Node, name string, required, nullable bool) (ed25519.PublicKey, error) {
	n, err := payload.LookupByString(name)
	if err != nil || n == nil {
		if required {
			return nil, refuse(ErrMalformed, "no %s", name)
		}
		return nil, nil
	}
	if n.IsNull() {
		if nullable || !required {
			return nil, nil
		}
		return nil, refuse(ErrMalformed, "%s is null", name)
	}
	s, err := n.AsString()
	if err != nil {
		return nil, refuse(ErrMalformed, "%s is not a string", name)
	}
	pub, err := realm.ParseDIDKey(s)
	if err != nil {
		return nil, refuse(ErrMalformed, "%s: only Ed25519 did:key principals are accepted: %v", name, err)
	}
	return pub, nil
}

func (t *token) fromDelegation(d *delegation.Token) {
	t.iss = d.Issuer().String()
	t.aud = d.Audience().String()
	if s := d.Subject(); s != nil { // nil for a powerline delegation
		t.sub = s.String()
	}
	t.cmd = Command(d.Command().String())
	t.pol = d.Policy()
	t.rules = interpret(t.pol)
	t.nonce = d.Nonce()
	if nbf := d.NotBefore(); nbf != nil {
		t.nbf = *nbf
	}
	if exp := d.Expiration(); exp != nil {
		t.exp = *exp
	}
}

func (t *token) fromInvocation(i *invocation.Token) {
	t.inv = i
	t.iss = i.Issuer().String()
	t.sub = i.Subject().String()
	if a := i.Audience(); a != nil {
		t.aud = a.String()
	}
	t.cmd = Command(i.Command().String())
	t.nonce = i.Nonce()
	t.prf = i.Proof()
	if exp := i.Expiration(); exp != nil {
		t.exp = *exp
	}
	if iat := i.IssuedAt(); iat != nil {
		t.iat = *iat
	}
}

// executor is the principal an invocation asks to run it: its audience, or
// its subject when it has none.
func (t *token) executor() string {
	if t.aud != "" {
		return t.aud
	}
	return t.sub
}

// rules is a delegation's policy as Macula reads it.
type rules struct {
	// resource is the pattern the .resource statements allow (their
	// intersection); "" when the policy says nothing about the resource.
	resource string
	// name is the node name a membership grant binds ("" for none).
	name string
	// bad is why the policy cannot be honoured (conflicting or invalid
	// statements); nil when it can.
	bad error
	// other holds the statements on invocation arguments that this package
	// does not interpret; go-ucan evaluates them against an invocation's
	// arguments, and a chain presented without an invocation cannot
	// satisfy them.
	other policy.Policy
}

// interpret splits a policy into the statements Macula understands and the
// rest:
//
//	["like", ".resource", PATTERN]  the resource must match PATTERN, segment-aware
//	["==",   ".resource", NAME]     the resource must be NAME (no wildcards)
//	["==",   ".name",     NAME]     membership binds the node name NAME
//
// The like glob of the spec ("*" any run of characters) is NOT used for
// .resource: Macula's patterns are segment-aware, so "io.acme.orders.*"
// matches "io.acme.orders.placed" and not "io.acme.orders.placed.eu".
func interpret(p policy.Policy) rules {
	var r rules
	for _, st := range p {
		op, sel, val, ok := statementParts(st)
		switch {
		case ok && sel == ".resource" && (op == policy.KindLike || op == policy.KindEqual):
			if op == policy.KindEqual && strings.ContainsAny(val, "*>") {
				r.bad = fmt.Errorf("== .resource %q: a name, not a pattern, is expected", val)
				continue
			}
			if _, err := parsePattern(val); err != nil {
				r.bad = err
				continue
			}
			if r.resource == "" {
				r.resource = val
			} else if i, ok := intersect(r.resource, val); ok {
				r.resource = i
			} else {
				r.bad = fmt.Errorf("resource patterns %q and %q have no name in common", r.resource, val)
			}
		case ok && sel == ".name" && op == policy.KindEqual:
			if err := realm.ValidateNodeName(val); err != nil {
				r.bad = err
			} else if r.name != "" && r.name != val {
				r.bad = fmt.Errorf("two names bound: %q and %q", r.name, val)
			}
			r.name = val
		default:
			r.other = append(r.other, st)
		}
	}
	return r
}

// statementParts returns (op, selector, string value) of a three-part
// statement whose value is a string.
func statementParts(st policy.Statement) (op, sel, val string, ok bool) {
	n, err := policy.Policy{st}.ToIPLD()
	if err != nil || n.Length() != 1 {
		return "", "", "", false
	}
	s, _ := n.LookupByIndex(0)
	if s == nil || s.Kind() != datamodel.Kind_List || s.Length() != 3 {
		return "", "", "", false
	}
	get := func(i int64) (string, bool) {
		x, err := s.LookupByIndex(i)
		if err != nil {
			return "", false
		}
		v, err := x.AsString()
		return v, err == nil
	}
	var ok1, ok2, ok3 bool
	op, ok1 = get(0)
	sel, ok2 = get(1)
	val, ok3 = get(2)
	return op, sel, val, ok1 && ok2 && ok3
}
