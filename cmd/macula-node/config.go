package main

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/spf13/pflag"
)

// The settings of a command have one source of truth: its flag definitions.
// Each flag can also be given
//
//   - as an environment variable MACULA_<FLAG>, the flag's name upper-cased
//     with '-' turned into '_' (MACULA_REALM, MACULA_DATA_DIR); a repeatable
//     flag takes a comma-separated list (MACULA_BOOTSTRAP=a,b);
//   - for run, as a key of the TOML config file named by --config (or
//     MACULA_CONFIG): the flag's name with '-' turned into '_'
//     (realm = "io.acme.orders", bootstrap = ["..."], reconnect_interval = "2s").
//
// The command line beats the environment, which beats the file, which beats
// the defaults. applySources does it over the parsed FlagSet, so a new flag
// gets its variable and its key with no more code.

// configFlag is the name of the flag naming the config file.
const configFlag = "config"

// envName is the environment variable of a flag.
func envName(flag string) string {
	return "MACULA_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// fileKey is the config file key of a flag.
func fileKey(flag string) string { return strings.ReplaceAll(flag, "-", "_") }

// noSource lists flags that only the command line sets.
var noSource = map[string]bool{"help": true}

// applySources fills the flags of fs that the command line did not set, from
// the environment (read through getenv) and then from the config file. cfgFlag
// names the flag holding the config file's path; "" means the command reads
// no file. Errors name the variable or the key and the value; they are usage
// errors (exit code 2): a setting is wrong, wherever it was given.
func applySources(fs *pflag.FlagSet, getenv func(string) string, cfgFlag string) error {
	if err := fillFromSources(fs, getenv, cfgFlag); err != nil {
		return &usageError{err: err}
	}
	return nil
}

func fillFromSources(fs *pflag.FlagSet, getenv func(string) string, cfgFlag string) error {
	fromEnv := map[string]string{}
	var envErr error
	fs.VisitAll(func(f *pflag.Flag) {
		if envErr != nil || f.Changed || noSource[f.Name] {
			return
		}
		v := getenv(envName(f.Name))
		if v == "" {
			return
		}
		fromEnv[f.Name] = v
		if err := setValue(f, splitList(f, v)); err != nil {
			envErr = fmt.Errorf("%s=%q: %w", envName(f.Name), v, err)
		}
	})
	if envErr != nil {
		return envErr
	}
	if cfgFlag == "" {
		return nil
	}
	cf := fs.Lookup(cfgFlag)
	if cf == nil || cf.Value.String() == "" {
		return nil
	}
	return applyFile(fs, cf.Value.String(), cfgFlag, fromEnv)
}

// applyFile sets, from the TOML file at path, every flag that neither the
// command line nor the environment set. Every key must name a flag.
func applyFile(fs *pflag.FlagSet, path, cfgFlag string, fromEnv map[string]string) error {
	var raw map[string]any
	if _, err := toml.DecodeFile(path, &raw); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("config file %s does not exist", path)
		}
		return fmt.Errorf("config file %s: %s", path, oneLine(err.Error()))
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		name := strings.ReplaceAll(k, "_", "-")
		f := fs.Lookup(name)
		if f == nil || name == cfgFlag || noSource[name] || fileKey(name) != k {
			return fmt.Errorf("config file %s: unknown key %q", path, k)
		}
		if f.Changed {
			continue
		}
		if _, ok := fromEnv[name]; ok {
			continue
		}
		vals, err := tomlStrings(raw[k])
		if err == nil {
			_, isSlice := f.Value.(pflag.SliceValue)
			if len(vals) != 1 && !isSlice {
				err = fmt.Errorf("want one value, got a list of %d", len(vals))
			} else {
				err = setValue(f, vals)
			}
		}
		if err != nil {
			return fmt.Errorf("config file %s: %s: %w", path, k, err)
		}
	}
	return nil
}

// splitList turns an environment value into the flag's values: a list
// separated by commas for a repeatable flag, the value itself otherwise.
func splitList(f *pflag.Flag, v string) []string {
	if _, ok := f.Value.(pflag.SliceValue); !ok {
		return []string{v}
	}
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// setValue gives f the values vals, replacing its default. It does not
// mark the flag as set on the command line.
func setValue(f *pflag.Flag, vals []string) error {
	if sv, ok := f.Value.(pflag.SliceValue); ok {
		return sv.Replace(vals)
	}
	return f.Value.Set(vals[0])
}

// tomlStrings turns a TOML value (scalar or array of scalars) into strings
// for pflag to parse, so that every flag type parses its value the same way
// from every source.
func tomlStrings(v any) ([]string, error) {
	if list, ok := v.([]any); ok {
		out := make([]string, 0, len(list))
		for _, e := range list {
			s, err := tomlScalar(e)
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		return out, nil
	}
	s, err := tomlScalar(v)
	if err != nil {
		return nil, err
	}
	return []string{s}, nil
}

func tomlScalar(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case bool:
		return strconv.FormatBool(v), nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64), nil
	case time.Time:
		return v.Format(time.RFC3339Nano), nil
	case map[string]any:
		return "", errors.New("want a value, got a table")
	}
	return "", fmt.Errorf("unsupported value %v (%T)", v, v)
}
