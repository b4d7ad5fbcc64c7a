package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// lockFile is the file in a data directory that run holds locked while its
// node runs. Two nodes on one directory would be one identity twice (one
// key, one replay cache, one node.json, which the first to exit removes
// under the other), so a second run on a directory in use is refused.
const lockFile = "lock"

// errDataDirInUse is the refusal of a data directory that another process
// holds.
var errDataDirInUse = errors.New("data directory in use")

// dirLock is a held lock on a data directory.
type dirLock struct {
	f *os.File
}

// lockDataDir creates dir (0700) if needed and takes its lock without
// waiting; it writes this process's ID into the lock file, so that a
// refused second node can say which process holds it. The lock ends with
// release or with the process: the system drops it whatever way the
// process ends, so a crash never leaves a directory locked.
func lockDataDir(dir string) (*dirLock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir %s: %w", dir, err)
	}
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("data dir %s: %w", dir, err)
	}
	if err := tryLock(f); err != nil {
		f.Close()
		if errors.Is(err, errLocked) {
			holder := ""
			if b, rerr := os.ReadFile(path); rerr == nil {
				if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil && pid > 0 {
					holder = fmt.Sprintf(" (pid %d)", pid)
				}
			}
			return nil, fmt.Errorf("%w: %s is used by another macula-node%s; give each node its own --data-dir", errDataDirInUse, dir, holder)
		}
		return nil, fmt.Errorf("data dir %s: locking %s: %w", dir, lockFile, err)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &dirLock{f: f}, nil
}

// release drops the lock. The file stays: removing it would let a node
// that opened it just before lock a file nobody else can find.
func (l *dirLock) release() {
	if l != nil && l.f != nil {
		unlock(l.f)
		l.f.Close()
		l.f = nil
	}
}
