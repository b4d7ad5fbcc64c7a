package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/macula-io/macula/api"
)

// clientCmd is what every client command shares: the API address (the
// root's persistent --api), --json and --timeout.
type clientCmd struct {
	json    bool
	timeout time.Duration
}

// newClientCmd builds a client command: run gets a client of the node API
// and a context that ends on SIGINT/SIGTERM or after --timeout.
func newClientCmd(cmd *cobra.Command, run func(ctx context.Context, c *api.Client, cc *clientCmd, w io.Writer, args []string) error) *cobra.Command {
	cc := &clientCmd{}
	cmd.Flags().BoolVar(&cc.json, "json", false, "print the API's JSON answer instead of text")
	cmd.Flags().DurationVar(&cc.timeout, "timeout", 0, "give up after this long (default: the node's own limit for the request)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		addr, _ := cmd.Flags().GetString("api")
		ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		if cc.timeout > 0 {
			// The client passes the deadline on, so that the node answers
			// with what it found just before we give up.
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, cc.timeout)
			defer cancel()
		}
		c, err := newAPIClient(cmd, addr)
		if err != nil {
			return err
		}
		defer c.Close()
		if err := run(ctx, c, cc, cmd.OutOrStdout(), args); err != nil {
			return clientError(addr, err)
		}
		return nil
	}
	return cmd
}

// clientError turns a failed API call into one line a person can act on.
func clientError(addr string, err error) error {
	var ce *codedError
	if errors.As(err, &ce) {
		return &codedError{code: ce.code, err: clientError(addr, ce.err)}
	}
	var ae *api.APIError
	switch {
	case errors.As(err, &ae):
		msg := ae.Message
		if msg == "" {
			msg = ae.Error()
		}
		if ae.Code == api.CodeUnauthorized || ae.Status == http.StatusUnauthorized {
			return &codedError{code: exitUnauthorized, err: errors.New(msg)}
		}
		return errors.New(msg)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("cannot reach the node API at %s (is macula-node run going?)", addr)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("the node API at %s did not answer in time", addr)
	case errors.Is(err, context.Canceled):
		return errors.New("interrupted")
	}
	var ne net.Error
	var oe *net.OpError
	var de *net.DNSError
	if errors.As(err, &oe) || errors.As(err, &de) || (errors.As(err, &ne) && ne.Timeout()) {
		return fmt.Errorf("cannot reach the node API at %s: %v", addr, rootCause(err))
	}
	return err
}

// isCode reports whether err is an API answer with the error code code.
func isCode(err error, code string) bool {
	var ae *api.APIError
	return errors.As(err, &ae) && ae.Code == code
}

// rootCause is the innermost error of a chain of single wraps.
func rootCause(err error) error {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err
		}
		err = next
	}
}

// printJSON prints v indented, as machines want it.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newIDCmd() *cobra.Command {
	return newClientCmd(&cobra.Command{
		Use:   "id",
		Short: "Print a running node's DIDs, peer ID, realm and addresses",
		Args:  argsN(0, 0),
	}, func(ctx context.Context, c *api.Client, cc *clientCmd, w io.Writer, _ []string) error {
		info, err := c.Node(ctx)
		if err != nil {
			return err
		}
		if cc.json {
			return printJSON(w, info)
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "DID\t%s\n", info.DID)
		fmt.Fprintf(tw, "Alias\t%s\n", info.Alias)
		fmt.Fprintf(tw, "Peer ID\t%s\n", info.PeerID)
		fmt.Fprintf(tw, "Realm\t%s\n", info.Realm)
		fmt.Fprintf(tw, "Name\t%s\n", info.Name)
		for i, a := range info.Addrs {
			label := ""
			if i == 0 {
				label = "Addrs"
			}
			fmt.Fprintf(tw, "%s\t%s\n", label, a)
		}
		fmt.Fprintf(tw, "Peers\t%d\n", info.Peers)
		apiAddr := info.API.HTTP
		if info.API.HTTP3 != "" {
			apiAddr += " (HTTP/3 on udp " + info.API.HTTP3 + ")"
		}
		fmt.Fprintf(tw, "API\t%s\n", apiAddr)
		fmt.Fprintf(tw, "Agent\t%s\n", info.Agent)
		fmt.Fprintf(tw, "Security\t%s\n", securityLine(info.Security, info.Authority))
		if g := info.Grant; g != nil {
			name := g.Name
			if name == "" {
				name = "(no name granted: the alias does not count)"
			}
			fmt.Fprintf(tw, "Member\t%v, name %s\n", g.Member, name)
			for i, c := range g.Capabilities {
				label := ""
				if i == 0 {
					label = "Grants"
				}
				fmt.Fprintf(tw, "%s\t%s\n", label, c)
			}
		}
		return tw.Flush()
	})
}

