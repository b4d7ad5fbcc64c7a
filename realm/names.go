package realm

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxNameLen is the longest dotted name in bytes, the DNS limit.
const MaxNameLen = 253

// MaxSegmentLen is the longest segment in bytes, the DNS label limit.
const MaxSegmentLen = 63

// maxQuoted bounds how much of an offending value an error message repeats,
// so that a huge input cannot produce a huge error (or log line).
const maxQuoted = 80

// kind says what a name is for, so messages can say "topic" or "procedure".
type kind int

const (
	kindRealm kind = iota
	kindNode
	kindProcedure
	kindTopic
	kindPattern
	kindAliasName
)

func (k kind) String() string {
	switch k {
	case kindRealm:
		return "realm"
	case kindNode:
		return "node name"
	case kindProcedure:
		return "procedure"
	case kindTopic:
		return "topic"
	case kindPattern:
		return "pattern"
	case kindAliasName:
		return "alias name"
	}
	return "name"
}

func (k kind) withArticle() string {
	if k == kindAliasName {
		return "an " + k.String()
	}
	return "a " + k.String()
}

// quote quotes s for an error message, truncating very long values.
func quote(s string) string {
	if len(s) > maxQuoted {
		return fmt.Sprintf("%q...", s[:maxQuoted])
	}
	return fmt.Sprintf("%q", s)
}

// invalid returns an ErrInvalid error about the name of kind k.
func invalid(k kind, name, format string, args ...any) error {
	return fmt.Errorf("%w: %s %s: %s", ErrInvalid, k, quote(name), fmt.Sprintf(format, args...))
}

// ValidateRealm checks a realm name: reverse DNS such as "io.acme.orders",
// at least two segments separated by '.', each segment 1..63 characters of
// [a-z0-9_-] starting with a letter or digit (lowercase, as DNS names are
// written), and at most 253 bytes in all.
// Two segments are required so that a realm is always owned by someone's
// domain and never a bare word that two operators could both pick.
func ValidateRealm(name string) error {
	if err := checkSyntax(kindRealm, name); err != nil {
		return err
	}
	if !strings.Contains(name, ".") {
		return invalid(kindRealm, name, "needs at least two segments (reverse DNS such as io.acme.orders)")
	}
	return nil
}

// ValidateNodeName checks a node name: a single segment of 1..63 characters
// of [a-z0-9_-] starting with a letter or digit. Node names stay lowercase,
// unlike the segments of procedures and topics: a node name is half of an
// identity (the alias did:macula:<realm>.<name>), and "Worker-1" beside
// "worker-1" would be two identities that people read as one.
func ValidateNodeName(name string) error {
	return checkSingle(kindNode, name)
}

// ValidateProcedure checks a concrete procedure name that must live under
// realm: the realm, then one or more valid segments. The segments below the
// realm are case-sensitive ([A-Za-z0-9_-], "AB12" and "ab12" are two names);
// the realm part is the realm exactly, lowercase. The realm is validated
// too. A well-formed name elsewhere yields an error wrapping ErrOutsideRealm.
func ValidateProcedure(realm, name string) error {
	return checkUnder(kindProcedure, realm, name)
}

// ValidateTopic checks a concrete topic name (no wildcards) under realm, with
// the same rules as ValidateProcedure.
func ValidateTopic(realm, name string) error {
	return checkUnder(kindTopic, realm, name)
}

// ValidatePattern checks a subscription pattern for realm. Each segment is a
// valid segment (case-sensitive, as in ValidateProcedure) or "*"; ">" may
// only be the last segment. The pattern must be
// able to match some topic strictly under realm: "io.acme.>" is accepted for
// realm "io.acme.orders", while "io.other.*" and "io.acme.*" (which can match
// only names beside or above the realm) are refused with ErrOutsideRealm.
func ValidatePattern(realm, pattern string) error {
	if err := ValidateRealm(realm); err != nil {
		return err
	}
	if err := checkSyntax(kindPattern, pattern); err != nil {
		return err
	}
	// Walk realm and pattern segments together. Each leading pattern segment
	// must be "*" or the realm's segment; a ">" covers the rest of the realm
	// and at least one segment beyond it, so it settles the question.
	r, p := realm, pattern
	for {
		rs, rrest, rmore := strings.Cut(r, ".")
		ps, prest, pmore := strings.Cut(p, ".")
		if ps == ">" {
			return nil
		}
		if ps != "*" && ps != rs {
			return fmt.Errorf("%w: pattern %s is not under realm %s%s", ErrOutsideRealm, quote(pattern), quote(realm), caseHint(ps, rs))
		}
		if !pmore {
			// The pattern ends at or before the realm's last segment, so
			// every name it matches is the realm itself or above it.
			return fmt.Errorf("%w: pattern %s cannot match any name under realm %s", ErrOutsideRealm, quote(pattern), quote(realm))
		}
		if !rmore {
			// Realm exhausted and the pattern has more segments: it can
			// match names strictly under the realm.
			return nil
		}
		r, p = rrest, prest
	}
}

