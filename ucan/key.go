package ucan

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"

	"github.com/macula-io/macula/keyfile"
	"github.com/macula-io/macula/realm"
)

// AuthorityKeyFile is the conventional name of a realm authority's key file,
// kept like a node key: PKCS#8 PEM, mode 0600.
const AuthorityKeyFile = "authority.key"

// GenerateKey returns a new Ed25519 key.
func GenerateKey() (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	return priv, err
}

// KeyDID returns the did:key that names key's public half.
func KeyDID(key ed25519.PrivateKey) string {
	return realm.DIDKey(key.Public().(ed25519.PublicKey))
}

// CreateKey generates a key and writes it to path (see SaveNewKey). It never
// replaces an existing file: a realm's authority key is its identity, and a
// new one would orphan every delegation issued so far.
func CreateKey(path string) (ed25519.PrivateKey, error) {
	key, err := GenerateKey()
	if err != nil {
		return nil, err
	}
	if err := SaveNewKey(path, key); err != nil {
		return nil, err
	}
	return key, nil
}

// SaveNewKey writes key to path as a PKCS#8 PEM block with mode 0600,
// creating the directory (0700) if needed. The file appears whole or not at
// all, and an existing file is never replaced: the error then wraps
// fs.ErrExist (node.ReplaceKey writes the same format over a file).
func SaveNewKey(path string, key ed25519.PrivateKey) error {
	if len(key) != ed25519.PrivateKeySize {
		return fmt.Errorf("%w: key is %d bytes, want %d", ErrIssue, len(key), ed25519.PrivateKeySize)
	}
	return keyfile.Save(path, key, false)
}

// LoadKey reads an Ed25519 key written by SaveNewKey (or node.ReplaceKey:
// the format is the same). A missing file yields an error wrapping
// fs.ErrNotExist; a file that is not such a key, ErrCorruptKey.
func LoadKey(path string) (ed25519.PrivateKey, error) { return keyfile.Load(path) }