func newPeersCmd() *cobra.Command {
	return newClientCmd(&cobra.Command{
		Use:   "peers",
		Short: "List the peers of a running node's realm it is connected to",
		Args:  argsN(0, 0),
	}, func(ctx context.Context, c *api.Client, cc *clientCmd, w io.Writer, _ []string) error {
		peers, err := c.Peers(ctx)
		if err != nil {
			return err
		}
		if cc.json {
			if peers == nil {
				peers = []api.Peer{}
			}
			return printJSON(w, peers)
		}
		if len(peers) == 0 {
			_, err := fmt.Fprintln(w, "no peers")
			return err
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tDID\tPEER ID\tDIRECTION\tPATH\tRTT\tADDR")
		for _, p := range peers {
			addr := "-"
			if len(p.Addrs) > 0 {
				addr = p.Addrs[0]
			}
			rtt := "-"
			if p.RTTMillis > 0 {
				rtt = fmt.Sprintf("%.2fms", p.RTTMillis)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", dash(p.Name), dash(p.DID), p.PeerID, dash(p.Direction), dash(p.Path), rtt, addr)
		}
		return tw.Flush()
	})
}

func newResolveCmd() *cobra.Command {
	return newClientCmd(&cobra.Command{
		Use:   "resolve DID",
		Short: "Resolve a did:key or a did:macula alias to its key, peer ID and addresses",
		Example: `  macula-node resolve did:macula:io.macula.dev.node2
  macula-node resolve did:key:z6Mk...`,
		Args: argsN(1, 1),
	}, func(ctx context.Context, c *api.Client, cc *clientCmd, w io.Writer, args []string) error {
		res, err := c.Resolve(ctx, args[0])
		if err != nil {
			return err
		}
		if cc.json {
			return printJSON(w, res)
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "DID\t%s\n", res.DID)
		if res.Alias != "" {
			fmt.Fprintf(tw, "Alias\t%s\n", res.Alias)
		}
		fmt.Fprintf(tw, "Peer ID\t%s\n", res.PeerID)
		if len(res.Addrs) == 0 {
			fmt.Fprintf(tw, "Addrs\t-\n")
		}
		for i, a := range res.Addrs {
			label := ""
			if i == 0 {
				label = "Addrs"
			}
			fmt.Fprintf(tw, "%s\t%s\n", label, a)
		}
		if r := res.Record; r != nil {
			fmt.Fprintf(tw, "Record\tsigned by the DID, seq %d, bound %s, expires %s\n",
				r.Seq, r.Bound.UTC().Format(time.RFC3339), r.Expires.UTC().Format(time.RFC3339))
		}
		return tw.Flush()
	})
}

func newDHTCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dht",
		Short: "Ask a running node's DHT: stats, lookup, provide",
		Args:  cobra.ArbitraryArgs,
		RunE:  groupRun,
	}
	cmd.AddCommand(
		newClientCmd(&cobra.Command{
			Use:   "stats",
			Short: "Print the DHT's routing table size and stored records",
			Args:  argsN(0, 0),
		}, func(ctx context.Context, c *api.Client, cc *clientCmd, w io.Writer, _ []string) error {
			s, err := c.DHTStats(ctx)
			if err != nil {
				return err
			}
			if cc.json {
				return printJSON(w, s)
			}
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintf(tw, "Mode\t%s\n", s.Mode)
			fmt.Fprintf(tw, "Nodes\t%d\n", s.Nodes)
			fmt.Fprintf(tw, "Buckets\t%d\n", s.Buckets)
			fmt.Fprintf(tw, "Stored keys\t%d (%d provider keys, %d value records)\n", s.StoredKeys, s.ProviderKeys, s.ValueRecords)
			fmt.Fprintf(tw, "Providing\t%d\n", s.Providing)
			return tw.Flush()
		}),
		newClientCmd(&cobra.Command{
			Use:   "lookup KEY",
			Short: "Find the providers of KEY, with their addresses",
			Args:  argsN(1, 1),
		}, func(ctx context.Context, c *api.Client, cc *clientCmd, w io.Writer, args []string) error {
			res, err := c.DHTLookup(ctx, args[0])
			if err != nil {
				return err
			}
			if cc.json {
				return printJSON(w, res)
			}
			if len(res.Providers) == 0 {
				_, err := fmt.Fprintf(w, "no providers for %s\n", args[0])
				return err
			}
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "PEER ID\tDID\tADDRS")
			for _, p := range res.Providers {
				addrs := "-"
				if len(p.Addrs) > 0 {
					addrs = strings.Join(p.Addrs, " ")
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\n", p.PeerID, dash(p.DID), addrs)
			}
			return tw.Flush()
		}),
		newClientCmd(&cobra.Command{
			Use:   "provide KEY",
			Short: "Make the node provide KEY from now on",
			Args:  argsN(1, 1),
		}, func(ctx context.Context, c *api.Client, cc *clientCmd, w io.Writer, args []string) error {
			res, err := c.DHTProvide(ctx, args[0])
			if err != nil {
				return err
			}
			if cc.json {
				return printJSON(w, res)
			}
			_, err = fmt.Fprintf(w, "providing %s (%s)\n", args[0], announceState(res.Announced))
			return err
		}),
	)
	return cmd
}

func newLogLevelCmd() *cobra.Command {
	return newClientCmd(&cobra.Command{
		Use:   "log-level [LEVEL]",
		Short: "Print or set a running node's log level (debug, info, warn, error)",
		Args:  argsN(0, 1),
	}, func(ctx context.Context, c *api.Client, cc *clientCmd, w io.Writer, args []string) error {
		if len(args) == 1 {
			if err := c.SetLogLevel(ctx, args[0]); err != nil {
				return err
			}
		}
		lvl, err := c.LogLevel(ctx)
		if err != nil {
			return err
		}
		if cc.json {
			return printJSON(w, api.LogLevel{Level: lvl})
		}
		_, err = fmt.Fprintln(w, lvl)
		return err
	})
}

// dash stands in for an empty table cell.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// securityLine says whether the realm is secure, loudly when it is not.
func securityLine(security, authority string) string {
	if security == api.SecuritySecure {
		if authority == "" {
			return "secure"
		}
		return "secure (authority " + authority + ")"
	}
	return "OPEN: no authority, anyone who knows the realm's name may join and do anything (development only)"
}
