package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/macula-io/macula/api"
)

// The client commands act as the node on its loopback API in a secure realm
// only with the node's local credential (package gateway, Loopback), which
// the node writes into <data-dir>/api-credential, readable by its user
// only. newAPIClient finds it, in this order:
//
//   - --api-credential FILE (MACULA_API_CREDENTIAL): that file, which must
//     be for the --api address;
//   - --data-dir DIR (MACULA_DATA_DIR, as for run): DIR/api-credential;
//   - the default data directory of run, $HOME/.macula/<host name>;
//   - the node's own answer: a 401 names its credential file, which the
//     client reads if it can (it runs as the node's user).
//
// A credential is only ever sent to the address it was issued for, on
// loopback (api.LocalCredential.For).

// addCredentialFlags defines the root's flags of the local credential.
func addCredentialFlags(root *cobra.Command) {
	f := root.PersistentFlags()
	f.String("api-credential", "", "file of the node's local credential, for the client commands (default: found in the node's data directory)")
	f.String("data-dir", "", "data directory of the node whose API the client commands use, where its local credential is (default: $HOME/.macula/<name>)")
}

// newAPIClient returns a client of the API at addr that proves, where it
// can, that it runs as the node's user.
func newAPIClient(cmd *cobra.Command, addr string) (*api.Client, error) {
	c := api.NewClient(addr)
	c.Local = true
	if file, _ := cmd.Flags().GetString("api-credential"); file != "" {
		lc, err := api.ReadLocalCredential(file)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("--api-credential: %v", err)
		}
		if !lc.For(addr) {
			c.Close()
			return nil, fmt.Errorf("--api-credential %s is the credential of the API at %s, not of %s", file, lc.API, addr)
		}
		c.Credential = lc.Credential
		return c, nil
	}
	dir, _ := cmd.Flags().GetString("data-dir")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return c, nil
		}
		dir = filepath.Join(home, ".macula", defaultName())
	}
	// Absent, unreadable or for another address: the node's 401 names the
	// file it wants, and says so if this user cannot read it either.
	if lc, err := api.ReadLocalCredential(filepath.Join(dir, api.CredentialFile)); err == nil && lc.For(addr) {
		c.Credential = lc.Credential
	}
	return c, nil
}
