package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/macula-io/macula/internal/atomicfile"
	"github.com/macula-io/macula/ucan"
)

// newUCANRevokeCmd is "macula-node ucan revoke": the authority withdraws a
// delegation before it expires.
func newUCANRevokeCmd() *cobra.Command {
	var (
		keyPath, outPath string
		send, asJSON     bool
		index            int
	)
	cmd := &cobra.Command{
		Use:   "revoke --as AUTHORITY_KEY TOKEN|@FILE|- [--send]",
		Short: "Revoke a delegation of the realm (signed by the authority) and hand it to a node",
		Long: `Sign, with the realm authority's key, a revocation record of a delegation:
by default the last one of the chain given (the grant to its holder); --index
picks another (0 is the root). The record names the delegation by its content,
so a re-encoded copy of it is revoked too.

With --send the record goes to the node at --api, which applies it at once and
passes it on to every node of the realm (each applies it when it arrives: one
round trip per hop; nodes that join later get it after their handshake, and
nodes keep it on disk). Peers whose membership it revokes are disconnected.
Without --send it is printed (base64url), or written to --out, to hand to a
node later (POST /v1/ucan/revocations).`,
		Example: `  macula-node ucan revoke --as ~/.macula/authority.key @n2-call.ucan --send
  macula-node ucan revoke --as ~/.macula/authority.key @n2-member.ucan --out revoke-n2.rec`,
		Args: argsN(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if keyPath == "" {
				return &usageError{err: fmt.Errorf("--as is required: the realm authority's key"), hint: cmd.CommandPath()}
			}
			data, err := ucanReadTokenArg(cmd, args[0])
			if err != nil {
				return err
			}
			chain, err := ucan.ParseChain(data)
			if err != nil {
				return fmt.Errorf("not a token or chain: %v", cleanUCANError(err))
			}
			i := len(chain) - 1
			if index >= 0 {
				if index >= len(chain) {
					return &usageError{err: fmt.Errorf("--index %d: the chain has %d delegations", index, len(chain)), hint: cmd.CommandPath()}
				}
				i = index
			}
			key, err := ucan.LoadKey(keyPath)
			if err != nil {
				return ucanKeyError(keyPath, err)
			}
			rec, err := ucan.Revoke(key, chain[i])
			if err != nil {
				return fmt.Errorf("cannot revoke: %v", cleanUCANError(err))
			}
			text := base64.RawURLEncoding.EncodeToString(rec)
			w := cmd.OutOrStdout()
			if outPath != "" {
				if err := atomicfile.Write(outPath, []byte(text+"\n"), 0o600); err != nil {
					return fmt.Errorf("--out: %v", err)
				}
			}
			result := ucanRevokeResult{Record: text, Index: i, Out: outPath}
			if !send {
				if asJSON {
					return printJSON(w, result)
				}
				if outPath == "" {
					fmt.Fprintln(w, text)
				}
				return nil
			}
			addr, _ := cmd.Flags().GetString("api")
			c, err := newAPIClient(cmd, addr)
			if err != nil {
				return err
			}
			defer c.Close()
			if err := c.Revoke(context.Background(), rec); err != nil {
				return clientError(addr, err)
			}
			if asJSON {
				result.SentTo = strings.TrimSpace(addr)
				return printJSON(w, result)
			}
			fmt.Fprintf(w, "revoked delegation %d of the chain; the node at %s applies it and passes it on\n", i, strings.TrimSpace(addr))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&keyPath, "as", "", "key file of the realm authority")
	f.IntVar(&index, "index", -1, "which delegation of the chain to revoke, 0 for the root")
	f.Lookup("index").DefValue = "the last" // for --help: -1 means the last
	f.BoolVar(&asJSON, "json", false, "print the record, the delegation's index and where it went as JSON")
	f.BoolVar(&send, "send", false, "hand the record to the node at --api, which spreads it through the realm")
	f.StringVar(&outPath, "out", "", "also write the record to this file (mode 0600)")
	f.SortFlags = false
	return cmd
}

// ucanRevokeResult is the --json output of ucan revoke.
type ucanRevokeResult struct {
	Record string `json:"record"` // base64url, as POST /v1/ucan/revocations takes it
	Index  int    `json:"index"`  // of the revoked delegation in the chain, 0 the root
	Out    string `json:"out,omitempty"`
	SentTo string `json:"sent_to,omitempty"` // the API address of the node it was handed to (--send)
}
