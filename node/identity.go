package node

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/macula-io/macula/keyfile"
)

// KeyFile is the name of the key file in a node's data directory.
const KeyFile = "node.key"

// LoadKey reads the Ed25519 key in path (PKCS#8 PEM). It returns
// fs.ErrNotExist (wrapped) when there is no file, ErrCorruptKey when there is
// one that is not such a key.
func LoadKey(path string) (ed25519.PrivateKey, error) {
	k, err := keyfile.Load(path)
	if errors.Is(err, keyfile.ErrCorrupt) {
		return nil, fmt.Errorf("%w; move it away to create a new identity (a new DID)", err)
	}
	return k, err
}

// ReplaceKey writes key to path with mode 0600, atomically, replacing the
// file that is there. It creates the directory (0700) if needed.
func ReplaceKey(path string, key ed25519.PrivateKey) error {
	if err := keyfile.Save(path, key, true); err != nil {
		return fmt.Errorf("%w: %v", ErrDataDir, err)
	}
	return nil
}

// identity is the node's key and whether it still has to be written to disk.
type identity struct {
	priv    ed25519.PrivateKey
	p2p     crypto.PrivKey
	path    string // where to save it; empty when not kept on disk
	unsaved bool
}

// loadIdentity finds the node's key without changing anything on disk: an
// existing key file is read, a missing one means a new key in memory that
// persist writes once the node has started.
func loadIdentity(s *settings) (*identity, error) {
	if s.Key != nil {
		raw, err := s.Key.Raw()
		if err != nil || s.Key.Type() != crypto.Ed25519 {
			return nil, fmt.Errorf("%w: Key: an Ed25519 key is required", ErrConfig)
		}
		priv := ed25519.PrivateKey(raw)
		return &identity{priv: priv, p2p: s.Key}, nil
	}
	id := &identity{}
	if s.DataDir != "" {
		id.path = filepath.Join(s.DataDir, KeyFile)
		if err := checkDataDir(s.DataDir); err != nil {
			return nil, err
		}
		priv, err := LoadKey(id.path)
		switch {
		case err == nil:
			id.priv = priv
		case errors.Is(err, fs.ErrNotExist):
			id.unsaved = true
		case errors.Is(err, ErrCorruptKey):
			return nil, err
		default:
			return nil, fmt.Errorf("%w: reading %s: %v", ErrDataDir, id.path, err)
		}
	}
	if id.priv == nil {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		id.priv = priv
	}
	p2p, err := crypto.UnmarshalEd25519PrivateKey(id.priv)
	if err != nil {
		return nil, err
	}
	id.p2p = p2p
	return id, nil
}

// checkDataDir fails early, before anything starts, when the data directory
// is a file or sits under one. Permission problems show up in persist, which
// runs before the node reports that it started.
func checkDataDir(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("%w: %s: %s is not a directory", ErrDataDir, dir, d)
			}
			return nil
		}
		if errors.Is(err, syscall.ENOTDIR) {
			continue // a file further up; the walk finds and names it
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w: %s: %v", ErrDataDir, dir, err)
		}
		if parent := filepath.Dir(d); parent == d {
			return nil
		}
	}
}

// persist writes a newly created key. If the data directory did not exist
// and the write fails, the directories it made are removed again, so a
// failed start leaves the disk as it found it.
func (id *identity) persist() (created bool, err error) {
	if !id.unsaved {
		return false, nil
	}
	dir := filepath.Dir(id.path)
	var made []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		}
		made = append(made, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	if err := ReplaceKey(id.path, id.priv); err != nil {
		for _, d := range made { // deepest first
			os.Remove(d)
		}
		return false, fmt.Errorf("%w (saving %s)", err, id.path)
	}
	id.unsaved = false
	return true, nil
}
