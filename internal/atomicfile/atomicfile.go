// Package atomicfile writes files whole or not at all: the data goes to a
// temporary file in the same directory, which is synced and then renamed
// (or linked) into place, so that a crash or a concurrent reader sees the
// old file or the complete new one, never part of it. Key files, the
// API's certificate, node.json and UCAN chains are written this way.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Write writes data to path with mode perm, replacing the file that is
// there. The directory must exist.
func Write(path string, data []byte, perm fs.FileMode) error {
	return write(path, data, perm, true)
}

// Create writes data to path with mode perm unless a file is there: then
// the error wraps fs.ErrExist and the file is left as it is, even when a
// writer racing this one made it (the new file is linked into place, and a
// link fails where a rename would replace). The directory must exist.
func Create(path string, data []byte, perm fs.FileMode) error {
	return write(path, data, perm, false)
}

func write(path string, data []byte, perm fs.FileMode, replace bool) error {
	if !replace {
		// Fail early, before writing anything; the link below is what
		// settles a race.
		if _, err := os.Lstat(path); err == nil {
			return fmt.Errorf("%s: %w", path, fs.ErrExist)
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after a rename
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
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
	if replace {
		return os.Rename(tmp.Name(), path)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s: %w", path, fs.ErrExist)
		}
		return err
	}
	return nil
}
