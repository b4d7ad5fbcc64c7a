package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "node.json")
	for _, data := range []string{"first", "second, longer"} {
		if err := Write(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != data {
			t.Fatalf("read %q, %v; want %q", got, err, data)
		}
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, %v; want 0644", st.Mode(), err)
	}
	if err := Write(filepath.Join(dir, "private"), []byte("k"), 0o600); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(filepath.Join(dir, "private")); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode())
	}
	if err := Write(filepath.Join(dir, "no", "such", "dir"), nil, 0o600); err == nil {
		t.Error("a write into a missing directory succeeded")
	}
	leftovers(t, dir, 2)
}

// TestCreate checks that Create never replaces a file, even when writers
// race: exactly one wins, the others get fs.ErrExist.
func TestCreate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "authority.key")
	if err := Create(path, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Create(path, []byte("two"), 0o600); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second Create: %v, want fs.ErrExist", err)
	}
	if got, _ := os.ReadFile(path); string(got) != "one" {
		t.Fatalf("the file holds %q after a refused Create", got)
	}

	race := filepath.Join(dir, "race")
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { errs[i] = Create(race, []byte{byte('a' + i)}, 0o600) })
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, fs.ErrExist):
			t.Errorf("a racing Create: %v", err)
		}
	}
	if won != 1 {
		t.Errorf("%d racing Creates succeeded, want 1", won)
	}
	leftovers(t, dir, 2)
}

// leftovers checks that dir holds want files: no temporary file is left.
func leftovers(t *testing.T, dir string, want int) {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != want {
		var names []string
		for _, e := range es {
			names = append(names, e.Name())
		}
		t.Errorf("%s holds %v, want %d files", dir, names, want)
	}
}
