package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"

	"github.com/macula-io/macula/node"
)

// version is the release, set at build time with
// -ldflags "-X main.version=v0.1.0"; otherwise it comes from the build info.
var version = ""

// defaultAPI is where the client commands look for a node, and where run
// serves its API, unless told otherwise.
const defaultAPI = "127.0.0.1:7401"

// newRootCmd builds the command tree. stdout gets results, stderr gets logs.
func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "macula-node",
		Short: "Run and talk to Macula mesh nodes",
		Long: `macula-node runs nodes of a Macula mesh and talks to running ones.

  macula-node dev              a local mesh of 3 nodes in one process, for trying things
  macula-node run --realm R    the daemon: one node and its API
  macula-node id | peers | members | resolve | dht | nat | pubsub | log-level
                               ask a running node through its API (--api)
  macula-node capabilities set game,chat
                               change what a running node serves
  macula-node call PROC --data JSON
                               call a procedure of the realm and print the reply
  macula-node advertise PROC --url http://127.0.0.1:PORT/path
                               serve a procedure with a webhook until stopped
  macula-node publish TOPIC --data JSON
                               publish a message to a topic of the realm
  macula-node subscribe PATTERN [--json]
                               print the messages matching a pattern as they come
  macula-node actors call|cast|ls, ring
                               talk to the realm's virtual actors; who owns their shards
  macula-node registry ls|watch [PREFIX], groups ls [PREFIX]
                               the realm's registry of names and groups

Flags can also be given as MACULA_<FLAG> environment variables (MACULA_API,
MACULA_REALM, ...); the command line wins.

Exit codes: 0 success, 1 failure, 2 a wrong command line or setting (a flag,
a MACULA_* variable, the config file); call adds 3 not found, 4 timeout, 5
remote error, 6 disconnected, 7 unauthorized.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.ArbitraryArgs,
		RunE:          groupRun,
		// Flags beat MACULA_* environment variables beat the config file:
		// applied here, once the command line is parsed, for every command.
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			cfgFlag := ""
			if cmd.Flags().Lookup(configFlag) != nil {
				cfgFlag = configFlag
			}
			return applySources(cmd.Flags(), os.Getenv, cfgFlag)
		},
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	// --version, as most tools have it: the line of macula-node version.
	root.Version = currentVersion().Version
	root.SetVersionTemplate(currentVersion().String() + "\n")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return &usageError{err: err, hint: cmd.CommandPath()}
	})
	root.PersistentFlags().String("api", defaultAPI, "address of the node API the client commands talk to")
	addCredentialFlags(root)

	root.AddCommand(
		newDevCmd(stderr),
		newRunCmd(stderr),
		newIDCmd(),
		newKeyCmd(),
		newPeersCmd(),
		newMembersCmd(),
		newCapabilitiesCmd(),
		newResolveCmd(),
		newDHTCmd(),
		newNATCmd(),
		newDoctorCmd(),
		newLogLevelCmd(),
		newCallCmd(),
		newAdvertiseCmd(stderr),
		newPublishCmd(),
		newSubscribeCmd(stderr),
		newPubSubCmd(),
		newUCANCmd(),
		newRealmCmd(),
		newVersionCmd(),
		newActorsCmd(),
		newRingCmd(),
		newRegistryCmd(stderr),
		newGroupsCmd(stderr),
	)
	return root
}

// groupRun is the RunE of a command that only groups subcommands: alone it
// prints its help; with an argument, that argument is an unknown command.
func groupRun(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return cmd.Help()
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2 // cobra's own default, set only when it suggests itself
	}
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += fmt.Sprintf("; did you mean %q?", s[0])
	}
	return &usageError{err: fmt.Errorf("%s", msg), hint: cmd.CommandPath()}
}

// argsN accepts between min and max positional arguments (max < 0: any),
// and reports anything else as a usage error.
func argsN(min, max int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		var err error
		switch {
		case len(args) < min:
			err = fmt.Errorf("%s needs %d argument(s), got %d", cmd.CommandPath(), min, len(args))
		case max >= 0 && len(args) > max:
			if max == 0 {
				err = fmt.Errorf("%s takes no arguments, got %q", cmd.CommandPath(), strings.Join(args, " "))
			} else {
				err = fmt.Errorf("%s takes at most %d argument(s), got %d", cmd.CommandPath(), max, len(args))
			}
		}
		for i, a := range args {
			if err == nil && strings.TrimSpace(a) == "" {
				err = fmt.Errorf("%s: %s is empty", strings.TrimPrefix(cmd.CommandPath(), cmd.Root().Name()+" "), argName(cmd, i))
			}
		}
		if err != nil {
			return &usageError{err: err, hint: cmd.CommandPath()}
		}
		return nil
	}
}

// argName is the name of positional argument i in cmd's Use line ("TOPIC"
// in "publish TOPIC"), or "argument i+1".
func argName(cmd *cobra.Command, i int) string {
	var names []string
	for _, f := range strings.Fields(cmd.Use)[1:] {
		if !strings.HasPrefix(f, "-") && !strings.HasPrefix(f, "[-") {
			names = append(names, strings.Trim(f, "[]."))
		}
	}
	if i < len(names) && names[i] != "" {
		return names[i]
	}
	return fmt.Sprintf("argument %d", i+1)
}

// versionString is the binary's version.
func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

// versionInfo is what version prints: the binary's version, its agent
// string on the wire, and what it was built with and for.
type versionInfo struct {
	Version string `json:"version"`
	Agent   string `json:"agent"`
	Go      string `json:"go"`
	OS      string `json:"os"`
	Arch    string `json:"arch"`
}

func currentVersion() versionInfo {
	return versionInfo{Version: versionString(), Agent: node.Agent, Go: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
}

func (v versionInfo) String() string {
	return fmt.Sprintf("macula-node %s (agent %s, %s, %s/%s)", v.Version, v.Agent, v.Go, v.OS, v.Arch)
}

func newVersionCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version of macula-node (also: macula-node --version)",
		Args:  argsN(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := currentVersion()
			if asJSON {
				return printJSON(cmd.OutOrStdout(), v)
			}
			_, err := fmt.Fprintln(cmd.OutOrStdout(), v)
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the version as JSON")
	return cmd
}
