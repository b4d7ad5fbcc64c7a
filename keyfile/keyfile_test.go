package keyfile

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestSaveLoad(t *testing.T) {
	_, k1, _ := ed25519.GenerateKey(rand.Reader)
	_, k2, _ := ed25519.GenerateKey(rand.Reader)
	path := filepath.Join(t.TempDir(), "deep", "dir", "k.key")
	if err := Save(path, k1, false); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	if di, _ := os.Stat(filepath.Dir(path)); di.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode %v, want 0700", di.Mode().Perm())
	}
	got, err := Load(path)
	if err != nil || !bytes.Equal(got, k1) {
		t.Fatalf("Load = %v", err)
	}
	if err := Save(path, k2, false); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Save over an existing key without replace: %v", err)
	}
	if got, _ := Load(path); !bytes.Equal(got, k1) {
		t.Fatal("the key was replaced")
	}
	if err := Save(path, k2, true); err != nil {
		t.Fatal(err)
	}
	if got, _ := Load(path); !bytes.Equal(got, k2) {
		t.Fatal("replace did not replace")
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(filepath.Join(dir, "none")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing: %v", err)
	}
	for name, body := range map[string]string{
		"garbage":   "not a key",
		"wrong pem": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
		"bad der":   "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
	} {
		p := filepath.Join(dir, name)
		_ = os.WriteFile(p, []byte(body), 0o600)
		if _, err := Load(p); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%s: %v, want ErrCorrupt", name, err)
		}
	}
}
