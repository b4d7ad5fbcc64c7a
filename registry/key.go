package registry

import (
	"fmt"
	"strings"

	"github.com/macula-io/macula/realm"
)

// Keys.
//
// A key is one or more segments separated by "/": "user/123",
// "chat/room/42". A segment is 1 to 63 bytes of letters, digits, '_' and
// '-', starting with a letter or a digit: the segments of the realm's topic
// and procedure names. The grammar exists for authorization: in a secure
// realm the UCAN resource of key "chat/room/42" is the realm name
// "<realm>.chat.room.42" and the prefix "chat/" is the pattern
// "<realm>.chat.>" (see Resource and ResourcePattern), so a key must also fit,
// with the realm and a dot, in realm.MaxNameLen (253) bytes.
//
// A key ending in "/" is a prefix: it is accepted by the queries (Members,
// Names, Monitor, Dispatch), never by the writes, and matches every key
// that has it as a prefix ("chat/" matches "chat/room1" and "chat/room/42",
// not "chat"). The empty prefix "" matches every key.

// MaxSegmentLen is the longest segment of a key, in bytes.
const MaxSegmentLen = realm.MaxSegmentLen

// maxQuoted bounds how much of an offending key an error repeats.
const maxQuoted = 80

func quote(s string) string {
	if len(s) > maxQuoted {
		return fmt.Sprintf("%q...", s[:maxQuoted])
	}
	return fmt.Sprintf("%q", s)
}

// MaxKeyLen returns the longest key, in bytes, in realmName: what fits with
// the realm and a dot in realm.MaxNameLen.
func MaxKeyLen(realmName string) int { return realm.MaxNameLen - len(realmName) - 1 }

// keyRules validates keys for one realm.
type keyRules struct {
	realm  string
	maxLen int
}

func newKeyRules(realmName string) keyRules {
	return keyRules{realm: realmName, maxLen: MaxKeyLen(realmName)}
}

// checkKey validates a concrete key (no trailing "/").
func (kr keyRules) checkKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty key", ErrInvalidKey)
	}
	if strings.HasSuffix(key, "/") {
		return fmt.Errorf("%w: key %s ends with \"/\", which is reserved for prefix queries", ErrInvalidKey, quote(key))
	}
	return kr.checkSegments(key, key)
}

// checkQuery validates a key or a prefix (a trailing "/", or "" for every
// key) and reports whether it is a prefix.
func (kr keyRules) checkQuery(q string) (prefix bool, err error) {
	if q == "" {
		return true, nil
	}
	if strings.HasSuffix(q, "/") {
		if err := kr.checkSegments(q, q[:len(q)-1]); err != nil {
			return true, err
		}
		return true, nil
	}
	return false, kr.checkSegments(q, q)
}

// checkSegments validates the segments of body; what is the whole input,
// for messages.
func (kr keyRules) checkSegments(what, body string) error {
	if len(what) > kr.maxLen {
		return fmt.Errorf("%w: key %s is %d bytes; the limit in realm %s is %d", ErrInvalidKey, quote(what), len(what), kr.realm, kr.maxLen)
	}
	if body == "" {
		return fmt.Errorf("%w: key %s has an empty segment", ErrInvalidKey, quote(what))
	}
	rest := body
	for pos := 1; ; pos++ {
		seg, after, more := strings.Cut(rest, "/")
		if msg := segmentProblem(seg, pos); msg != "" {
			return fmt.Errorf("%w: key %s: %s", ErrInvalidKey, quote(what), msg)
		}
		if !more {
			break
		}
		rest = after
	}
	// The realm's own name rules have the last word, so that every key
	// maps to a resource its UCAN grants can name.
	if err := realm.ValidateTopic(kr.realm, resourceOf(kr.realm, body)); err != nil {
		return fmt.Errorf("%w: key %s: %w", ErrInvalidKey, quote(what), err)
	}
	return nil
}

func segmentProblem(seg string, pos int) string {
	if seg == "" {
		return fmt.Sprintf("empty segment at position %d", pos)
	}
	if len(seg) > MaxSegmentLen {
		return fmt.Sprintf("segment %s is %d bytes; the limit is %d", quote(seg), len(seg), MaxSegmentLen)
	}
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		switch {
		case alnum:
		case i > 0 && (c == '_' || c == '-'):
		case c == '_' || c == '-':
			return fmt.Sprintf("segment %s must start with a letter or digit", quote(seg))
		default:
			return fmt.Sprintf("segment %s has invalid character %q; segments use letters, digits, '_' and '-'", quote(seg), string(rune(c)))
		}
	}
	return ""
}

// resourceOf maps a key (without trailing "/") to a realm name.
func resourceOf(realmName, key string) string {
	return realmName + "." + strings.ReplaceAll(key, "/", ".")
}

// Resource returns the UCAN resource of key in realmName: the realm, a dot,
// and the key's segments joined by dots ("chat/room/42" in io.acme.orders is
// io.acme.orders.chat.room.42). A grant of /macula/register, /macula/join or
// /macula/dispatch on a pattern that matches it (io.acme.orders.chat.>)
// allows that operation on the key.
func Resource(realmName, key string) string { return resourceOf(realmName, key) }

// ResourcePattern returns the UCAN resource pattern that matches every key
// under prefix ("chat/" gives <realm>.chat.>), every key of the realm for ""
// (<realm>.>), or exactly the key for a key without a trailing "/".
func ResourcePattern(realmName, prefix string) string {
	switch {
	case prefix == "":
		return realmName + ".>"
	case strings.HasSuffix(prefix, "/"):
		return resourceOf(realmName, prefix[:len(prefix)-1]) + ".>"
	}
	return resourceOf(realmName, prefix)
}

// prefixesOf calls f with every proper prefix of key that ends in "/",
// shortest first: "a/b/c" gives "a/" and "a/b/".
func prefixesOf(key string, f func(prefix string)) {
	for i := 0; i < len(key); i++ {
		if key[i] == '/' {
			f(key[:i+1])
		}
	}
}

// checkCluster validates a named cluster's name: one segment, as a node
// name ([a-z0-9_-], 1..63 bytes, starting with a letter or digit). The
// default cluster is "".
func checkCluster(name string) error {
	if name == "" {
		return nil
	}
	if err := realm.ValidateNodeName(name); err != nil {
		return fmt.Errorf("%w: cluster %s: %w", ErrInvalidCluster, quote(name), err)
	}
	return nil
}
