package main

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// runArgs is a run command line that would start a node on loopback with
// random ports in dir/data; set overrides a flag's value, "" drops the flag.
func runArgs(dir string, set map[string]string, extra ...string) []string {
	flags := map[string]string{
		"realm":    "io.bad.input",
		"name":     "t1",
		"data-dir": filepath.Join(dir, "data"),
		"listen":   "/ip4/127.0.0.1/udp/0/quic-v1",
		"api":      "127.0.0.1:0",
		"http3":    "off",
	}
	maps.Copy(flags, set)
	args := []string{"run"}
	for _, k := range slices.Sorted(maps.Keys(flags)) {
		if v := flags[k]; v != "" {
			args = append(args, "--"+k, v)
		}
	}
	return append(args, extra...)
}

// snapshot is every path under a directory with its type, mode and content.
func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		desc := fi.Mode().String()
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" %x", sha256.Sum256(b))
		}
		out[p] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRunBadInput checks that every kind of bad input to run gives one
// clear error line, a non-zero exit, and no change on disk.
func TestRunBadInput(t *testing.T) {
	t.Parallel()
	type tc struct {
		name string
		// setup prepares dir and returns the arguments and environment.
		setup func(t *testing.T, dir string) (args, env []string)
		code  int    // wanted exit code
		want  string // a word the error line must contain
	}
	busyUDP := func(t *testing.T) string {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		return pc.LocalAddr().String()
	}
	flagsOnly := func(set map[string]string, extra ...string) func(*testing.T, string) ([]string, []string) {
		return func(_ *testing.T, dir string) ([]string, []string) { return runArgs(dir, set, extra...), nil }
	}
	writeConfig := func(dir, body string) string {
		p := filepath.Join(dir, "node.toml")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			panic(err)
		}
		return p
	}
	cases := []tc{
		{name: "realm with an uppercase letter", setup: flagsOnly(map[string]string{"realm": "Io.Acme"}), code: 2, want: "realm"},
		{name: "realm of one segment", setup: flagsOnly(map[string]string{"realm": "acme"}), code: 2, want: "realm"},
		{name: "no realm", setup: flagsOnly(map[string]string{"realm": ""}), code: 2, want: "realm is required"},
		{name: "bad node name", setup: flagsOnly(map[string]string{"name": "Bad Name"}), code: 2, want: "name"},
		{name: "bootstrap not a multiaddr", setup: flagsOnly(map[string]string{"bootstrap": "not-a-multiaddr"}), code: 2, want: "bootstrap"},
		{name: "bootstrap without /p2p", setup: flagsOnly(map[string]string{"bootstrap": "/ip4/127.0.0.1/udp/4001/quic-v1"}), code: 2, want: "bootstrap"},
		{name: "listen not QUIC", setup: flagsOnly(map[string]string{"listen": "/ip4/127.0.0.1/tcp/0"}), code: 2, want: "QUIC"},
		{name: "busy QUIC port", code: 1, want: "--listen: cannot listen",
			setup: func(t *testing.T, dir string) ([]string, []string) {
				_, port, _ := net.SplitHostPort(busyUDP(t))
				return runArgs(dir, map[string]string{"listen": "/ip4/127.0.0.1/udp/" + port + "/quic-v1"}), nil
			}},
		{name: "busy API port", code: 1, want: "--api 127.0.0.1:",
			setup: func(t *testing.T, dir string) ([]string, []string) {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { ln.Close() })
				return runArgs(dir, map[string]string{"api": ln.Addr().String()}), nil
			}},
		{name: "busy HTTP/3 port", code: 1, want: "--http3 127.0.0.1:",
			setup: func(t *testing.T, dir string) ([]string, []string) {
				return runArgs(dir, map[string]string{"http3": busyUDP(t)}), nil
			}},
		{name: "bad API address", setup: flagsOnly(map[string]string{"api": "localhost"}), code: 2, want: "api"},
		{name: "data dir under a file", code: 1, want: "not a directory",
			setup: func(t *testing.T, dir string) ([]string, []string) {
				f := filepath.Join(dir, "file")
				if err := os.WriteFile(f, []byte("a file"), 0o644); err != nil {
					t.Fatal(err)
				}
				return runArgs(dir, map[string]string{"data-dir": filepath.Join(f, "sub")}), nil
			}},
		{name: "corrupt key file", code: 1, want: "corrupt",
			setup: func(t *testing.T, dir string) ([]string, []string) {
				data := filepath.Join(dir, "data")
				if err := os.MkdirAll(data, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(data, "node.key"), []byte("garbage, not a key\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				return runArgs(dir, nil), nil
			}},
		{name: "bad log level", setup: flagsOnly(map[string]string{"log-level": "loud"}), code: 2, want: "log level"},
		{name: "bad dht mode", setup: flagsOnly(map[string]string{"dht-mode": "peer"}), code: 2, want: "dht mode"},
		{name: "unknown config key", code: 2, want: `"colour"`,
			setup: func(t *testing.T, dir string) ([]string, []string) {
				return runArgs(dir, map[string]string{"config": writeConfig(dir, "colour = \"red\"\n")}), nil
			}},
		{name: "bad duration in config", code: 2, want: "reconnect_interval",
			setup: func(t *testing.T, dir string) ([]string, []string) {
				return runArgs(dir, map[string]string{"config": writeConfig(dir, "reconnect_interval = \"soon\"\n")}), nil
			}},
		{name: "missing config file", setup: flagsOnly(map[string]string{"config": "/nonexistent/node.toml"}), code: 2, want: "does not exist"},
		{name: "bad duration in environment", code: 2, want: "MACULA_RECONNECT_INTERVAL",
			setup: func(t *testing.T, dir string) ([]string, []string) {
				return runArgs(dir, nil), []string{"MACULA_RECONNECT_INTERVAL=soon"}
			}},
		{name: "bad realm in environment", code: 2, want: "realm",
			setup: func(t *testing.T, dir string) ([]string, []string) {
				return runArgs(dir, map[string]string{"realm": ""}), []string{"MACULA_REALM=Io.Acme"}
			}},
		{name: "unknown flag", setup: flagsOnly(nil, "--bogus"), code: 2, want: "unknown flag"},
		{name: "unexpected argument", setup: flagsOnly(nil, "extra"), code: 2, want: "no arguments"},
		{name: "bad flag value", setup: flagsOnly(map[string]string{"max-reconnect-attempts": "many"}), code: 2, want: "max-reconnect-attempts"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			args, env := c.setup(t, dir)
			before := snapshot(t, dir)
			start := time.Now()
			r := runCmd(t, 20*time.Second, env, args...)
			if r.code != c.code {
				t.Errorf("exit code %d, want %d", r.code, c.code)
			}
			lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "macula-node: ") {
				t.Errorf("stderr is not one line \"macula-node: ...\":\n%s", r.stderr)
			}
			if !strings.Contains(r.stderr, c.want) {
				t.Errorf("stderr %q does not say %q", strings.TrimSpace(r.stderr), c.want)
			}
			if r.stdout != "" {
				t.Errorf("stdout: %q", r.stdout)
			}
			after := snapshot(t, dir)
			if !maps.Equal(before, after) {
				t.Errorf("the disk changed:\nbefore %v\nafter  %v", before, after)
			}
			t.Logf("%v: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(r.stderr))
		})
	}
}