// Match reports whether the concrete topic matches pattern: "*" matches one
// segment, a final ">" matches one or more; literal segments compare
// exactly, case included. It returns false, and never panics, if pattern is
// not a well-formed pattern or topic is not a well-formed concrete name
// (empty segments, wildcards out of place, characters outside
// [A-Za-z0-9_-], over-long names), so a match always means both sides would
// pass validation apart from the realm check.
func Match(pattern, topic string) bool {
	if !wellFormed(pattern, true) || !wellFormed(topic, false) {
		return false
	}
	for {
		ps, prest, pmore := strings.Cut(pattern, ".")
		ts, trest, tmore := strings.Cut(topic, ".")
		if ps == ">" {
			// Well-formedness put ">" last, and ts is a real segment.
			return true
		}
		if ps != "*" && ps != ts {
			return false
		}
		if !pmore || !tmore {
			return pmore == tmore
		}
		pattern, topic = prest, trest
	}
}

// Under reports whether name lies strictly inside realm: realm's segments as
// a prefix, then at least one more segment. It is false if either is not a
// well-formed concrete dotted name (the realm lowercase, the segments below
// it case-sensitive). It does not require realm to have the two segments
// ValidateRealm asks for.
func Under(realm, name string) bool {
	return len(name) > len(realm)+1 &&
		name[len(realm)] == '.' &&
		name[:len(realm)] == realm &&
		lowerName(realm) &&
		wellFormed(name, false)
}

// ValidSegment reports whether seg is a valid literal segment of a
// procedure, topic or pattern below the realm: 1..63 bytes of [A-Za-z0-9_-]
// starting with a letter or digit. Packages that parse patterns of their own
// (ucan's resource patterns) use it, so that every name rule lives here.
func ValidSegment(seg string) bool { return validSegment(seg, true) }

// checkUnder validates a concrete name of kind k under realm.
func checkUnder(k kind, realm, name string) error {
	if err := ValidateRealm(realm); err != nil {
		return err
	}
	if err := checkSyntax(k, name); err != nil {
		return err
	}
	if name == realm {
		return fmt.Errorf("%w: %s %s is the realm itself; it needs at least one more segment", ErrOutsideRealm, k, quote(name))
	}
	if !Under(realm, name) {
		hint := ""
		if len(name) > len(realm) {
			hint = caseHint(name[:len(realm)], realm)
		}
		return fmt.Errorf("%w: %s %s is not under realm %s%s", ErrOutsideRealm, k, quote(name), quote(realm), hint)
	}
	return nil
}

// caseHint explains a mismatch with the realm that is only one of case.
func caseHint(got, realm string) string {
	if got != realm && strings.EqualFold(got, realm) {
		return " (realm names are lowercase; only the segments below the realm may use upper case)"
	}
	return ""
}

// mixedCase reports whether names of kind k may use upper case: the
// segments of procedures, topics and patterns may; realms and node names,
// which are DNS-like identities, may not.
func (k kind) mixedCase() bool {
	return k == kindProcedure || k == kindTopic || k == kindPattern
}

// checkSingle validates a name that is exactly one segment.
func checkSingle(k kind, name string) error {
	if name == "" {
		return invalid(k, name, "empty")
	}
	if strings.Contains(name, ".") {
		return invalid(k, name, "must be a single segment without '.'")
	}
	if msg := segmentProblem(k, name, 1, true); msg != "" {
		return invalid(k, name, "%s", msg)
	}
	return nil
}

