package realm

import (
	"crypto/ed25519"
	"errors"
	"regexp"
	"strings"
	"testing"
)

// The reference grammar, written as regular expressions straight from the
// package doc rather than from the code under test.
const refSegment = `[A-Za-z0-9][A-Za-z0-9_-]{0,62}`

var (
	refTopic   = regexp.MustCompile(`^` + refSegment + `(\.` + refSegment + `)*$`)
	refPattern = regexp.MustCompile(`^((` + refSegment + `|\*)(\.(` + refSegment + `|\*))*(\.>)?|>)$`)
)

// refMatch is an independent Match: it reports whether both inputs are
// well-formed by the reference grammar, and if so whether the pattern,
// translated to a regular expression, matches the topic.
func refMatch(pattern, topic string) (wellFormed, match bool) {
	if len(pattern) > MaxNameLen || len(topic) > MaxNameLen ||
		!refPattern.MatchString(pattern) || !refTopic.MatchString(topic) {
		return false, false
	}
	var parts []string
	for _, seg := range strings.Split(pattern, ".") {
		switch seg {
		case "*":
			parts = append(parts, `[^.]+`)
		case ">":
			parts = append(parts, `[^.]+(\.[^.]+)*`)
		default:
			parts = append(parts, regexp.QuoteMeta(seg))
		}
	}
	re := regexp.MustCompile(`^` + strings.Join(parts, `\.`) + `$`)
	return true, re.MatchString(topic)
}

