// Package keyfile keeps Ed25519 private keys on disk the way every Macula key
// is kept (a node's identity, a realm authority): one PKCS#8 PEM "PRIVATE
// KEY" block, mode 0600, in a directory of mode 0700, written atomically so
// that a crash leaves the old file or the new one, never half of one.
package keyfile

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/macula-io/macula/internal/atomicfile"
)

// ErrCorrupt: the file exists but is not an Ed25519 key in PKCS#8 PEM.
var ErrCorrupt = errors.New("corrupt key file")

// Load reads the Ed25519 key in path. A missing file is an error wrapping
// fs.ErrNotExist; a file that is not such a key, ErrCorrupt.
func Load(path string) (ed25519.PrivateKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(raw)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%w: %s is not a PEM \"PRIVATE KEY\" block", ErrCorrupt, path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, path, err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: %s holds a %T, want an Ed25519 key", ErrCorrupt, path, k)
	}
	return ek, nil
}

// Save writes key to path, creating the directory if needed. With replace
// false an existing file is never replaced (the error wraps fs.ErrExist),
// even by a writer racing this one: the file is linked into place, and a
// link fails where a rename would overwrite.
func Save(path string, key ed25519.PrivateKey, replace bool) error {
	if len(key) != ed25519.PrivateKeySize {
		return fmt.Errorf("keyfile: key is %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if replace {
		return atomicfile.Write(path, data, 0o600)
	}
	return atomicfile.Create(path, data, 0o600)
}
