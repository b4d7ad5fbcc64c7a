package realm

import (
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"github.com/mr-tron/base58"
)

const (
	didKeyPrefix = "did:key:"
	aliasPrefix  = "did:macula:"

	// multicodecEd25519Pub is the multicodec code of an Ed25519 public key;
	// as an unsigned varint it is the two bytes 0xed 0x01.
	multicodecEd25519Pub = 0xed

	// maxDIDKeyLen bounds the input of ParseDIDKey before base58 decoding,
	// which is quadratic in the input length. An Ed25519 did:key is 56 bytes.
	maxDIDKeyLen = 128
)

// DIDKey returns the did:key for an Ed25519 public key:
// "did:key:z" + base58btc(0xed 0x01 || 32-byte key). Like crypto/ed25519, it
// panics if pub is not ed25519.PublicKeySize bytes long, since such a key
// cannot be named and returning a string would hide the bug.
func DIDKey(pub ed25519.PublicKey) string {
	if len(pub) != ed25519.PublicKeySize {
		panic("realm: bad ed25519 public key length: " + strconv.Itoa(len(pub)))
	}
	buf := make([]byte, 0, 2+ed25519.PublicKeySize)
	buf = binary.AppendUvarint(buf, multicodecEd25519Pub)
	buf = append(buf, pub...)
	return didKeyPrefix + "z" + base58.Encode(buf)
}

// ParseDIDKey parses the did:key of an Ed25519 key (multicodec 0xed01) and
// returns the public key. Errors wrap ErrInvalidDID and say what is wrong:
// the prefix, the multibase (only base58btc 'z'), the multicodec, or the
// key length. An accepted DID is canonical: DIDKey of the key returns it.
func ParseDIDKey(did string) (ed25519.PublicKey, error) {
	if len(did) > maxDIDKeyLen {
		return nil, fmt.Errorf("%w: %s is %d bytes long; an Ed25519 did:key is at most %d", ErrInvalidDID, quote(did), len(did), maxDIDKeyLen)
	}
	mb, ok := strings.CutPrefix(did, didKeyPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: %s does not start with %q", ErrInvalidDID, quote(did), didKeyPrefix)
	}
	if mb == "" {
		return nil, fmt.Errorf("%w: %s has no key after %q", ErrInvalidDID, quote(did), didKeyPrefix)
	}
	if mb[0] != 'z' {
		return nil, fmt.Errorf("%w: %s: multibase prefix %q is not 'z' (base58btc)", ErrInvalidDID, quote(did), mb[:1])
	}
	if mb == "z" {
		return nil, fmt.Errorf("%w: %s has no key after \"did:key:z\"", ErrInvalidDID, quote(did))
	}
	raw, err := base58.Decode(mb[1:])
	if err != nil {
		return nil, fmt.Errorf("%w: %s: not valid base58btc: %v", ErrInvalidDID, quote(did), err)
	}
	code, n := binary.Uvarint(raw)
	switch {
	case n <= 0:
		return nil, fmt.Errorf("%w: %s: malformed multicodec prefix", ErrInvalidDID, quote(did))
	case code != multicodecEd25519Pub:
		return nil, fmt.Errorf("%w: %s: multicodec 0x%x is not ed25519-pub (0xed)", ErrInvalidDID, quote(did), code)
	case n != 2:
		// A padded varint decodes to 0xed too, but would not re-encode to
		// the same DID; refuse it so every key has exactly one did:key.
		return nil, fmt.Errorf("%w: %s: multicodec ed25519-pub is not minimally encoded", ErrInvalidDID, quote(did))
	}
	key := raw[n:]
	if len(key) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: %s: key is %d bytes; an Ed25519 public key is %d", ErrInvalidDID, quote(did), len(key), ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(key), nil
}

// Alias returns "did:macula:<realm>.<name>". It does not validate; use
// ParseAlias to check an alias, or ValidateRealm and ValidateNodeName on the
// parts before building one.
func Alias(realm, name string) string {
	return aliasPrefix + realm + "." + name
}

// ParseAlias parses "did:macula:<realm>.<name>", where name is the last
// segment and realm everything before it. The realm must pass ValidateRealm
// and the name must be one valid segment, so an alias has at least three
// segments. Errors wrap ErrInvalidDID; those about the realm or name also
// wrap ErrInvalid.
func ParseAlias(did string) (realm, name string, err error) {
	rest, ok := strings.CutPrefix(did, aliasPrefix)
	if !ok {
		return "", "", fmt.Errorf("%w: %s does not start with %q", ErrInvalidDID, quote(did), aliasPrefix)
	}
	if len(rest) > MaxNameLen {
		return "", "", fmt.Errorf("%w: %s: %d bytes after %q; the limit is %d", ErrInvalidDID, quote(did), len(rest), aliasPrefix, MaxNameLen)
	}
	i := strings.LastIndexByte(rest, '.')
	if i < 0 {
		return "", "", fmt.Errorf("%w: %s: needs <realm>.<name> after %q", ErrInvalidDID, quote(did), aliasPrefix)
	}
	realm, name = rest[:i], rest[i+1:]
	if err := ValidateRealm(realm); err != nil {
		return "", "", fmt.Errorf("%w: %s: %w", ErrInvalidDID, quote(did), err)
	}
	if err := checkSingle(kindAliasName, name); err != nil {
		return "", "", fmt.Errorf("%w: %s: %w", ErrInvalidDID, quote(did), err)
	}
	return realm, name, nil
}
