package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/macula-io/macula/api"
)

// newMembersCmd is "macula-node members": the realm's membership as a
// running node sees it.
func newMembersCmd() *cobra.Command {
	var q api.MembersQuery
	cmd := newClientCmd(&cobra.Command{
		Use:   "members",
		Short: "List the members of a running node's realm, with their capabilities and clusters",
		Long: `List every live member of the node's realm, the node itself included (marked *),
with the capabilities it serves and the registry clusters it joined. Every node
learns every member within about a second of its join, and forgets it at once
when it leaves cleanly, a few seconds after it fails.`,
		Example: `  macula-node members
  macula-node members --capability game
  macula-node members --json`,
		Args: argsN(0, 0),
	}, func(ctx context.Context, c *api.Client, cc *clientCmd, w io.Writer, _ []string) error {
		ms, err := c.RealmMembers(ctx, q)
		if err != nil {
			return err
		}
		if cc.json {
			return printJSON(w, ms)
		}
		if len(ms.Members) == 0 {
			_, err := fmt.Fprintln(w, "no members")
			return err
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tCAPABILITIES\tCLUSTERS\tPEER ID")
		for _, m := range ms.Members {
			name := m.Name
			if m.Self {
				name += " *"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", name, list(m.Capabilities), list(m.Clusters), m.PeerID)
		}
		return tw.Flush()
	})
	cmd.Flags().StringVar(&q.Capability, "capability", "", "only the members that serve this capability")
	cmd.Flags().StringVar(&q.Cluster, "cluster", "", "only the members in this cluster")
	return cmd
}

// list prints names separated by commas, or "-".
func list(names []string) string {
	if len(names) == 0 {
		return "-"
	}
	return strings.Join(names, ",")
}

// newCapabilitiesCmd is "macula-node capabilities": what the node serves.
func newCapabilitiesCmd() *cobra.Command {
	cmd := newClientCmd(&cobra.Command{
		Use:   "capabilities",
		Short: "Print or change the capabilities a running node serves",
		Long: `Print the capabilities the node serves; "capabilities set" replaces them at
run time and tells the realm (run --capabilities sets them at start). In a secure
realm each capability needs the node's grant of serve on <realm>.<capability>.`,
		Example: `  macula-node capabilities
  macula-node capabilities set game,chat
  macula-node capabilities set            # serve none`,
		Args: argsN(0, 0),
	}, func(ctx context.Context, c *api.Client, cc *clientCmd, w io.Writer, _ []string) error {
		ms, err := c.RealmMembers(ctx, api.MembersQuery{})
		if err != nil {
			return err
		}
		for _, m := range ms.Members {
			if m.Self {
				return printCapabilities(w, cc, &m)
			}
		}
		return fmt.Errorf("the node did not list itself among the members")
	})
	cmd.AddCommand(newClientCmd(&cobra.Command{
		Use:   "set [NAME[,NAME...]]...",
		Short: "Replace the capabilities a running node serves",
		Args:  cobra.ArbitraryArgs,
	}, func(ctx context.Context, c *api.Client, cc *clientCmd, w io.Writer, args []string) error {
		caps := []string{}
		for _, a := range args {
			for _, s := range strings.Split(a, ",") {
				if s = strings.TrimSpace(s); s != "" {
					caps = append(caps, s)
				}
			}
		}
		m, err := c.SetCapabilities(ctx, caps)
		if err != nil {
			return err
		}
		return printCapabilities(w, cc, m)
	}))
	return cmd
}

func printCapabilities(w io.Writer, cc *clientCmd, m *api.Member) error {
	if cc.json {
		return printJSON(w, api.Capabilities{Capabilities: m.Capabilities})
	}
	if len(m.Capabilities) == 0 {
		_, err := fmt.Fprintln(w, "no capabilities")
		return err
	}
	_, err := fmt.Fprintln(w, strings.Join(m.Capabilities, ","))
	return err
}