// TestUsageErrors: command lines that are wrong exit 2 with one line that
// says what is wrong, before anything is asked of a node.
func TestUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"pub", "x", "--data", "1"}, `unknown command "pub" for "macula-node"; did you mean "publish"?`},
		{[]string{"--api", "127.0.0.1:1", "pub", "x"}, `did you mean "publish"?`},
		{[]string{"dht", "lokup", "x", "--json"}, `unknown command "lokup" for "macula-node dht"; did you mean "lookup"?`},
		{[]string{"publish", ""}, "publish: TOPIC is empty"},
		{[]string{"call", " "}, "call: PROCEDURE is empty"},
		{[]string{"subscribe", ""}, "subscribe: PATTERN is empty"},
		{[]string{"dht", "lookup", ""}, "dht lookup: KEY is empty"},
		{[]string{"dev", "--log-level", "loud"}, "log level"},
		{[]string{"dev", "--api", "nonsense"}, "--api"},
		{[]string{"dev", "--nodes", "0"}, "--nodes"},
		{[]string{"run", "--log-level", "loud", "--realm", "io.x.y"}, "log level"},
		{[]string{"run"}, "realm is required"},
	} {
		r := runCmd(t, 20*time.Second, nil, tc.args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, tc.want) || strings.Count(r.stderr, "\n") != 1 || r.stdout != "" {
			t.Errorf("macula-node %q: exit %d, stderr %q, stdout %q; want exit %d and %q", tc.args, r.code, r.stderr, r.stdout, exitUsage, tc.want)
		}
	}
}
