package realm

import (
	"errors"
	"strings"
	"testing"
)

const acme = "io.acme.orders"

// checkErr fails t unless err is nil when want is nil, or wraps want (and
// ErrInvalid) otherwise. A plain ErrInvalid must not be ErrOutsideRealm, so
// the table also pins which family each failure belongs to.
func checkErr(t *testing.T, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want == nil:
		return
	case err == nil:
		t.Fatalf("got nil, want error wrapping %v", want)
	case !errors.Is(err, want) || !errors.Is(err, ErrInvalid):
		t.Fatalf("error %q does not wrap %q", err, want)
	case want == ErrInvalid && errors.Is(err, ErrOutsideRealm):
		t.Fatalf("error %q is ErrOutsideRealm, want a syntax error", err)
	case strings.Contains(err.Error(), "\n"):
		t.Fatalf("error spans lines: %q", err)
	}
}

var long63 = strings.Repeat("a", 63)

func TestValidateRealm(t *testing.T) {
	tests := []struct {
		name string
		want error
	}{
		{"io.acme", nil},
		{"io.acme.orders", nil},
		{"io.acme.orders.eu-west_1", nil},
		{"0.1", nil},
		{"a.b.c.d.e.f.g", nil},
		{"io." + long63, nil},
		{strings.Repeat("a.", 126) + "a", nil}, // 253 bytes
		{"", ErrInvalid},
		{"acme", ErrInvalid},
		{"Io.acme", ErrInvalid},
		{"io.ACME", ErrInvalid},
		{"io..acme", ErrInvalid},
		{".io.acme", ErrInvalid},
		{"io.acme.", ErrInvalid},
		{".", ErrInvalid},
		{"io.-acme", ErrInvalid},
		{"io._acme", ErrInvalid},
		{"io.acme!", ErrInvalid},
		{"io.ac me", ErrInvalid},
		{"io.acmé", ErrInvalid},
		{"io.acme\xff", ErrInvalid},
		{"io.*", ErrInvalid},
		{"io.>", ErrInvalid},
		{"io.a*", ErrInvalid},
		{"io." + long63 + "a", ErrInvalid},
		{strings.Repeat("a.", 127), ErrInvalid},       // trailing dot
		{strings.Repeat("a.", 127) + "a", ErrInvalid}, // 255 bytes
		{"io/acme", ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, ValidateRealm(tt.name), tt.want)
		})
	}
}

func TestValidateNodeName(t *testing.T) {
	tests := []struct {
		name string
		want error
	}{
		{"worker", nil},
		{"worker-1", nil},
		{"w_1", nil},
		{"1", nil},
		{"0node", nil},
		{long63, nil},
		{"", ErrInvalid},
		{long63 + "a", ErrInvalid},
		{"Worker", ErrInvalid},
		{"-worker", ErrInvalid},
		{"_worker", ErrInvalid},
		{"worker.1", ErrInvalid},
		{".", ErrInvalid},
		{"*", ErrInvalid},
		{">", ErrInvalid},
		{"wörker", ErrInvalid},
		{"worker 1", ErrInvalid},
		{"worker\n", ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, ValidateNodeName(tt.name), tt.want)
		})
	}
}

