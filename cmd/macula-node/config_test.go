package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// parseRun parses args as run's flags, with env as the environment and file
// (if not empty) as the config file given by --config, and applies the
// sources as run does.
func parseRun(t *testing.T, args []string, env map[string]string, file string) (*runOptions, error) {
	t.Helper()
	if file != "" {
		p := filepath.Join(t.TempDir(), "node.toml")
		if err := os.WriteFile(p, []byte(file), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--config", p)
	}
	o := &runOptions{}
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	o.addFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse %v: %v", args, err)
	}
	return o, applySources(fs, func(k string) string { return env[k] }, configFlag)
}

func TestConfigPrecedence(t *testing.T) {
	const fullFile = `
realm = "io.file.realm"
name = "from-file"
data_dir = "/var/lib/macula"
listen = ["/ip4/0.0.0.0/udp/7500/quic-v1"]
bootstrap = ["/dns4/a/udp/7400/quic-v1/p2p/A", "/dns4/b/udp/7400/quic-v1/p2p/B"]
api = "127.0.0.1:7501"
http3 = "off"
log_level = "debug"
log_format = "json"
reconnect = false
reconnect_interval = "2s"
max_reconnect_attempts = 5
dht_mode = "client"
`
	cases := []struct {
		name  string
		args  []string
		env   map[string]string
		file  string
		check func(t *testing.T, o *runOptions)
	}{
		{
			name: "defaults",
			check: func(t *testing.T, o *runOptions) {
				eq(t, "realm", o.Realm, "")
				eq(t, "listen", o.Listen, []string{defaultListen})
				eq(t, "bootstrap", len(o.Bootstrap), 0)
				eq(t, "api", o.API, defaultAPI)
				eq(t, "http3", o.HTTP3, "") // the --api address: TestPlanHTTP3
				eq(t, "log level", o.LogLevel, "info")
				eq(t, "reconnect", o.Reconnect, true)
				eq(t, "reconnect interval", o.ReconnectInterval, time.Second)
				eq(t, "max reconnect attempts", o.MaxReconnectAttempts, 0)
				eq(t, "dht mode", o.DHTMode, "auto")
			},
		},
		{
			name: "file only",
			file: fullFile,
			check: func(t *testing.T, o *runOptions) {
				eq(t, "realm", o.Realm, "io.file.realm")
				eq(t, "name", o.Name, "from-file")
				eq(t, "data dir", o.DataDir, "/var/lib/macula")
				eq(t, "listen", o.Listen, []string{"/ip4/0.0.0.0/udp/7500/quic-v1"})
				eq(t, "bootstrap", o.Bootstrap, []string{"/dns4/a/udp/7400/quic-v1/p2p/A", "/dns4/b/udp/7400/quic-v1/p2p/B"})
				eq(t, "api", o.API, "127.0.0.1:7501")
				eq(t, "http3", o.HTTP3, "off")
				eq(t, "log level", o.LogLevel, "debug")
				eq(t, "log format", o.LogFormat, "json")
				eq(t, "reconnect", o.Reconnect, false)
				eq(t, "reconnect interval", o.ReconnectInterval, 2*time.Second)
				eq(t, "max reconnect attempts", o.MaxReconnectAttempts, 5)
				eq(t, "dht mode", o.DHTMode, "client")
			},
		},
		{
			name: "env over file",
			file: fullFile,
			env: map[string]string{
				"MACULA_REALM":              "io.env.realm",
				"MACULA_DATA_DIR":           "/srv/macula",
				"MACULA_RECONNECT":          "true",
				"MACULA_RECONNECT_INTERVAL": "3s",
			},
			check: func(t *testing.T, o *runOptions) {
				eq(t, "realm", o.Realm, "io.env.realm")
				eq(t, "data dir", o.DataDir, "/srv/macula")
				eq(t, "reconnect", o.Reconnect, true)
				eq(t, "reconnect interval", o.ReconnectInterval, 3*time.Second)
				eq(t, "name (file)", o.Name, "from-file")
			},
		},
		{
			name: "flag over env over file",
			args: []string{"--realm", "io.flag.realm", "--reconnect=false", "--reconnect-interval", "4s"},
			file: fullFile,
			env:  map[string]string{"MACULA_REALM": "io.env.realm", "MACULA_RECONNECT": "true", "MACULA_NAME": "from-env"},
			check: func(t *testing.T, o *runOptions) {
				eq(t, "realm", o.Realm, "io.flag.realm")
				eq(t, "reconnect", o.Reconnect, false)
				eq(t, "reconnect interval", o.ReconnectInterval, 4*time.Second)
				eq(t, "name (env)", o.Name, "from-env")
				eq(t, "api (file)", o.API, "127.0.0.1:7501")
			},
		},
		{
			name: "bootstrap from the file",
			file: `bootstrap = ["/f/1", "/f/2"]`,
			check: func(t *testing.T, o *runOptions) {
				eq(t, "bootstrap", o.Bootstrap, []string{"/f/1", "/f/2"})
			},
		},
		{
			name: "bootstrap from the environment replaces the file's",
			file: `bootstrap = ["/f/1", "/f/2"]`,
			env:  map[string]string{"MACULA_BOOTSTRAP": "/e/1, /e/2,/e/3"},
			check: func(t *testing.T, o *runOptions) {
				eq(t, "bootstrap", o.Bootstrap, []string{"/e/1", "/e/2", "/e/3"})
			},
		},
		{
			name: "bootstrap flags replace the environment's",
			args: []string{"--bootstrap", "/c/1", "--bootstrap", "/c/2"},
			file: `bootstrap = ["/f/1"]`,
			env:  map[string]string{"MACULA_BOOTSTRAP": "/e/1"},
			check: func(t *testing.T, o *runOptions) {
				eq(t, "bootstrap", o.Bootstrap, []string{"/c/1", "/c/2"})
			},
		},
		{
			name: "a scalar for a repeatable key",
			file: `bootstrap = "/f/1"`,
			check: func(t *testing.T, o *runOptions) {
				eq(t, "bootstrap", o.Bootstrap, []string{"/f/1"})
			},
		},
		{
			name: "config file named by MACULA_CONFIG",
			env:  map[string]string{"MACULA_CONFIG": "set below"},
			check: func(t *testing.T, o *runOptions) {
				eq(t, "realm", o.Realm, "io.file.realm")
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.env["MACULA_CONFIG"] == "set below" {
				p := filepath.Join(t.TempDir(), "node.toml")
				if err := os.WriteFile(p, []byte(fullFile), 0o644); err != nil {
					t.Fatal(err)
				}
				c.env = map[string]string{"MACULA_CONFIG": p}
			}
			o, err := parseRun(t, c.args, c.env, c.file)
			if err != nil {
				t.Fatal(err)
			}
			c.check(t, o)
		})
	}
}