// small maps arbitrary bytes onto a six-letter alphabet, so that the fuzzer
// spends most of its time on inputs that are nearly well-formed, where the
// interesting matching bugs are ("b" and "B" for case).
func small(s string) string {
	const alphabet = "abB.*>"
	b := []byte(s)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

func FuzzMatch(f *testing.F) {
	for _, tt := range matchCases {
		f.Add(tt.pattern, tt.topic)
	}
	f.Fuzz(func(t *testing.T, pattern, topic string) {
		for _, in := range [][2]string{{pattern, topic}, {small(pattern), small(topic)}} {
			p, tp := in[0], in[1]
			got := Match(p, tp)
			ok, want := refMatch(p, tp)
			if !ok && got {
				t.Fatalf("Match(%q, %q) = true for malformed input", p, tp)
			}
			if ok && got != want {
				t.Fatalf("Match(%q, %q) = %v, reference says %v", p, tp, got, want)
			}
		}
	})
}

// witness builds the topic most likely to prove that pattern can match a
// name strictly under realm: wildcards take the realm's segments, and one
// segment "x" more where needed.
func witness(realm, pattern string) string {
	rs := strings.Split(realm, ".")
	var out []string
	for i, seg := range strings.Split(pattern, ".") {
		switch {
		case seg == ">":
			if i < len(rs) {
				out = append(out, rs[i:]...)
			}
			out = append(out, "x")
		case seg == "*" && i < len(rs):
			out = append(out, rs[i])
		case seg == "*":
			out = append(out, "x")
		default:
			out = append(out, seg)
		}
	}
	return strings.Join(out, ".")
}

// FuzzValidate checks that the validators agree with each other, with
// Match and Under, and that every error is in the right family on one line.
func FuzzValidate(f *testing.F) {
	for _, tt := range concreteCases {
		f.Add(tt.realm, tt.name)
	}
	for _, tt := range matchCases {
		f.Add(acme, tt.pattern)
	}
	f.Fuzz(func(t *testing.T, realm, name string) {
		checkFamily := func(err error) {
			if err != nil && (!errors.Is(err, ErrInvalid) || strings.Contains(err.Error(), "\n")) {
				t.Fatalf("bad error for (%q, %q): %q", realm, name, err)
			}
		}
		topicErr := ValidateTopic(realm, name)
		procErr := ValidateProcedure(realm, name)
		patErr := ValidatePattern(realm, name)
		checkFamily(topicErr)
		checkFamily(procErr)
		checkFamily(patErr)
		checkFamily(ValidateRealm(realm))
		checkFamily(ValidateNodeName(name))

		if (topicErr == nil) != (procErr == nil) {
			t.Fatalf("topic and procedure rules disagree on (%q, %q): %v / %v", realm, name, topicErr, procErr)
		}
		if topicErr == nil {
			if !Under(realm, name) || !Match(name, name) || !Match(realm+".>", name) {
				t.Fatalf("valid topic %q of realm %q fails Under or Match", name, realm)
			}
			if patErr != nil {
				t.Fatalf("valid topic %q is refused as a pattern: %v", name, patErr)
			}
			// Case-sensitive: no folding, in either direction.
			if low := strings.ToLower(name); low != name && (Match(low, name) || Match(name, low)) {
				t.Fatalf("Match folds case: %q and %q", name, low)
			}
		}
		if ValidateRealm(realm) == nil && strings.ToLower(realm) != realm {
			t.Fatalf("realm %q with upper case accepted", realm)
		}
		if ValidateNodeName(name) == nil && strings.ToLower(name) != name {
			t.Fatalf("node name %q with upper case accepted", name)
		}
		if ValidateRealm(realm) != nil || !wellFormed(name, true) {
			return
		}
		// For a valid realm and a well-formed pattern, ValidatePattern
		// accepts exactly the patterns for which the witness works.
		w := witness(realm, name)
		if len(w) > MaxNameLen {
			return
		}
		canMatch := Under(realm, w) && Match(name, w)
		if canMatch != (patErr == nil) {
			t.Fatalf("ValidatePattern(%q, %q) = %v, but witness %q under realm and matched: %v", realm, name, patErr, w, canMatch)
		}
		if patErr != nil && !errors.Is(patErr, ErrOutsideRealm) {
			t.Fatalf("ValidatePattern(%q, %q) = %v, want ErrOutsideRealm", realm, name, patErr)
		}
	})
}

func FuzzParseDIDKey(f *testing.F) {
	for _, did := range specDIDKeys {
		f.Add(did)
	}
	f.Add(DIDKey(make(ed25519.PublicKey, ed25519.PublicKeySize)))
	f.Add("did:key:z")
	f.Add("did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme")
	f.Add("did:key:z1116MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp")
	f.Fuzz(func(t *testing.T, did string) {
		pub, err := ParseDIDKey(did)
		if err != nil {
			if !errors.Is(err, ErrInvalidDID) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("bad error for %q: %q", did, err)
			}
			return
		}
		if len(pub) != ed25519.PublicKeySize {
			t.Fatalf("ParseDIDKey(%q) returned a %d-byte key", did, len(pub))
		}
		if got := DIDKey(pub); got != did {
			t.Fatalf("ParseDIDKey(%q) is not canonical: DIDKey gives %q", did, got)
		}
	})
}

func FuzzParseAlias(f *testing.F) {
	f.Add("did:macula:io.acme.orders.worker-1")
	f.Add("did:macula:io.acme.bob")
	f.Add("did:macula:acme.bob")
	f.Add("did:macula:io.acme.")
	f.Add("did:macula:io..acme.bob")
	f.Add("did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp")
	f.Fuzz(func(t *testing.T, did string) {
		realm, name, err := ParseAlias(did)
		if err != nil {
			if !errors.Is(err, ErrInvalidDID) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("bad error for %q: %q", did, err)
			}
			return
		}
		if got := Alias(realm, name); got != did {
			t.Fatalf("Alias(ParseAlias(%q)) = %q", did, got)
		}
		if err := ValidateRealm(realm); err != nil {
			t.Fatalf("ParseAlias(%q) returned realm %q: %v", did, realm, err)
		}
		if err := ValidateNodeName(name); err != nil {
			t.Fatalf("ParseAlias(%q) returned name %q: %v", did, name, err)
		}
	})
}
