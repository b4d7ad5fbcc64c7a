package main

import "testing"

func TestGoRunCommand(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"go", "run", "./cmd/macula-node", "dev"}, "go run ./cmd/macula-node"},
		{[]string{"/usr/local/go/bin/go", "run", "-race", "-tags", "x y", "./cmd/macula-node", "--api", "a", "dev"}, "go run ./cmd/macula-node"},
		{[]string{"go", "run", "-ldflags=-s", ".", "dev"}, "go run ."},
		{[]string{"go", "run", "-C", "/src", "github.com/macula-io/macula/cmd/macula-node@latest", "dev"}, "go run github.com/macula-io/macula/cmd/macula-node@latest"},
		{[]string{"go", "run", "main.go", "root.go", "dev"}, "go run main.go root.go"},
		{[]string{"go", "run", "--", "./cmd/macula-node"}, "go run ./cmd/macula-node"},
		{[]string{"go", "build"}, "go run ./cmd/macula-node"},
		{[]string{"go", "run"}, "go run ./cmd/macula-node"},
		{nil, "go run ./cmd/macula-node"},
	} {
		if got := goRunCommand(tc.args); got != tc.want {
			t.Errorf("goRunCommand(%q) = %q, want %q", tc.args, got, tc.want)
		}
	}
}

func TestIsGoRunBinary(t *testing.T) {
	for exe, want := range map[string]bool{
		"/tmp/go-build2416942713/b001/exe/macula-node":              true,
		"/root/.cache/go-build/d1/d158a7831648047be5-d/macula-node": true,
		"/home/me/src/macula/bin/macula-node":                       false,
		"/usr/local/bin/macula-node":                                false,
		"/tmp/macula-node-test-123/macula-node":                     false,
		"/home/me/go-builds-are-fun/macula-node":                    true, // a false positive we accept
		"/home/me/go/bin/macula-node":                               false,
	} {
		if got := isGoRunBinary(exe); got != want {
			t.Errorf("isGoRunBinary(%q) = %v, want %v", exe, got, want)
		}
	}
}

func TestCommandFor(t *testing.T) {
	exe := binPath
	onPath := func(string) string { return exe }
	elsewhere := func(string) string { return "/nonexistent/macula-node" }
	none := func(string) string { return "" }
	for _, tc := range []struct {
		arg0   string
		lookup func(string) string
		want   string
	}{
		{"macula-node", onPath, "macula-node"},
		{exe, onPath, "macula-node"},
		{"bin/macula-node", elsewhere, "bin/macula-node"},
		{"./macula-node", none, "./macula-node"},
		{"macula-node", none, exe}, // started by name but PATH finds another: the full path
	} {
		if got := commandFor(tc.arg0, exe, tc.lookup); got != tc.want {
			t.Errorf("commandFor(%q) = %q, want %q", tc.arg0, got, tc.want)
		}
	}
}