// concreteCases are shared by ValidateProcedure and ValidateTopic, which
// apply the same rules.
var concreteCases = []struct {
	realm, name string
	want        error
}{
	{acme, "io.acme.orders.place", nil},
	{acme, "io.acme.orders.place.v2", nil},
	{acme, "io.acme.orders.a-b_c.0", nil},
	{"io.acme", "io.acme.orders", nil},
	{acme, "io.acme.orders." + long63, nil},
	{acme, "io.acme.orders.AB12.telemetry", nil},
	{acme, "io.acme.orders.12D3KooWGc5m9pHwhE53bgfFRmqWMLw1UapLb2kao858ubkoBgbr", nil},
	{acme, "io.acme.orders.X", nil},
	{acme, "io.acme.orders.getOrder_V2", nil},
	{acme, "IO.acme.orders.x", ErrOutsideRealm},
	{acme, "io.acme.Orders.x", ErrOutsideRealm},
	{acme, "io.acme.orders.-X", ErrInvalid},
	{acme, "io.acme.orders.Ä", ErrInvalid},
	{acme, "io.acme.orders", ErrOutsideRealm},
	{acme, "io.acme", ErrOutsideRealm},
	{acme, "io.other.x", ErrOutsideRealm},
	{acme, "io.acme.ordersx.place", ErrOutsideRealm},
	{acme, "io.acme.order.place", ErrOutsideRealm},
	{acme, "com.acme.orders.place", ErrOutsideRealm},
	{acme, "place", ErrOutsideRealm},
	{acme, "", ErrInvalid},
	{acme, "io.acme.orders.", ErrInvalid},
	{acme, ".io.acme.orders.place", ErrInvalid},
	{acme, "io.acme.orders..place", ErrInvalid},
	{acme, "io.acme.orders.*", ErrInvalid},
	{acme, "io.acme.orders.>", ErrInvalid},
	{acme, "io.acme.orders.pl*ce", ErrInvalid},
	{acme, "io.acme.orders.-place", ErrInvalid},
	{acme, "io.acme.orders.pla ce", ErrInvalid},
	{acme, "io.acme.orders." + long63 + "a", ErrInvalid},
	{acme, "io.acme.orders." + strings.Repeat("a.", 119) + "a", ErrInvalid}, // 254 bytes
	{"acme", "acme.place", ErrInvalid},                                      // bad realm
	{"", "io.acme.place", ErrInvalid},
	{"Io.acme", "Io.acme.place", ErrInvalid},
}

func TestValidateProcedure(t *testing.T) {
	for _, tt := range concreteCases {
		t.Run(tt.realm+"/"+tt.name, func(t *testing.T) {
			err := ValidateProcedure(tt.realm, tt.name)
			checkErr(t, err, tt.want)
			if err != nil && !strings.Contains(err.Error(), "procedure") && !strings.Contains(err.Error(), "realm") {
				t.Errorf("error %q does not say what was checked", err)
			}
		})
	}
}

func TestValidateTopic(t *testing.T) {
	for _, tt := range concreteCases {
		t.Run(tt.realm+"/"+tt.name, func(t *testing.T) {
			err := ValidateTopic(tt.realm, tt.name)
			checkErr(t, err, tt.want)
			if err != nil && !strings.Contains(err.Error(), "topic") && !strings.Contains(err.Error(), "realm") {
				t.Errorf("error %q does not say what was checked", err)
			}
		})
	}
}

