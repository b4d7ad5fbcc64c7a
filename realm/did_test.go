package realm

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"

	"github.com/mr-tron/base58"
)

// Ed25519 examples from the did:key method specification
// (https://w3c-ccg.github.io/did-key-spec/).
var specDIDKeys = []string{
	"did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp",
	"did:key:z6MkpTHR8VNsBxYAAWHut2Geadd9jSwuBV8xRoAnwWsdvktH",
}

func TestDIDKeySpecVectors(t *testing.T) {
	for _, did := range specDIDKeys {
		pub, err := ParseDIDKey(did)
		if err != nil {
			t.Fatalf("ParseDIDKey(%q): %v", did, err)
		}
		if len(pub) != ed25519.PublicKeySize {
			t.Fatalf("ParseDIDKey(%q): %d-byte key", did, len(pub))
		}
		if got := DIDKey(pub); got != did {
			t.Errorf("DIDKey(ParseDIDKey(%q)) = %q", did, got)
		}
	}
}

func TestDIDKeyRoundTrip(t *testing.T) {
	for i := range 64 {
		seed := bytes.Repeat([]byte{byte(i)}, ed25519.SeedSize)
		pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
		did := DIDKey(pub)
		// Every Ed25519 did:key starts with z6Mk: the multicodec prefix
		// fixes the leading base58 digits.
		if !strings.HasPrefix(did, "did:key:z6Mk") {
			t.Fatalf("DIDKey = %q, want prefix did:key:z6Mk", did)
		}
		got, err := ParseDIDKey(did)
		if err != nil {
			t.Fatalf("ParseDIDKey(%q): %v", did, err)
		}
		if !pub.Equal(got) {
			t.Fatalf("round trip of %x gave %x", pub, got)
		}
	}
}

func TestDIDKeyPanicsOnBadLength(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("DIDKey of a 31-byte key did not panic")
		}
	}()
	DIDKey(make(ed25519.PublicKey, 31))
}

// didKeyOf encodes raw multicodec bytes as a did:key, to build bad inputs.
func didKeyOf(raw ...[]byte) string {
	return "did:key:z" + base58.Encode(bytes.Join(raw, nil))
}

func TestParseDIDKeyErrors(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	tests := []struct {
		did, want string
	}{
		{"", `does not start with "did:key:"`},
		{"did:macula:io.acme.x", `does not start with "did:key:"`},
		{"DID:KEY:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp", `does not start with "did:key:"`},
		{"did:key:", "has no key"},
		{"did:key:z", "has no key"},
		{"did:key:u7QE", `multibase prefix "u" is not 'z' (base58btc)`},
		{"did:key:f" + strings.Repeat("0", 68), `multibase prefix "f"`},
		{"did:key:z6Mk0OIl", "not valid base58btc"},
		{"did:key:z6Mk#frag", "not valid base58btc"},
		{"did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme", "multicodec 0xe7 is not ed25519-pub"}, // secp256k1
		{didKeyOf([]byte{0x12, 0x20}, key), "multicodec 0x12 is not ed25519-pub"},
		{didKeyOf([]byte{0x00}, key), "multicodec 0x0 is not ed25519-pub"},
		{didKeyOf([]byte{0xed, 0x81, 0x00}, key), "not minimally encoded"},
		{didKeyOf([]byte{0xed}), "malformed multicodec prefix"},
		{didKeyOf([]byte{0xed, 0x01}, key[:31]), "key is 31 bytes"},
		{didKeyOf([]byte{0xed, 0x01}, key, []byte{0}), "key is 33 bytes"},
		{didKeyOf([]byte{0xed, 0x01}), "key is 0 bytes"},
		{"did:key:z" + strings.Repeat("2", 200), "bytes long"},
	}
	for _, tt := range tests {
		t.Run(tt.did, func(t *testing.T) {
			pub, err := ParseDIDKey(tt.did)
			if err == nil {
				t.Fatalf("ParseDIDKey(%q) = %x, want error", tt.did, pub)
			}
			if !errors.Is(err, ErrInvalidDID) {
				t.Fatalf("error %q does not wrap ErrInvalidDID", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

func TestAlias(t *testing.T) {
	if got, want := Alias(acme, "worker-1"), "did:macula:io.acme.orders.worker-1"; got != want {
		t.Fatalf("Alias = %q, want %q", got, want)
	}
}

func TestParseAlias(t *testing.T) {
	tests := []struct {
		did         string
		realm, name string
		want        string // error substring; "" means success
		nameErr     bool   // the error is about the realm or name, so also ErrInvalid
	}{
		{did: "did:macula:io.acme.orders.worker-1", realm: acme, name: "worker-1"},
		{did: "did:macula:io.acme.bob", realm: "io.acme", name: "bob"},
		{did: "did:macula:a.b.c.d.e", realm: "a.b.c.d", name: "e"},
		{did: "did:macula:io.acme." + long63, realm: "io.acme", name: long63},
		{did: "", want: `does not start with "did:macula:"`},
		{did: "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp", want: `does not start with "did:macula:"`},
		{did: "did:macula:", want: "needs <realm>.<name>"},
		{did: "did:macula:bob", want: "needs <realm>.<name>"},
		{did: "did:macula:acme.bob", want: "needs at least two segments", nameErr: true},
		{did: "did:macula:io.acme.", want: "alias name \"\": empty", nameErr: true},
		{did: "did:macula:.io.acme.bob", want: "empty segment at position 1", nameErr: true},
		{did: "did:macula:io..acme.bob", want: "empty segment at position 2", nameErr: true},
		{did: "did:macula:io.acme.Bob", want: "uppercase", nameErr: true},
		{did: "did:macula:io.Acme.bob", want: "uppercase", nameErr: true},
		{did: "did:macula:io.acme.*", want: "wildcards are not allowed in an alias name", nameErr: true},
		{did: "did:macula:io.acme.-bob", want: "must start with a letter or digit", nameErr: true},
		{did: "did:macula:io.acme." + long63 + "a", want: "64 bytes long", nameErr: true},
		{did: "did:macula:" + strings.Repeat("a.", 127) + "a", want: "255 bytes after"},
	}
	for _, tt := range tests {
		t.Run(tt.did, func(t *testing.T) {
			realm, name, err := ParseAlias(tt.did)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("ParseAlias(%q): %v", tt.did, err)
				}
				if realm != tt.realm || name != tt.name {
					t.Fatalf("ParseAlias(%q) = %q, %q; want %q, %q", tt.did, realm, name, tt.realm, tt.name)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseAlias(%q) = %q, %q; want error", tt.did, realm, name)
			}
			if !errors.Is(err, ErrInvalidDID) || errors.Is(err, ErrInvalid) != tt.nameErr {
				t.Fatalf("error %q: ErrInvalidDID %v, ErrInvalid %v", err, errors.Is(err, ErrInvalidDID), errors.Is(err, ErrInvalid))
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}
