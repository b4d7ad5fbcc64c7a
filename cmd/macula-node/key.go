package main

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/cobra"

	"github.com/macula-io/macula/node"
	"github.com/macula-io/macula/ucan"
)

// newKeyCmd is "macula-node key": a node's identity before the node runs, so
// that a realm authority can grant it membership first.
func newKeyCmd() *cobra.Command {
	var (
		dataDir string
		asJSON  bool
	)
	cmd := &cobra.Command{
		Use:   "key --data-dir DIR",
		Short: "Print the did:key and peer ID of a node's key, creating the key if needed",
		Long: `Print the identity of the node key in DIR (node.key), creating the key
(Ed25519, mode 0600) when there is none, without starting the node. In a
secure realm the authority grants the node membership by this did:key before
the node first runs:

  did=$(macula-node key --data-dir ./n1 --json | jq -r .did)
  macula-node ucan issue --as authority.key --realm io.acme --to $did --can member --name n1 --out ./n1/member.ucan
  macula-node run --realm io.acme --name n1 --data-dir ./n1 --authority did:key:... --ucan ./n1/member.ucan`,
		Args: argsN(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dataDir == "" {
				return &usageError{err: errors.New("--data-dir is required"), hint: cmd.CommandPath()}
			}
			path := filepath.Join(dataDir, node.KeyFile)
			key, err := node.LoadKey(path)
			created := false
			if errors.Is(err, fs.ErrNotExist) {
				if key, err = ucan.GenerateKey(); err == nil {
					err = node.ReplaceKey(path, key)
					created = true
				}
			}
			if err != nil {
				return fmt.Errorf("%s: %v", path, err)
			}
			id, err := peerIDOf(key)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				return printJSON(w, map[string]any{"did": ucan.KeyDID(key), "peer_id": id.String(), "key": path, "created": created})
			}
			if created {
				fmt.Fprintf(cmd.ErrOrStderr(), "created the node key %s (mode 0600)\n", path)
			}
			fmt.Fprintf(w, "DID      %s\nPeer ID  %s\n", ucan.KeyDID(key), id)
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "the node's data directory")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func peerIDOf(key ed25519.PrivateKey) (peer.ID, error) {
	k, err := crypto.UnmarshalEd25519PrivateKey(key)
	if err != nil {
		return "", err
	}
	return peer.IDFromPrivateKey(k)
}