func TestValidatePattern(t *testing.T) {
	tests := []struct {
		realm, pattern string
		want           error
	}{
		{acme, "io.acme.orders.placed", nil},
		{acme, "io.acme.orders.*", nil},
		{acme, "io.acme.orders.>", nil},
		{acme, "io.acme.orders.*.v2", nil},
		{acme, "io.acme.orders.*.>", nil},
		{acme, "io.acme.>", nil}, // can match io.acme.orders.x
		{acme, "io.>", nil},
		{acme, ">", nil},
		{acme, "*.acme.orders.x", nil},
		{acme, "io.*.orders.*", nil},
		{acme, "*.*.*.*", nil},
		{acme, "*.*.*.>", nil},
		{acme, "io.acme.*.placed", nil},
		{acme, "io.acme.orders." + long63, nil},
		{acme, "io.acme.orders.AB12.*", nil},
		{acme, "io.acme.orders.*.Telemetry.>", nil},
		{acme, "*.acme.orders.X", nil},

		// Cannot match anything strictly under the realm.
		{acme, "io.other.*", ErrOutsideRealm},
		{acme, "io.other.>", ErrOutsideRealm},
		{acme, "io.acme.ordersx.>", ErrOutsideRealm},
		{acme, "com.>", ErrOutsideRealm},
		{acme, "io.acme.orders", ErrOutsideRealm},
		{acme, "io.acme.*", ErrOutsideRealm},
		{acme, "io.acme", ErrOutsideRealm},
		{acme, "*", ErrOutsideRealm},
		{acme, "*.*.*", ErrOutsideRealm},
		{acme, "io.*.other.>", ErrOutsideRealm},

		// Malformed.
		{acme, "", ErrInvalid},
		{acme, "io.acme.orders.", ErrInvalid},
		{acme, "io.acme.orders..x", ErrInvalid},
		{acme, ".io.acme.orders.x", ErrInvalid},
		{acme, "io.acme.>.x", ErrInvalid},
		{acme, ">.x", ErrInvalid},
		{acme, "io.acme.orders.>>", ErrInvalid},
		{acme, "io.acme.orders.**", ErrInvalid},
		{acme, "io.acme.orders.a*", ErrInvalid},
		{acme, "io.acme.orders.*a", ErrInvalid},
		{acme, "io.acme.orders.a>", ErrInvalid},
		{acme, "io.acme.orders.-X", ErrInvalid},
		{acme, "IO.acme.orders.x", ErrOutsideRealm}, // the realm is lowercase
		{acme, "io.ACME.>", ErrOutsideRealm},
		{acme, "io.acme.orders.-x", ErrInvalid},
		{acme, "io.acme.orders." + long63 + "a", ErrInvalid},
		{acme, strings.Repeat("*.", 127) + ">", ErrInvalid}, // 255 bytes
		{"acme", "acme.>", ErrInvalid},                      // bad realm
	}
	for _, tt := range tests {
		t.Run(tt.realm+"/"+tt.pattern, func(t *testing.T) {
			checkErr(t, ValidatePattern(tt.realm, tt.pattern), tt.want)
		})
	}
}

// TestErrorMessages pins the wording of typical errors: they are read by
// people, so they say what is wrong and quote the value, on one line.
func TestErrorMessages(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{ValidateRealm("Io.acme"), `invalid name: realm "Io.acme": segment "Io" has an uppercase letter; realm segments use [a-z0-9_-]`},
		{ValidateNodeName("Worker"), `invalid name: node name "Worker": segment "Worker" has an uppercase letter; node name segments use [a-z0-9_-]`},
		{ValidateTopic(acme, "io.acme.orders.a b"), `invalid name: topic "io.acme.orders.a b": segment "a b" has invalid character " "; segments use [A-Za-z0-9_-]`},
		{ValidateTopic(acme, "IO.acme.orders.x"), `invalid name: outside the realm: topic "IO.acme.orders.x" is not under realm "io.acme.orders" (realm names are lowercase; only the segments below the realm may use upper case)`},
		{ValidatePattern(acme, "io.Acme.>"), `invalid name: outside the realm: pattern "io.Acme.>" is not under realm "io.acme.orders" (realm names are lowercase; only the segments below the realm may use upper case)`},
		{ValidateRealm("acme"), `invalid name: realm "acme": needs at least two segments (reverse DNS such as io.acme.orders)`},
		{ValidateRealm(""), `invalid name: realm "": empty`},
		{ValidateRealm("io.-acme"), `invalid name: realm "io.-acme": segment "-acme" must start with a letter or digit`},
		{ValidateRealm("io.ac me"), `invalid name: realm "io.ac me": segment "ac me" has invalid character " "; segments use [a-z0-9_-]`},
		{ValidateRealm("io.acm\xff"), `invalid name: realm "io.acm\xff": segment "acm\xff" has invalid character "\xff"; segments use [a-z0-9_-]`},
		{ValidateRealm("io." + long63 + "a"), `invalid name: realm "io.` + long63 + "a" + `": segment "` + long63 + "a" + `" is 64 bytes long; the limit is 63`},
		{ValidateNodeName("a.b"), `invalid name: node name "a.b": must be a single segment without '.'`},
		{ValidateProcedure(acme, "io.acme.orders."), `invalid name: procedure "io.acme.orders.": empty segment at position 4`},
		{ValidateProcedure(acme, "io.other.x"), `invalid name: outside the realm: procedure "io.other.x" is not under realm "io.acme.orders"`},
		{ValidateProcedure(acme, acme), `invalid name: outside the realm: procedure "io.acme.orders" is the realm itself; it needs at least one more segment`},
		{ValidateTopic(acme, "io.acme.orders.*"), `invalid name: topic "io.acme.orders.*": wildcards are not allowed in a topic`},
		{ValidatePattern(acme, "io.other.*"), `invalid name: outside the realm: pattern "io.other.*" is not under realm "io.acme.orders"`},
		{ValidatePattern(acme, "io.acme.*"), `invalid name: outside the realm: pattern "io.acme.*" cannot match any name under realm "io.acme.orders"`},
		{ValidatePattern(acme, "io.>.x"), `invalid name: pattern "io.>.x": ">" is allowed only as the last segment (found at position 2)`},
		{ValidatePattern(acme, "io.acme.orders.a*"), `invalid name: pattern "io.acme.orders.a*": segment "a*" mixes a wildcard with other characters; "*" and ">" must be a whole segment`},
		{ValidateTopic(acme, strings.Repeat("a", 300)), `invalid name: topic "` + strings.Repeat("a", maxQuoted) + `"...: 300 bytes long; the limit is 253`},
	}
	for _, tt := range tests {
		if tt.err == nil {
			t.Errorf("got nil, want %s", tt.want)
			continue
		}
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("got  %s\nwant %s", got, tt.want)
		}
	}
}

