package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/macula-io/macula/api"
)

func newRegistryCmd(stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "registry",
		Short: "Ask a running node about the realm's registry: names, watch, clusters",
		Long: `The realm's registry: unique names and groups of processes, held by every
node and replicated between them. Keys are segments separated by "/"
(user/123, chat/room/42); a key ending in "/" is a prefix.

  macula-node registry ls [PREFIX]      the names (registry ls chat/, or one key)
  macula-node registry watch [PREFIX]   print the changes as they come
  macula-node registry info             clusters, nodes, log level, counters
  macula-node registry log-level LEVEL  off, info or verbose
  macula-node registry connect|disconnect CLUSTER
  macula-node registry dispatch KEY --data JSON
  macula-node registry register KEY     hold a name until stopped, print its messages
  macula-node groups ls [PREFIX]        the members of groups
  macula-node groups join KEY           hold a membership until stopped`,
		Args: cobra.ArbitraryArgs,
		RunE: groupRun,
	}
	cmd.AddCommand(newRegistryLsCmd(), newRegistryWatchCmd(stderr), newRegistryInfoCmd(), newRegistryLogLevelCmd(),
		newClusterCmd("connect"), newClusterCmd("disconnect"), newDispatchCmd(), newHoldCmd(false, stderr))
	return cmd
}

// keyArg reads the optional KEY or PREFIX argument: "" for everything; a
// key without "/" at its end means that key and every key under it.
func keyArg(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return args[0]
}

