package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every client command makes its client with newAPIClient, which finds the
// node's local credential: one made with api.NewClient would be refused on
// a secure node's loopback API (401).
func TestClientsFindCredential(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") || f == "credential.go" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "api.NewClient(") || strings.Contains(line, "api.NewHTTP3Client(") {
				t.Errorf("%s:%d: a client made without newAPIClient: %s", f, i+1, strings.TrimSpace(line))
			}
		}
	}
}