func TestUnder(t *testing.T) {
	tests := []struct {
		realm, name string
		want        bool
	}{
		{acme, "io.acme.orders.x", true},
		{acme, "io.acme.orders.x.y", true},
		{"io", "io.x", true},
		{acme, acme, false},
		{acme, "io.acme", false},
		{acme, "io.acme.ordersx", false},
		{acme, "io.acme.ordersx.y", false},
		{acme, "io.acme.orders.", false},
		{acme, "io.acme.orders..x", false},
		{acme, "io.acme.orders.*", false},
		{acme, "io.acme.orders.X", true},
		{acme, "io.acme.orders.AB12.telemetry", true},
		{"IO.acme", "IO.acme.x", false}, // a realm is lowercase
		{acme, "io.acme.Orders.x", false},
		{"", ".x", false},
		{"", "x", false},
		{"", "", false},
		{"io.acme.", "io.acme..x", false},
		{"io.*", "io.*.x", false},
	}
	for _, tt := range tests {
		if got := Under(tt.realm, tt.name); got != tt.want {
			t.Errorf("Under(%q, %q) = %v, want %v", tt.realm, tt.name, got, tt.want)
		}
	}
}

var matchCases = []struct {
	pattern, topic string
	want           bool
}{
	// Exact.
	{"io.acme.orders.placed", "io.acme.orders.placed", true},
	{"a", "a", true},
	{"io.acme.orders.placed", "io.acme.orders.place", false},
	{"io.acme.orders.placed", "io.acme.orders.placed.v2", false},
	{"io.acme.orders.placed.v2", "io.acme.orders.placed", false},

	// '*' matches exactly one segment.
	{"io.acme.*", "io.acme.orders", true},
	{"io.*.orders", "io.acme.orders", true},
	{"*.acme.orders", "io.acme.orders", true},
	{"*", "io", true},
	{"*.*", "io.acme", true},
	{"io.acme.*", "io.acme", false},
	{"io.acme.*", "io.acme.orders.placed", false},
	{"*", "io.acme", false},
	{"*.*", "io", false},

	// '>' matches one or more trailing segments.
	{"io.acme.>", "io.acme.orders", true},
	{"io.acme.>", "io.acme.orders.placed.v2", true},
	{">", "io", true},
	{">", "io.acme.orders", true},
	{"*.>", "io.acme", true},
	{"io.*.>", "io.acme.orders", true},
	{"io.acme.>", "io.acme", false}, // needs at least one segment
	{"io.acme.orders.>", "io.acme.orders", false},
	{"*.>", "io", false},

	// Prefix tricks: segments compare whole, not as string prefixes.
	{"io.acme.*", "io.acmex.a", false},
	{"io.acme.>", "io.acmex.a", false},
	{"io.acme", "io.acmex", false},
	{"io.acmex", "io.acme", false},
	{"io.ac.>", "io.acme.x", false},

	// Case-sensitive segments: upper case is allowed and never folded.
	{"io.acme.devices.AB12.telemetry", "io.acme.devices.AB12.telemetry", true},
	{"io.acme.devices.*.telemetry", "io.acme.devices.AB12.telemetry", true},
	{"io.acme.devices.AB12.>", "io.acme.devices.AB12.telemetry", true},
	{"io.acme.devices.ab12.>", "io.acme.devices.AB12.telemetry", false},
	{"io.acme.devices.AB12.>", "io.acme.devices.ab12.telemetry", false},
	{"IO.acme", "IO.acme", true}, // Match knows no realm; Under and Validate* check it
	{"IO.acme", "io.acme", false},
	{"io.Acme.*", "io.acme.x", false},

	// Empty segments, leading and trailing dots.
	{"io.acme.*", "io.acme.", false},
	{"io.acme.>", "io.acme.", false},
	{"io.acme.>", "io.acme..x", false},
	{"io..acme", "io..acme", false},
	{".io.acme", ".io.acme", false},
	{"io.acme.", "io.acme.", false},
	{"*.acme", ".acme", false},
	{">", ".", false},
	{">", ".io", false},
	{"io.*", "io..", false},

	// Malformed patterns never match.
	{"io.>.orders", "io.acme.orders", false},
	{">.orders", "io.orders", false},
	{"io.a*", "io.a*", false},
	{"io.a*", "io.ab", false},
	{"io.*a", "io.ba", false},
	{"io.>>", "io.x", false},
	{"io.**", "io.x", false},
	{"io.a>", "io.a>", false},
	{"io.ac me", "io.ac me", false},

	// Malformed topics never match: they must be concrete and valid.
	{"io.*", "io.*", false},
	{"io.>", "io.>", false},
	{"io.>", "io.a.>", false},
	{"*", "*", false},
	{">", ">", false},
	{"io.>", "io.-X", false},
	{"io.>", "io.-x", false},

	// Empty strings.
	{"", "", false},
	{"", "io", false},
	{"io", "", false},
	{">", "", false},
	{"*", "", false},

	// Length limits apply to both sides.
	{">", strings.Repeat("a.", 127) + "a", false},
	{">", strings.Repeat("a.", 126) + "a", true},
	{"*", strings.Repeat("a", 64), false},
}