func newRegistryLsCmd() *cobra.Command {
	var cluster string
	cmd := &cobra.Command{
		Use:   "ls [PREFIX]",
		Short: "List the registered names under a prefix (all without one)",
		Long: `List the names of the registry as the node sees them, one a line:

  KEY  PROCESS  META

PREFIX ending in "/" lists the keys under it; a key without "/" at its end
lists that key and every key under it (ls user lists user and user/...).
PROCESS is <peer ID>/<number>; META the metadata's JSON (or base64:...).`,
		Example: `  macula-node registry ls
  macula-node registry ls user/
  macula-node registry ls leader --cluster game --json`,
		Args: argsN(0, 1),
	}
	cmd.Flags().StringVar(&cluster, "cluster", "", "a named cluster instead of the default one")
	return newClientCmd(cmd, func(ctx context.Context, c *api.Client, cc *clientCmd, w io.Writer, args []string) error {
		var out []api.RegistryEntry
		key := keyArg(args)
		if key != "" && !strings.HasSuffix(key, "/") {
			e, err := c.Lookup(ctx, key, cluster)
			var ae *api.APIError
			switch {
			case err == nil:
				out = append(out, *e)
			case errors.As(err, &ae) && ae.Code == api.CodeNotFound:
			default:
				return err
			}
			key += "/"
		}
		more, err := c.Names(ctx, key, cluster)
		if err != nil {
			return err
		}
		out = append(out, more...)
		if cc.json {
			return printJSON(w, out)
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY\tPROCESS\tMETA")
		for _, e := range out {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", e.Key, e.Addr, metaText(e.Meta, e.MetaEncoding))
		}
		return tw.Flush()
	})
}

// metaText is metadata on one line: its JSON, or base64: and the bytes.
func metaText(m json.RawMessage, enc string) string {
	switch {
	case len(m) == 0:
		return "-"
	case enc == api.MetaBase64:
		return "base64:" + strings.Trim(string(m), `"`)
	}
	return string(m)
}

func newGroupsCmd(stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "groups",
		Short: "Ask a running node about the registry's groups",
		Args:  cobra.ArbitraryArgs,
		RunE:  groupRun,
	}
	var (
		cluster string
		limit   int
	)
	ls := &cobra.Command{
		Use:   "ls [PREFIX]",
		Short: "List the members of the groups under a prefix (all without one)",
		Long: `List the members of the registry's groups as the node sees them, one a line:

  KEY  PROCESS  META

PREFIX ending in "/" lists the groups under it; a key without "/" at its
end lists that group and every group under it. Registered names are not
members (see registry ls).`,
		Example: `  macula-node groups ls
  macula-node groups ls chat/
  macula-node groups ls room/42 --cluster game`,
		Args: argsN(0, 1),
	}
	ls.Flags().StringVar(&cluster, "cluster", "", "a named cluster instead of the default one")
	ls.Flags().IntVar(&limit, "limit", 0, "print at most this many members (0: all)")
	cmd.AddCommand(newClientCmd(ls, func(ctx context.Context, c *api.Client, cc *clientCmd, w io.Writer, args []string) error {
		key := keyArg(args)
		var out []api.RegistryMember
		if key != "" && !strings.HasSuffix(key, "/") {
			ms, err := c.Members(ctx, key, cluster, limit)
			if err != nil {
				return err
			}
			out = ms
			key += "/"
		}
		if limit == 0 || len(out) < limit {
			more, err := c.Members(ctx, key, cluster, max(0, limit-len(out)))
			if err != nil {
				return err
			}
			out = append(out, more...)
		}
		if cc.json {
			return printJSON(w, out)
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY\tPROCESS\tMETA")
		for _, m := range out {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", m.Key, m.Addr, metaText(m.Meta, m.MetaEncoding))
		}
		return tw.Flush()
	}))
	cmd.AddCommand(newHoldCmd(true, stderr))
	return cmd
}

func newRegistryWatchCmd(stderr io.Writer) *cobra.Command {
	var (
		cluster string
		asJSON  bool
		count   int
	)
	cmd := &cobra.Command{
		Use:   "watch [PREFIX]",
		Short: "Print the registry's changes under a prefix (all without one) as they come",
		Long: `Watch the registry through a running node and print each change under
PREFIX (a key, a prefix ending in "/", or nothing for every key) as it comes,
one line each:

  TIME KIND KEY PROCESS META [REASON: DETAIL]

KIND is registered, unregistered, joined or left; REASON says why an entry
went (unregistered, left, process_ended, node_left, node_down, conflict,
cluster_left, ...). A change of many entries at once (a node gone) prints
its lines together. With --json each line is the API's JSON object of one
event.

watch says "watching PREFIX" on stderr once the node watches, and runs until
SIGINT or SIGTERM, or until --count events were printed. If it reads more
slowly than changes come, the node drops events for it and watch says how
many on stderr. If the node stops, watch exits 1.`,
		Example: `  macula-node registry watch
  macula-node registry watch chat/ --json
  macula-node registry watch leader --count 1`,
		Args: argsN(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if count < 0 {
				return &usageError{err: fmt.Errorf("--count %d: want 0 (no limit) or more", count), hint: cmd.CommandPath()}
			}
			addr, _ := cmd.Flags().GetString("api")
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			c, err := newAPIClient(cmd, addr)
			if err != nil {
				return err
			}
			defer c.Close()
			return watchLoop(ctx, c, addr, keyArg(args), cluster, asJSON, count, cmd.OutOrStdout(), stderr)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cluster, "cluster", "", "a named cluster instead of the default one")
	f.BoolVar(&asJSON, "json", false, "print each event as the API's JSON object, one a line")
	f.IntVar(&count, "count", 0, "exit after this many events (0: run until stopped)")
	f.SortFlags = false
	return cmd
}

func watchLoop(ctx context.Context, c *api.Client, addr, prefix, cluster string, asJSON bool, count int, stdout, stderr io.Writer) error {
	wt, err := c.Watch(ctx, prefix, cluster)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return clientError(addr, err)
	}
	defer wt.Close()
	what := prefix
	if what == "" {
		what = "every key"
	}
	fmt.Fprintf(stderr, "macula-node: watching %s\n", what)
	enc := json.NewEncoder(stdout)
	enc.SetEscapeHTML(false)
	for n := 0; count == 0 || n < count; {
		b, err := wt.Next()
		if done, err := streamEnd(ctx, err, addr, "watch"); done {
			return err
		}
		if b.Missed > 0 {
			fmt.Fprintf(stderr, "macula-node: the node dropped %d event(s), not read fast enough\n", b.Missed)
		}
		now := time.Now().Format("2006-01-02T15:04:05.000Z07:00")
		for _, e := range b.Events {
			if asJSON {
				err = enc.Encode(e)
			} else {
				line := fmt.Sprintf("%s %s %s %s %s", now, e.Kind, e.Key, e.Addr, metaText(e.Meta, e.MetaEncoding))
				if e.Reason != "" {
					line += " " + e.Reason
					if e.Detail != "" {
						line += ": " + e.Detail
					}
				}
				_, err = fmt.Fprintln(stdout, line)
			}
			if err != nil {
				return err
			}
			n++
			if count > 0 && n >= count {
				return nil
			}
		}
	}
	return nil
}

func newRegistryInfoCmd() *cobra.Command {
	return newClientCmd(&cobra.Command{
		Use:   "info",
		Short: "Print the registry's clusters and their nodes, its log level and counters",
		Args:  argsN(0, 0),
	}, func(ctx context.Context, c *api.Client, cc *clientCmd, w io.Writer, _ []string) error {
		info, err := c.Registry(ctx)
		if err != nil {
			return err
		}
		if cc.json {
			return printJSON(w, info)
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "Log level\t%s\n", info.LogLevel)
		for _, cl := range info.Clusters {
			name := cl.Name
			if name == "" {
				name = "(default)"
			}
			fmt.Fprintf(tw, "Cluster %s\t%d node(s)\t%s\n", name, len(cl.Nodes), strings.Join(cl.Nodes, " "))
		}
		var st map[string]any
		if err := json.Unmarshal(info.Stats, &st); err == nil {
			for _, k := range []string{"names", "members", "local_entries", "processes", "peers", "conflicts", "deltas_applied", "snapshots_applied", "resyncs", "dropped_unauthorized", "dropped_events", "bad_frames"} {
				if v, ok := st[k]; ok {
					fmt.Fprintf(tw, "%s\t%v\n", k, v)
				}
			}
		}
		return tw.Flush()
	})
}

func newRegistryLogLevelCmd() *cobra.Command {
	return newClientCmd(&cobra.Command{
		Use:   "log-level [off|info|verbose]",
		Short: "Print or set the registry's own log level, independently of the node's",
		Args:  argsN(0, 1),
	}, func(ctx context.Context, c *api.Client, cc *clientCmd, w io.Writer, args []string) error {
		if len(args) == 1 {
			if err := c.SetRegistryLogLevel(ctx, args[0]); err != nil {
				return err
			}
		}
		info, err := c.Registry(ctx)
		if err != nil {
			return err
		}
		if cc.json {
			return printJSON(w, api.RegistryLogLevel{Level: info.LogLevel})
		}
		_, err = fmt.Fprintln(w, info.LogLevel)
		return err
	})
}

func newClusterCmd(verb string) *cobra.Command {
	short := "Connect the node to a named cluster of the registry"
	if verb == "disconnect" {
		short = "Disconnect the node from a named cluster (its entries there go)"
	}
	return newClientCmd(&cobra.Command{
		Use:   verb + " CLUSTER",
		Short: short,
		Args:  argsN(1, 1),
	}, func(ctx context.Context, c *api.Client, cc *clientCmd, w io.Writer, args []string) error {
		var err error
		if verb == "connect" {
			err = c.ConnectCluster(ctx, args[0])
		} else {
			err = c.DisconnectCluster(ctx, args[0])
		}
		if err != nil {
			return err
		}
		if cc.json {
			return printJSON(w, map[string]string{"cluster": args[0], "done": verb})
		}
		_, err = fmt.Fprintf(w, "%sed %s\n", verb, args[0])
		return err
	})
}

func newDispatchCmd() *cobra.Command {
	var (
		data, dataFile, cluster string
		raw                     bool
	)
	cmd := &cobra.Command{
		Use:   "dispatch KEY",
		Short: "Send a message to every process registered or joined under a key (or prefix)",
		Args:  argsN(1, 1),
	}
	f := cmd.Flags()
	f.StringVar(&data, "data", "", "the message, JSON unless --raw; - reads it from stdin")
	f.StringVar(&dataFile, "data-file", "", "read the message from this file")
	f.BoolVar(&raw, "raw", false, "send the message as raw bytes")
	f.StringVar(&cluster, "cluster", "", "a named cluster instead of the default one")
	return newClientCmd(cmd, func(ctx context.Context, c *api.Client, cc *clientCmd, w io.Writer, args []string) error {
		payload, err := readPayload(cmd, data, dataFile)
		if err != nil {
			return err
		}
		ct := api.ContentTypeJSON
		switch {
		case raw, len(payload) == 0:
			ct = api.ContentTypeRaw
		case !json.Valid(payload):
			return &usageError{err: errors.New("the message is not valid JSON (give --raw for other messages)"), hint: cmd.CommandPath()}
		}
		n, err := c.Dispatch(ctx, args[0], payload, ct, cluster)
		if err != nil {
			return err
		}
		if cc.json {
			return printJSON(w, api.DispatchResult{Key: args[0], Sent: n})
		}
		_, err = fmt.Fprintf(w, "dispatched to %d process(es) under %s\n", n, args[0])
		return err
	})
}

// newHoldCmd makes `registry register KEY` and `groups join KEY`: a
// process of the node's API that holds the name (or membership) as long as
// the command runs, and prints the messages sent to it.
func newHoldCmd(join bool, stderr io.Writer) *cobra.Command {
	var (
		meta, cluster string
		asJSON        bool
	)
	use, short, what := "register KEY...", "Hold names for a process until stopped, and print its messages", "registered"
	if join {
		use, short, what = "join KEY...", "Hold group memberships for a process until stopped, and print its messages", "joined"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long: short + `.

The command makes a process through the node's API (it lives as long as the
command runs), ` + what + ` under each KEY with --meta, and prints one line per message
sent or dispatched to it (FROM KEY PAYLOAD; with --json the API's object).
It says "` + what + ` KEY as PROCESS" on stderr once done. SIGINT or SIGTERM ends the
process: its names and memberships go, everywhere. A name it loses to another
registration (after a partition) prints a "lost" line.`,
		Args: argsN(1, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if meta != "" && !json.Valid([]byte(meta)) {
				return &usageError{err: errors.New("--meta is not valid JSON"), hint: cmd.CommandPath()}
			}
			addr, _ := cmd.Flags().GetString("api")
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			c, err := newAPIClient(cmd, addr)
			if err != nil {
				return err
			}
			defer c.Close()
			p, err := c.OpenProcess(ctx)
			if err != nil {
				return clientError(addr, err)
			}
			defer p.Close()
			var m json.RawMessage
			if meta != "" {
				m = json.RawMessage(meta)
			}
			for _, key := range args {
				if join {
					err = c.Join(ctx, p.Info().ID, key, m, cluster)
				} else {
					_, err = c.Register(ctx, p.Info().ID, key, m, cluster)
				}
				if err != nil {
					return clientError(addr, err)
				}
				fmt.Fprintf(stderr, "macula-node: %s %s as %s\n", what, key, p.Info().Addr)
			}
			out := cmd.OutOrStdout()
			enc := json.NewEncoder(out)
			for {
				msg, err := p.Next()
				if done, err := streamEnd(ctx, err, addr, "process"); done {
					return err
				}
				if asJSON {
					err = enc.Encode(msg)
				} else if msg.Kind == "lost" {
					_, err = fmt.Fprintf(out, "lost %s to %s: %s\n", msg.Key, msg.Winner, msg.Reason)
				} else {
					_, err = fmt.Fprintf(out, "%s %s %s\n", dash(msg.From), dash(msg.Key), metaText(msg.Payload, msg.PayloadEncoding))
				}
				if err != nil {
					return err
				}
			}
		},
	}
	f := cmd.Flags()
	f.StringVar(&meta, "meta", "", "the metadata, JSON")
	f.StringVar(&cluster, "cluster", "", "a named cluster instead of the default one")
	f.BoolVar(&asJSON, "json", false, "print each message as the API's JSON object, one a line")
	return cmd
}

// streamEnd says what the error of a stream's Next means for a command that
// prints the stream: done is false when there was none; else the command
// ends with nil (the user interrupted it), with why the node ended the
// stream (what: subscription, watch, process), or with the client error.
func streamEnd(ctx context.Context, err error, addr, what string) (done bool, result error) {
	switch {
	case err == nil:
		return false, nil
	case ctx.Err() != nil:
		return true, nil
	case errors.Is(err, io.EOF):
		return true, fmt.Errorf("the node at %s ended the %s (is it stopping?)", addr, what)
	}
	return true, clientError(addr, err)
}
