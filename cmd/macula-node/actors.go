package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/macula-io/macula/actors"
	"github.com/macula-io/macula/api"
	"github.com/macula-io/macula/node"
)

func newActorsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "actors",
		Short: "Call, cast to and list the virtual actors of the realm through a running node",
		Long: `Talk to the virtual actors of the realm through a running node's API.

An actor is named by a capability (served by the nodes run with
--capabilities), a kind registered on those nodes, and an id. It starts on
the node that owns its shard on its first message and keeps its state.

  macula-node actors call CAPABILITY KIND ID --data JSON   send a call, print the reply
  macula-node actors cast CAPABILITY KIND ID --data JSON   send a cast
  macula-node actors ls                                    the actors active on the node
  macula-node ring                                         who owns the shards

Exit codes of call and cast: 0 done, 1 any other failure (a full mailbox, an
actor restarting too often), 2 a wrong command line, 3 no node serves the
capability or the owner has no such kind, 4 no answer within --timeout, 5 the
actor failed (its error, a crash, a failed start), 6 the owner could not be
reached or was lost, 7 the caller may not call it.`,
		Args: cobra.ArbitraryArgs,
		RunE: groupRun,
	}
	cmd.AddCommand(newActorSendCmd(false), newActorSendCmd(true), newActorsLsCmd())
	return cmd
}

func newActorSendCmd(cast bool) *cobra.Command {
	var (
		data, dataFile, contentType, initArg string
		timeout                              time.Duration
		raw, asJSON                          bool
	)
	use, short := "call", "Call an actor and print its reply"
	example := `  macula-node actors call demo counter player_1
  macula-node actors call game player player_123 --data '{"action":"get_state"}' --init '{"starting_level":10}'`
	if cast {
		use, short = "cast", "Cast to an actor: return once its owner accepted the message"
		example = `  macula-node actors cast demo counter player_1 --data '"reset"'`
	}
	cmd := &cobra.Command{
		Use:     use + " CAPABILITY KIND ID",
		Short:   short,
		Example: example,
		Args:    argsN(3, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			payload, err := callPayload(cmd, data, dataFile, contentType)
			if err != nil {
				return err
			}
			ct := contentType
			if len(payload) == 0 && !cmd.Flags().Changed("content-type") {
				ct = api.ContentTypeRaw
			}
			opts := api.ActorOptions{Timeout: timeout, ContentType: ct}
			if cmd.Flags().Changed("init") {
				if strings.ContainsAny(initArg, "\r\n") {
					return &usageError{err: errors.New("--init must be one line (it travels in an HTTP header)"), hint: cmd.CommandPath()}
				}
				opts.InitArg = []byte(initArg)
			}
			addr, _ := cmd.Flags().GetString("api")
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout+callGrace)
				defer cancel()
			}
			c, err := newAPIClient(cmd, addr)
			if err != nil {
				return err
			}
			defer c.Close()
			what := strings.Join(args, "/")
			if cast {
				if err := c.ActorCast(ctx, args[0], args[1], args[2], payload, opts); err != nil {
					return actorCallError(addr, what, timeout, err)
				}
				if asJSON {
					return printJSON(cmd.OutOrStdout(), map[string]any{"capability": args[0], "kind": args[1], "id": args[2], "accepted": true})
				}
				return nil
			}
			ref, reply, err := c.ActorCall(ctx, args[0], args[1], args[2], payload, opts)
			if err != nil {
				return actorCallError(addr, what, timeout, err)
			}
			if asJSON {
				out := struct {
					Ref   api.ActorRef    `json:"ref"`
					Reply json.RawMessage `json:"reply"`
				}{Ref: ref}
				if json.Valid(reply) {
					out.Reply = reply
				} else {
					out.Reply, _ = json.Marshal(string(reply))
				}
				return printJSON(cmd.OutOrStdout(), out)
			}
			return printReply(cmd.OutOrStdout(), reply, raw)
		},
	}
	f := cmd.Flags()
	f.StringVar(&data, "data", "", "the message; - reads it from stdin")
	f.StringVar(&dataFile, "data-file", "", "read the message from this file")
	f.StringVar(&contentType, "content-type", api.ContentTypeJSON, "media type of the message: application/json, or anything else for raw bytes")
	f.StringVar(&initArg, "init", "", "the init argument, used if this message starts the actor (one line)")
	f.DurationVar(&timeout, "timeout", 0, "give up after this long (default: the node's 30s)")
	if !cast {
		f.BoolVar(&raw, "raw", false, "print the reply as it is, without pretty-printing JSON")
		f.BoolVar(&asJSON, "json", false, `print {"ref": the actor's reference, "reply": the reply}`)
	} else {
		f.BoolVar(&asJSON, "json", false, `print {"capability", "kind", "id", "accepted": true} once the owner accepted the cast`)
	}
	f.SortFlags = false
	return cmd
}