// checkSyntax validates the shape of a dotted name of kind k: its length and
// every segment. Wildcards are allowed only when k is kindPattern.
func checkSyntax(k kind, name string) error {
	if name == "" {
		return invalid(k, name, "empty")
	}
	if len(name) > MaxNameLen {
		return invalid(k, name, "%d bytes long; the limit is %d", len(name), MaxNameLen)
	}
	rest := name
	for pos := 1; ; pos++ {
		seg, after, more := strings.Cut(rest, ".")
		if msg := segmentProblem(k, seg, pos, !more); msg != "" {
			return invalid(k, name, "%s", msg)
		}
		if !more {
			return nil
		}
		rest = after
	}
}

// segmentProblem returns "" if seg is acceptable as segment number pos
// (1-based) of a name of kind k, or a description of what is wrong.
func segmentProblem(k kind, seg string, pos int, last bool) string {
	if seg == "" {
		return fmt.Sprintf("empty segment at position %d", pos)
	}
	if k == kindPattern {
		switch seg {
		case "*":
			return ""
		case ">":
			if last {
				return ""
			}
			return fmt.Sprintf(`">" is allowed only as the last segment (found at position %d)`, pos)
		}
	}
	if strings.ContainsAny(seg, "*>") {
		if k == kindPattern {
			return fmt.Sprintf(`segment %s mixes a wildcard with other characters; "*" and ">" must be a whole segment`, quote(seg))
		}
		return fmt.Sprintf("wildcards are not allowed in %s", k.withArticle())
	}
	if len(seg) > MaxSegmentLen {
		return fmt.Sprintf("segment %s is %d bytes long; the limit is %d", quote(seg), len(seg), MaxSegmentLen)
	}
	charset := "[a-z0-9_-]"
	if k.mixedCase() {
		charset = "[A-Za-z0-9_-]"
	}
	for i, c := range seg {
		switch {
		case isLowerOrDigit(c), c == '_', c == '-':
		case isUpper(c) && k.mixedCase():
		case isUpper(c):
			return fmt.Sprintf("segment %s has an uppercase letter; %s segments use %s", quote(seg), k, charset)
		default:
			// Slice rather than convert c, so an invalid UTF-8 byte is
			// shown as \xNN instead of U+FFFD.
			_, size := utf8.DecodeRuneInString(seg[i:])
			return fmt.Sprintf("segment %s has invalid character %q; segments use %s", quote(seg), seg[i:i+size], charset)
		}
	}
	if c := rune(seg[0]); !isLowerOrDigit(c) && !isUpper(c) {
		return fmt.Sprintf("segment %s must start with a letter or digit", quote(seg))
	}
	return ""
}

// wellFormed is the allocation-free yes/no form of checkSyntax for a topic
// or pattern (upper case allowed), for Match and Under, which sit on the
// message path.
func wellFormed(name string, pattern bool) bool {
	if name == "" || len(name) > MaxNameLen {
		return false
	}
	rest := name
	for {
		seg, after, more := strings.Cut(rest, ".")
		switch {
		case pattern && seg == "*":
		case pattern && seg == ">" && !more:
		case !validSegment(seg, true):
			return false
		}
		if !more {
			return true
		}
		rest = after
	}
}

// lowerName reports whether name is a well-formed concrete dotted name of
// lowercase segments, as a realm is (the two-segment rule aside).
func lowerName(name string) bool {
	if name == "" || len(name) > MaxNameLen {
		return false
	}
	for rest := name; ; {
		seg, after, more := strings.Cut(rest, ".")
		if !validSegment(seg, false) {
			return false
		}
		if !more {
			return true
		}
		rest = after
	}
}

// validSegment reports whether seg is a valid literal segment; upper says
// whether upper-case letters are allowed.
func validSegment(seg string, upper bool) bool {
	if seg == "" || len(seg) > MaxSegmentLen {
		return false
	}
	if c := rune(seg[0]); !isLowerOrDigit(c) && !(upper && isUpper(c)) {
		return false
	}
	for i := 1; i < len(seg); i++ {
		if c := rune(seg[i]); !isLowerOrDigit(c) && c != '_' && c != '-' && !(upper && isUpper(c)) {
			return false
		}
	}
	return true
}

func isLowerOrDigit(c rune) bool {
	return 'a' <= c && c <= 'z' || '0' <= c && c <= '9'
}

func isUpper(c rune) bool { return 'A' <= c && c <= 'Z' }

// IsPattern reports whether name has a wildcard segment ("*" or ">"), that
// is, whether it names topics rather than one. It does not validate name.
func IsPattern(name string) bool {
	for seg := range strings.SplitSeq(name, ".") {
		if seg == "*" || seg == ">" {
			return true
		}
	}
	return false
}