func TestConfigErrors(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  map[string]string
		file string
		want []string // the error must contain each
	}{
		{name: "unknown key", file: "realm = \"io.a.b\"\ncolour = \"red\"\n", want: []string{"unknown key", `"colour"`}},
		{name: "flag spelling as key", file: `data-dir = "/x"`, want: []string{"unknown key", `"data-dir"`}},
		{name: "config names itself", file: `config = "/other.toml"`, want: []string{"unknown key", `"config"`}},
		{name: "bad duration in the file", file: `reconnect_interval = "soon"`, want: []string{"reconnect_interval", `"soon"`}},
		{name: "duration without unit", file: `reconnect_interval = 2`, want: []string{"reconnect_interval"}},
		{name: "bad bool in the file", file: `reconnect = "maybe"`, want: []string{"reconnect"}},
		{name: "list for a single value", file: `realm = ["io.a.b", "io.c.d"]`, want: []string{"realm", "want one value"}},
		{name: "table", file: "[realm]\nname = \"x\"\n", want: []string{"realm", "table"}},
		{name: "not TOML", file: "realm = \n", want: []string{"config file"}},
		{name: "bad duration in the environment", env: map[string]string{"MACULA_RECONNECT_INTERVAL": "soon"}, want: []string{"MACULA_RECONNECT_INTERVAL", "soon"}},
		{name: "bad int in the environment", env: map[string]string{"MACULA_MAX_RECONNECT_ATTEMPTS": "lots"}, want: []string{"MACULA_MAX_RECONNECT_ATTEMPTS"}},
		{name: "missing file", args: []string{"--config", "/nonexistent/macula.toml"}, want: []string{"/nonexistent/macula.toml", "does not exist"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := parseRun(t, c.args, c.env, c.file)
			if err == nil {
				t.Fatalf("no error, want one saying %q", c.want)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
		})
	}
}

// A flag that beats a bad value in the environment or the file hides it:
// the losing sources are not parsed.
func TestConfigLosingSourcesIgnored(t *testing.T) {
	o, err := parseRun(t, []string{"--reconnect-interval", "5s"},
		map[string]string{"MACULA_RECONNECT_INTERVAL": "soon"}, `reconnect_interval = "later"`)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "reconnect interval", o.ReconnectInterval, 5*time.Second)
}

func TestSanitizeName(t *testing.T) {
	for in, want := range map[string]string{
		"Worker-1":              "worker-1",
		"build.example.com":     "build",
		"My Laptop":             "my-laptop",
		"_x":                    "x",
		"":                      "node",
		"...":                   "node",
		"ünïcode":               "n-code",
		strings.Repeat("a", 70): strings.Repeat("a", 63),
	} {
		if got := sanitizeName(in); got != want {
			t.Errorf("sanitizeName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestOneLine(t *testing.T) {
	if got := oneLine("a\nb\r\n\nc\n"); got != "a; b; c" {
		t.Errorf("oneLine = %q", got)
	}
}

func eq[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	switch g := any(got).(type) {
	case []string:
		if !slices.Equal(g, any(want).([]string)) {
			t.Errorf("%s = %q, want %v", what, g, any(want))
		}
	default:
		if any(got) != any(want) {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
}
