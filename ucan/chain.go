package ucan

import (
	"bytes"
	"encoding/base64"
	"strings"

	"github.com/ipld/go-ipld-prime"
	"github.com/ipld/go-ipld-prime/codec/dagcbor"
	"github.com/ipld/go-ipld-prime/datamodel"
	"github.com/ipld/go-ipld-prime/fluent/qp"
	"github.com/ipld/go-ipld-prime/node/basicnode"
)

// Chain is a delegation chain: sealed tokens (DAG-CBOR envelopes), root
// first, each delegating to the issuer of the next; the last one names the
// principal that holds the chain. This is the order of the UCAN 1.0 spec, its
// fixtures and iso-ucan (go-ucan v1.1.0 lists an invocation's proofs leaf
// first; for one proof the two agree).
type Chain [][]byte

// Limits of the container formats, checked before anything is decoded.
const (
	// maxContainerItems bounds the tokens of one encoded chain and the
	// chains of one presentation, whatever the Config says.
	maxContainerItems = 64
	// maxContainerBytes bounds an encoded chain or presentation.
	maxContainerBytes = 1 << 20
)

// Leaf returns the last token, the one delegating to the chain's holder, or
// nil for an empty chain.
func (c Chain) Leaf() []byte {
	if len(c) == 0 {
		return nil
	}
	return c[len(c)-1]
}

// MarshalBinary encodes the chain as a DAG-CBOR list of byte strings.
func (c Chain) MarshalBinary() ([]byte, error) {
	n, err := qp.BuildList(basicnode.Prototype.Any, int64(len(c)), func(la datamodel.ListAssembler) {
		for _, t := range c {
			qp.ListEntry(la, qp.Bytes(t))
		}
	})
	if err != nil {
		return nil, err
	}
	return ipld.Encode(n, dagcbor.Encode)
}

