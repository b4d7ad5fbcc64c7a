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
		return printNATInfo(w, i)
	}), newClientCmd(&cobra.Command{
		Use:   "probe",
		Short: "Probe the NAT again now, wait for the result and print it",
		Long: `Ask the node to probe its NAT again now (STUN from its QUIC socket, as at
start and after a network change), wait until the probe is done, and print
what it measured, as nat info does. --timeout bounds the wait (default 60s).`,
		Args: argsN(0, 0),
	}, func(ctx context.Context, c *api.Client, cc *clientCmd, w io.Writer, _ []string) error {
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, natProbeWait)
			defer cancel()
		}
		before, err := c.NATProbe(ctx)
		if err != nil {
			return err
		}
		i, err := waitNATProbe(ctx, c, before.MeasuredAt)
		if err != nil {
			return err
		}
		if cc.json {
			return printJSON(w, i)
		}
		return printNATInfo(w, i)
	}))
	return cmd
}

// natProbeWait bounds nat probe's wait without --timeout: a probe asks each
// STUN server three times, a few seconds in all.
const natProbeWait = 60 * time.Second

// waitNATProbe polls the node's NAT information until it was measured after
// before, or ctx ends.
func waitNATProbe(ctx context.Context, c *api.Client, before time.Time) (*api.NATInfo, error) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		i, err := c.NAT(ctx)
		if err != nil {
			return nil, err
		}
		if i.MeasuredAt.After(before) {
			return i, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("the NAT probe did not finish in time (%w)", ctx.Err())
		case <-tick.C:
		}
	}
}

// printNATInfo prints the NAT information for people.
func printNATInfo(w io.Writer, i *api.NATInfo) error {
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
	if r := i.Reachability; r != nil {
		fmt.Fprintf(tw, "Reachability\t%s (%s)\n", r.Reachability, r.Reason)
		fmt.Fprintf(tw, "Decided\t%s\n", decidedLine(r))
	}
	for _, s := range i.Servers {
		status := "ok"
		if !s.OK {
			status = s.Error
		}
		fmt.Fprintf(tw, "Server\t%s (%s)\n", s.Server, status)
	}
	return tw.Flush()
}
