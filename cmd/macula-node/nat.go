package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/macula-io/macula/api"
)

func newNATCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "nat",
		Short: "Ask a running node about its NAT",
		Args:  cobra.ArbitraryArgs,
		RunE:  groupRun,
	}
	cmd.AddCommand(newClientCmd(&cobra.Command{
		Use:   "info",
		Short: "Print the NAT type, mapping and filtering, public address and hairpin",
		Args:  argsN(0, 0),
	}, func(ctx context.Context, c *api.Client, cc *clientCmd, w io.Writer, _ []string) error {
		i, err := c.NAT(ctx)
		if err != nil {
			return err
		}
		if cc.json {
			return printJSON(w, i)
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "Type\t%s\n", i.Type)
		fmt.Fprintf(tw, "Mapping\t%s\n", dash(string(i.Mapping)))
		fmt.Fprintf(tw, "Filtering\t%s\n", dash(string(i.Filtering)))
		public := "-"
		if ap, ok := i.PublicAddr(); ok {
			public = ap.String()
		}
		fmt.Fprintf(tw, "Public\t%s\n", public)
		hairpin := "not measured"
		if i.Hairpin != nil {
			hairpin = fmt.Sprint(*i.Hairpin)
		}
		fmt.Fprintf(tw, "Hairpin\t%s\n", hairpin)
		measured := "never"
		if !i.MeasuredAt.IsZero() {
			measured = i.MeasuredAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "Measured\t%s\n", measured)
		fmt.Fprintf(tw, "Last error\t%s\n", dash(i.Error))
		fmt.Fprintf(tw, "Realm\t%s\n", securityLine(i.Security, ""))
		for _, s := range i.Servers {
			status := "ok"
			if !s.OK {
				status = s.Error
			}
			fmt.Fprintf(tw, "Server\t%s (%s)\n", s.Server, status)
		}
		return tw.Flush()
	}))
	return cmd
}