// String is the text form of the chain, for files, flags and HTTP headers:
// unpadded base64url of MarshalBinary. ParseChain reads it back.
func (c Chain) String() string {
	b, err := c.MarshalBinary()
	if err != nil {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// ParseChain reads a chain in any of the forms a person may hold: the binary
// form of MarshalBinary, a single sealed token (a chain of one), or the text
// of either in base64 (standard or URL alphabet, padded or not; surrounding
// white space is ignored). It checks the container only; Validate checks the
// tokens.
func ParseChain(data []byte) (Chain, error) {
	if len(data) > maxContainerBytes*2 {
		return nil, refuse(ErrMalformed, "chain of %d bytes is over the limit", len(data))
	}
	if len(data) > 0 && data[0]&0xe0 == 0x80 { // a CBOR array
		if c, err := parseChainBinary(data); err == nil {
			return c, nil
		}
	}
	raw, err := decodeBase64(strings.TrimSpace(string(data)))
	if err != nil {
		return nil, refuse(ErrMalformed, "not a chain, a token, nor base64 of one")
	}
	return parseChainBinary(raw)
}

func decodeBase64(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	if strings.ContainsAny(s, "-_") {
		return base64.RawURLEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}

// parseChainBinary reads a list of byte strings, or a single token: a list
// whose second element is a map (the envelope's signature payload).
func parseChainBinary(data []byte) (Chain, error) {
	// A token nests deeper than a chain; allow for one.
	n, err := decodeCBOR(data, tokenDepth)
	if err != nil {
		return nil, refuse(ErrMalformed, "chain: %v", err)
	}
	if n.Kind() != datamodel.Kind_List {
		return nil, refuse(ErrMalformed, "chain: not a list")
	}
	if n.Length() == 2 {
		if second, _ := n.LookupByIndex(1); second != nil && second.Kind() == datamodel.Kind_Map {
			return Chain{bytes.Clone(data)}, nil
		}
	}
	if n.Length() > maxContainerItems {
		return nil, refuse(ErrMalformed, "chain of %d tokens is over the limit of %d", n.Length(), maxContainerItems)
	}
	var c Chain
	for it := n.ListIterator(); !it.Done(); {
		_, v, err := it.Next()
		if err != nil {
			return nil, refuse(ErrMalformed, "chain: %v", err)
		}
		b, err := v.AsBytes()
		if err != nil {
			return nil, refuse(ErrMalformed, "chain: element is not a byte string")
		}
		c = append(c, b)
	}
	return c, nil
}

// MarshalChains encodes the chains a node presents on a connection: a
// DAG-CBOR list of lists of byte strings.
func MarshalChains(chains []Chain) ([]byte, error) {
	n, err := qp.BuildList(basicnode.Prototype.Any, int64(len(chains)), func(la datamodel.ListAssembler) {
		for _, c := range chains {
			qp.ListEntry(la, qp.List(int64(len(c)), func(la datamodel.ListAssembler) {
				for _, t := range c {
					qp.ListEntry(la, qp.Bytes(t))
				}
			}))
		}
	})
	if err != nil {
		return nil, err
	}
	return ipld.Encode(n, dagcbor.Encode)
}

// UnmarshalChains decodes MarshalChains, checking sizes before it decodes.
func UnmarshalChains(data []byte) ([]Chain, error) {
	if len(data) > maxContainerBytes {
		return nil, refuse(ErrMalformed, "presentation of %d bytes is over the limit of %d", len(data), maxContainerBytes)
	}
	n, err := decodeCBOR(data, 4)
	if err != nil {
		return nil, refuse(ErrMalformed, "presentation: %v", err)
	}
	if n.Kind() != datamodel.Kind_List || n.Length() > maxContainerItems {
		return nil, refuse(ErrMalformed, "presentation: want a list of at most %d chains", maxContainerItems)
	}
	var out []Chain
	for it := n.ListIterator(); !it.Done(); {
		_, cn, err := it.Next()
		if err != nil {
			return nil, refuse(ErrMalformed, "presentation: %v", err)
		}
		if cn.Kind() != datamodel.Kind_List || cn.Length() > maxContainerItems {
			return nil, refuse(ErrMalformed, "presentation: chain %d is not a list of at most %d tokens", len(out), maxContainerItems)
		}
		var c Chain
		for it2 := cn.ListIterator(); !it2.Done(); {
			_, v, err := it2.Next()
			if err != nil {
				return nil, refuse(ErrMalformed, "presentation: %v", err)
			}
			b, err := v.AsBytes()
			if err != nil {
				return nil, refuse(ErrMalformed, "presentation: chain %d has an element that is not a byte string", len(out))
			}
			c = append(c, b)
		}
		out = append(out, c)
	}
	return out, nil
}

// decodeCBOR decodes strict DAG-CBOR (no trailing bytes, minimal encodings)
// with a nesting limit and an allocation budget proportional to the input.
func decodeCBOR(data []byte, maxDepth int64) (datamodel.Node, error) {
	opts := dagcbor.DecodeOptions{
		AllowLinks:       true,
		MaxDepth:         maxDepth,
		AllocationBudget: int64(len(data))*16 + 4096,
	}
	nb := basicnode.Prototype.Any.NewBuilder()
	if err := opts.Decode(nb, bytes.NewReader(data)); err != nil {
		return nil, err
	}
	return nb.Build(), nil
}

// Holder returns the did:key of the principal that holds the chain: the
// audience of its last delegation, which is the peer that may present it.
// It decodes that token only (its form and signature); Validate checks the
// chain.
func (c Chain) Holder() (string, error) {
	leaf := c.Leaf()
	if leaf == nil {
		return "", refuse(ErrMalformed, "empty chain")
	}
	t, err := decodeToken(leaf, maxContainerBytes)
	if err != nil {
		return "", err
	}
	if t.invocation {
		return "", refuse(ErrMalformed, "the last token is an invocation, not a delegation")
	}
	return t.aud, nil
}
