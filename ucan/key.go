package ucan

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

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

// CreateKey generates a key and writes it to path (see SaveKey). It never
// replaces an existing file: a realm's authority key is its identity, and a
// new one would orphan every delegation issued so far.
func CreateKey(path string) (ed25519.PrivateKey, error) {
	key, err := GenerateKey()
	if err != nil {
		return nil, err
	}
	if err := SaveKey(path, key); err != nil {
		return nil, err
	}
	return key, nil
}

// SaveKey writes key to path as a PKCS#8 PEM block with mode 0600, creating
// the directory (0700) if needed. The file appears whole or not at all
// (written to a temporary file, then linked into place), and an existing file
// is never replaced: the error then wraps fs.ErrExist.
func SaveKey(path string, key ed25519.PrivateKey) error {
	if len(key) != ed25519.PrivateKeySize {
		return fmt.Errorf("%w: key is %d bytes, want %d", ErrIssue, len(key), ed25519.PrivateKeySize)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("%s: %w", path, fs.ErrExist)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".ucan-key-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if err := pem.Encode(tmp, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	// Link, unlike Rename, fails when path exists: no race can replace a key.
	if err := os.Link(tmp.Name(), path); err != nil {
		return err
	}
	return nil
}

// LoadKey reads an Ed25519 key written by SaveKey (or node.SaveKey: the
// format is the same). A missing file yields an error wrapping
// fs.ErrNotExist; a file that is not such a key, ErrCorruptKey.
func LoadKey(path string) (ed25519.PrivateKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(raw)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%w: %s is not a PEM \"PRIVATE KEY\" block", ErrCorruptKey, path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorruptKey, path, err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: %s holds a %T, want an Ed25519 key", ErrCorruptKey, path, k)
	}
	return ek, nil
}
