package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// Exit codes. Those from 3 on say how a call failed (macula-node call).
const (
	exitOK           = 0
	exitError        = 1 // the command ran and failed
	exitUsage        = 2 // the command line is wrong (unknown flag, command or argument), or a setting is
	exitNotFound     = 3 // no node of the realm advertises the procedure
	exitTimeout      = 4 // the call got no answer within its timeout; publish --wait found no room within it
	exitRemote       = 5 // the procedure's handler answered with an error
	exitDisconnected = 6 // the connection to the handler's node was lost
	exitUnauthorized = 7 // the caller may not call the procedure
)

func main() {
	exitWithParentIfGoRun()
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line args and returns the process's exit code.
// Every failure is reported as exactly one line on stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	err := unknownCommand(root, args)
	if err == nil {
		err = root.ExecuteContext(ctx)
	}
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "macula-node: %s\n", oneLine(err.Error()))
	var ue *usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	var ee *codedError
	if errors.As(err, &ee) {
		return ee.code
	}
	return exitError
}

// unknownCommand reports a command line whose command does not exist
// ("pub x --data 1"), before cobra parses its flags: cobra would parse them
// as flags of the group and answer "unknown flag: --data", when the mistake
// is the command.
func unknownCommand(root *cobra.Command, args []string) error {
	root.InitDefaultHelpCmd() // cobra adds "help" in Execute; Find must know it
	cmd, rest, err := root.Find(args)
	if err != nil || !cmd.HasSubCommands() {
		return nil
	}
	word := firstWord(cmd, rest)
	if word == "" {
		return nil
	}
	for _, c := range cmd.Commands() {
		if c.Name() == word || c.HasAlias(word) {
			return nil
		}
	}
	return groupRun(cmd, []string{word})
}

// firstWord is the first argument of args that is neither a flag of cmd
// nor a flag's value.
func firstWord(cmd *cobra.Command, args []string) string {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			if i+1 < len(args) {
				return args[i+1]
			}
			return ""
		case strings.HasPrefix(a, "-") && len(a) > 1:
			name := strings.TrimLeft(a, "-")
			if strings.Contains(name, "=") {
				continue
			}
			f := cmd.Flags().Lookup(name)
			if f == nil && len(name) == 1 {
				f = cmd.Flags().ShorthandLookup(name)
			}
			if f != nil && f.NoOptDefVal == "" { // takes a value: skip it
				i++
			}
		default:
			return a
		}
	}
	return ""
}

// codedError is a failure with an exit code of its own.
type codedError struct {
	code int
	err  error
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }

// usageError is a mistake in the command line itself; it exits with exitUsage.
type usageError struct {
	err  error
	hint string // the command path to ask --help of
}

func (e *usageError) Error() string {
	if e.hint == "" {
		return e.err.Error()
	}
	return fmt.Sprintf("%v (see '%s --help')", e.err, e.hint)
}

func (e *usageError) Unwrap() error { return e.err }

// oneLine folds a message onto one line, so that every failure is exactly
// one line on stderr whatever the error carries.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' }), "; ")
}