// actorCallError turns a failed actor call into one line and the exit code
// of its kind.
func actorCallError(addr, what string, timeout time.Duration, err error) error {
	var ae *api.APIError
	if errors.As(err, &ae) {
		code := exitError
		msg := ae.Message
		switch ae.Code {
		case api.CodeNotServed:
			code = exitNotFound
			msg += " (nodes serve a capability with run --capabilities)"
		case api.CodeUnknownKind:
			code = exitNotFound
			if strings.Contains(what, "/"+actors.CounterKind+"/") {
				msg += " (run --demo-actors serves the demo kind counter)"
			}
		case api.CodeTimeout:
			code = exitTimeout
		case api.CodeRemoteError, api.CodeActorCrashed, api.CodeActorInit:
			code = exitRemote
			if r := ae.Remote; r != nil {
				msg = "actor error " + r.Code
				if r.Message != "" {
					msg += ": " + r.Message
				}
			}
		case api.CodeDisconnected, api.CodeUnavailable:
			code = exitDisconnected
		case api.CodeUnauthorized:
			code = exitUnauthorized
		case api.CodeNotEnabled:
			msg = "the node at " + addr + " runs no actors"
		}
		return &codedError{code: code, err: errors.New(msg)}
	}
	if errors.Is(err, context.DeadlineExceeded) && timeout > 0 {
		return &codedError{code: exitTimeout, err: fmt.Errorf("%s: no answer from the node API at %s within %v", what, addr, timeout+callGrace)}
	}
	return clientError(addr, err)
}

func newActorsLsCmd() *cobra.Command {
	var limit int
	cmd := newClientCmd(&cobra.Command{
		Use:   "ls",
		Short: "List the actors active on a running node",
		Args:  argsN(0, 0),
	}, func(ctx context.Context, c *api.Client, cc *clientCmd, w io.Writer, _ []string) error {
		list, err := c.Actors(ctx, limit)
		if err != nil {
			return err
		}
		if cc.json {
			return printJSON(w, list)
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "CAPABILITY\tKIND\tID\tINCARNATION\tSHARD\tMAILBOX\tIDLE")
		for _, a := range list.Actors {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%v\n", a.Capability, a.Kind, a.ID, a.Incarnation, a.Shard, a.Mailbox,
				time.Duration(a.IdleNs).Round(time.Millisecond))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		st := list.Stats
		more := ""
		if list.Truncated {
			more = " (list cut at --limit)"
		}
		_, err = fmt.Fprintf(w, "%d active, %d queued%s; moved in %d, out %d\n", st.Active, st.Queued, more, st.MovedIn, st.MovedOut)
		return err
	})
	cmd.Flags().IntVar(&limit, "limit", 0, "list at most this many (default: the node's 1000)")
	return cmd
}

func newRingCmd() *cobra.Command {
	var owners bool
	cmd := newClientCmd(&cobra.Command{
		Use:   "ring",
		Short: "Show which nodes own the shards of each capability, as a running node sees it",
		Long: `Show the placement of every capability's 4096 shards on the nodes that serve
it, as the node sees the realm: each node's shard count, the largest load
over the mean, and the placement's digest (two nodes that print the same
digest agree on every owner). --json --owners adds the owner of every shard.`,
		Args: argsN(0, 0),
	}, func(ctx context.Context, c *api.Client, cc *clientCmd, w io.Writer, _ []string) error {
		r, err := c.Ring(ctx, owners)
		if err != nil {
			return err
		}
		if cc.json {
			return printJSON(w, r)
		}
		if len(r.Capabilities) == 0 {
			_, err := fmt.Fprintln(w, "no node of the realm serves a capability (macula-node run --capabilities game,chat)")
			return err
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "CAPABILITY\tNODE\tSHARDS\tMAX/MEAN\tDIGEST")
		for _, cr := range r.Capabilities {
			for i, n := range cr.Nodes {
				capName, mm, digest := cr.Capability, fmt.Sprintf("%.3f", cr.MaxOverMean), cr.Digest
				if i > 0 {
					capName, mm, digest = "", "", ""
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", capName, n.ID, n.Shards, mm, digest)
			}
		}
		return tw.Flush()
	})
	cmd.Flags().BoolVar(&owners, "owners", false, "with --json: the owner of every shard")
	return cmd
}

// startActors starts the actor system of n on its membership and rpc; with
// demo, the demo kind counter serves every capability the node serves.
func startActors(n *node.Node, logger *slog.Logger, demo bool) (*actors.System, error) {
	sys, err := actors.New(actors.Config{Realm: n.Realm(), Access: n.Access(), Logger: logger}, n.Members(), n.RPC(), n.Events())
	if err != nil {
		return nil, fmt.Errorf("actors: %w", err)
	}
	if demo {
		if err := sys.RegisterAll(actors.CounterKind, actors.NewCounter); err != nil {
			sys.Close()
			return nil, err
		}
	}
	return sys, nil
}