func TestMatch(t *testing.T) {
	for _, tt := range matchCases {
		if got := Match(tt.pattern, tt.topic); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.pattern, tt.topic, got, tt.want)
		}
	}
}

// TestMatchAgreesWithValidation checks the contract between the two halves:
// a topic that ValidateTopic accepts is matched by itself and by the
// realm's catch-all pattern, which ValidatePattern accepts.
func TestMatchAgreesWithValidation(t *testing.T) {
	for _, tt := range concreteCases {
		if tt.want != nil {
			continue
		}
		all := tt.realm + ".>"
		if err := ValidatePattern(tt.realm, all); err != nil {
			t.Fatalf("ValidatePattern(%q, %q): %v", tt.realm, all, err)
		}
		if !Match(tt.name, tt.name) || !Match(all, tt.name) {
			t.Errorf("topic %q not matched by itself or by %q", tt.name, all)
		}
	}
}

func TestIsPattern(t *testing.T) {
	for name, want := range map[string]bool{
		"io.acme.orders.*": true, "io.acme.>": true, "io.*.orders": true, "*": true, ">": true,
		"io.acme.orders": false, "io.acme.a*": false, "io.acme.>x": false, "": false,
	} {
		if got := IsPattern(name); got != want {
			t.Errorf("IsPattern(%q) = %v, want %v", name, got, want)
		}
	}
}
