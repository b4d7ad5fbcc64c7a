package main

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/macula-io/macula/internal/atomicfile"
	"github.com/macula-io/macula/realm"
	"github.com/macula-io/macula/ucan"
)

// ucanMaxInput bounds what the ucan commands read from a file or stdin: a
// chain is a few kilobytes at most (ucan.ParseChain has its own limit).
const ucanMaxInput = 1 << 20

// ucanDefaultTTL is how long a delegation of ucan issue lasts without
// --expires.
const ucanDefaultTTL = 24 * time.Hour

// newRealmCmd is "macula-node realm": the realm authority.
func newRealmCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "realm",
		Short: "Manage the authority of a secure realm",
		Long: `A secure realm names an authority: an Ed25519 key known by its did:key.
Every call, publication, subscription and advertisement in the realm needs a
delegation chain rooted at that key (see 'macula-node ucan').

  macula-node realm init [--key FILE]   create the authority key, print its did:key`,
		Args:              cobra.ArbitraryArgs,
		RunE:              groupRun,
		PersistentPreRunE: ucanPreRun,
	}
	cmd.SetFlagErrorFunc(ucanFlagUsageError)
	cmd.AddCommand(newRealmInitCmd())
	return cmd
}

func newRealmInitCmd() *cobra.Command {
	var (
		keyPath string
		asJSON  bool
	)
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create a realm authority key and print its did:key",
		Long: `Create the key of a realm authority (Ed25519, PKCS#8 PEM, mode 0600; by
default $HOME/.macula/authority.key) and print its did:key, which the nodes
of a secure realm are configured with.

An existing key is never replaced, whatever the options: it is the realm's
identity, and a new one would orphan every delegation issued with it. Keep
it as secret as a node key; it signs the root of every grant in the realm.`,
		Example: `  macula-node realm init
  macula-node realm init --key ./acme/authority.key`,
		Args: argsN(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := keyPath
			if path == "" {
				home, err := os.UserHomeDir()
				if err != nil {
					return &usageError{err: fmt.Errorf("no home directory: give --key (%v)", err), hint: cmd.CommandPath()}
				}
				path = filepath.Join(home, ".macula", ucan.AuthorityKeyFile)
			}
			key, err := ucan.CreateKey(path)
			if errors.Is(err, fs.ErrExist) {
				msg := fmt.Sprintf("%s already exists and is never replaced", path)
				old, lerr := ucan.LoadKey(path)
				if lerr == nil {
					msg += fmt.Sprintf(": it is the authority %s; use it as it is (%s ucan issue --as %s ...) or give another --key", ucan.KeyDID(old), selfCommand(), path)
				} else {
					msg += "; give another --key"
				}
				if asJSON {
					// A script learns the existing authority on stdout
					// (created false), and the refusal from the exit code.
					out := map[string]any{"key": path, "created": false, "error": msg}
					if lerr == nil {
						out["did"] = ucan.KeyDID(old)
					}
					if err := printJSON(cmd.OutOrStdout(), out); err != nil {
						return err
					}
				}
				return errors.New(msg)
			}
			if err != nil {
				return fmt.Errorf("creating the authority key: %v", err)
			}
			did := ucan.KeyDID(key)
			w := cmd.OutOrStdout()
			if asJSON {
				return printJSON(w, map[string]any{"key": path, "did": did, "created": true})
			}
			fmt.Fprintf(w, "created the realm authority key %s (mode 0600: keep it secret)\n", path)
			fmt.Fprintf(w, "authority  %s\n\n", did)
			fmt.Fprintf(w, "A realm whose nodes run with --authority %s is secure: grant each node\n", did)
			self := selfCommand()
			fmt.Fprintf(w, "membership and what it may do (its did:key: '%s key --data-dir DIR'), then run it with --ucan FILE:\n", self)
			fmt.Fprintf(w, "  %s ucan issue --as %s --realm REALM --to NODE_DID --can member --name NODE_NAME --out member.ucan\n", self, path)
			fmt.Fprintf(w, "  %s ucan issue --as %s --realm REALM --to NODE_DID --can call --with 'REALM.*' --expires 24h --out call.ucan\n", self, path)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&keyPath, "key", "", "where to create the key (default $HOME/.macula/"+ucan.AuthorityKeyFile+")")
	f.BoolVar(&asJSON, "json", false, "print the key file and did:key as JSON")
	return cmd
}

// newUCANCmd is "macula-node ucan": delegations of a secure realm.
func newUCANCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ucan",
		Short: "Issue, inspect and verify UCAN delegations of a secure realm",
		Long: `Delegations (UCAN 1.0) grant a principal, by its did:key, a command on the
names of a realm a pattern matches. The realm authority issues root
delegations; a holder may sub-delegate what it holds, never more.

  macula-node ucan issue --as KEY --to DID --can CMD [--with PATTERN] ...
                                     sign a delegation, print the chain
  macula-node ucan inspect TOKEN     describe a token or chain
  macula-node ucan verify TOKEN --authority DID --realm REALM [--can CMD --with NAME]
                                     validate a chain as a node would
  macula-node ucan revoke --as KEY TOKEN [--send]
                                     revoke a delegation, spread it through the realm

TOKEN is the token or chain itself, @FILE for one in a file, or - for stdin.
Of the MACULA_* variables only MACULA_REALM and MACULA_AUTHORITY apply here.
Commands (--can): call (or invoke), publish (write), subscribe (read),
advertise (provide), member, register, join, dispatch (registry keys: the key
chat/room1 is the name REALM.chat.room1, the prefix chat/ is REALM.chat.>),
all (*), or a path such as /macula/call.`,
		Args:              cobra.ArbitraryArgs,
		RunE:              groupRun,
		PersistentPreRunE: ucanPreRun,
	}
	cmd.SetFlagErrorFunc(ucanFlagUsageError)
	cmd.AddCommand(newUCANIssueCmd(), newUCANInspectCmd(), newUCANVerifyCmd(), newUCANRevokeCmd())
	return cmd
}

func ucanFlagUsageError(cmd *cobra.Command, err error) error {
	return &usageError{err: err, hint: cmd.CommandPath()}
}

// ucanEnvFlags are the flags of the ucan and realm commands that MACULA_*
// environment variables may set. The others (--as, --to, --can, --with,
// --name, --key, ...) come from the command line only: a grant must say
// exactly what its issuer typed, and a node's own MACULA_NAME must not end
// up bound into a membership.
var ucanEnvFlags = map[string]bool{"realm": true, "authority": true}

// ucanPreRun replaces the root's PersistentPreRunE for the ucan and realm
// commands: it applies the environment to ucanEnvFlags only, and reads no
// config file.
func ucanPreRun(cmd *cobra.Command, _ []string) error {
	return applySources(cmd.Flags(), func(name string) string {
		for f := range ucanEnvFlags {
			if envName(f) == name {
				return os.Getenv(name)
			}
		}
		return ""
	}, "")
}

func newUCANIssueCmd() *cobra.Command {
	var (
		keyPath, to, can, with, name, expires, notBefore, proofPath, outPath, realmName string
		asJSON                                                                          bool
	)
	cmd := &cobra.Command{
		Use:   "issue --as KEY --to DID --can CMD --realm REALM",
		Short: "Sign a delegation and print the chain to hand to its audience",
		Long: `Sign a delegation of --can on the names --with matches to --to, with the key
--as, and print the chain (base64url text, one line) to hand to the audience,
or write it to --out (mode 0600).

Without --proof the delegation is a root one: --as must be the realm
authority's key. With --proof FILE (the chain that granted --as what it
delegates) it is a sub-delegation, which must lie within the proof: the same
or a narrower command, the same or a narrower pattern.

--with is a segment pattern of the realm ("*" one segment, a final ">" one or
more); without it, every name of the realm. --name, with --can member, binds
the node name of the alias did:macula:<realm>.<name> to --to. --expires and
--not-before take a duration from now (1h, 30m) or an RFC 3339 time.`,
		Example: `  macula-node ucan issue --as ~/.macula/authority.key --realm io.acme \
      --to did:key:z6Mk... --can call --with 'io.acme.orders.*' --expires 1h --out orders.ucan
  macula-node ucan issue --as ~/.macula/node1/node.key --realm io.acme --proof orders.ucan \
      --to did:key:z6Mk... --can call --with io.acme.orders.get --expires 10m`,
		Args: argsN(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			usage := func(format string, args ...any) error {
				return &usageError{err: fmt.Errorf(format, args...), hint: cmd.CommandPath()}
			}
			for _, req := range []struct{ flag, val string }{{"as", keyPath}, {"to", to}, {"can", can}, {"realm", realmName}} {
				if req.val == "" {
					return usage("--%s is required", req.flag)
				}
			}
			if err := realm.ValidateRealm(realmName); err != nil {
				return usage("--realm %q: %v", realmName, err)
			}
			if _, err := realm.ParseDIDKey(to); err != nil {
				return usage("--to %q: want a did:key (macula-node id prints a node's): %v", to, err)
			}
			command, err := ucan.ParseCommand(can)
			if err != nil {
				return usage("--can %q: %v", can, cleanUCANError(err))
			}
			if with != "" && with != ">" {
				if err := realm.ValidatePattern(realmName, with); err != nil {
					return usage("--with %q: %v", with, err)
				}
			}
			if name != "" && command != ucan.Member {
				return usage("--name binds a node name to a membership: give it with --can member")
			}
			now := time.Now()
			exp, err := ucanParseWhen(expires, now)
			if err != nil {
				return usage("--expires %q: %v", expires, err)
			}
			var nbf time.Time
			if notBefore != "" {
				if nbf, err = ucanParseWhen(notBefore, now); err != nil {
					return usage("--not-before %q: %v", notBefore, err)
				}
			}
			key, err := ucan.LoadKey(keyPath)
			if err != nil {
				return ucanKeyError(keyPath, err)
			}
			var proof ucan.Chain
			if proofPath != "" {
				data, err := ucanReadLimited(proofPath, nil)
				if err != nil {
					return fmt.Errorf("--proof: %v", err)
				}
				if proof, err = ucan.ParseChain(data); err != nil {
					return fmt.Errorf("--proof %s: %v", proofPath, cleanUCANError(err))
				}
			}
			chain, err := ucan.Issue(key, ucan.IssueOptions{
				Audience:  to,
				Command:   command,
				Resource:  with,
				Name:      name,
				NotBefore: nbf,
				Expires:   exp,
				Proof:     proof,
				Realm:     realmName,
			})
			if err != nil {
				return fmt.Errorf("cannot issue: %v", cleanUCANError(err))
			}
			text := chain.String() + "\n"
			w := cmd.OutOrStdout()
			res := with
			if res == "" {
				res = ">"
			}
			if outPath != "" {
				if err := atomicfile.Write(outPath, []byte(text), 0o600); err != nil {
					return fmt.Errorf("--out: %v", err)
				}
			}
			if asJSON {
				out := ucanIssueResult{Chain: chain.String(), Length: len(chain), Issuer: ucan.KeyDID(key), Audience: to,
					Command: string(command), Resource: res, Name: name, Expires: exp.UTC(), Out: outPath}
				if !nbf.IsZero() {
					t := nbf.UTC()
					out.NotBefore = &t
				}
				return printJSON(w, out)
			}
			if outPath == "" {
				_, err := io.WriteString(w, text)
				return err
			}
			kind := "root delegation"
			if len(proof) > 0 {
				kind = fmt.Sprintf("sub-delegation (chain of %d)", len(chain))
			}
			_, err = fmt.Fprintf(w, "wrote %s to %s: %s on %s for %s, expires %s\n",
				kind, outPath, command, res, to, exp.UTC().Format(time.RFC3339))
			return err
		},
	}
	f := cmd.Flags()
	f.BoolVar(&asJSON, "json", false, "print the chain and what it grants as JSON (with --out too)")
	f.StringVar(&keyPath, "as", "", "key file of the issuer (the realm authority, or a holder with --proof)")
	f.StringVar(&to, "to", "", "did:key of the audience, who receives the grant")
	f.StringVar(&can, "can", "", "the command granted: call|publish|subscribe|advertise|member|all, invoke|read, or /macula/...")
	f.StringVar(&with, "with", "", "pattern of the names it applies to (default: every name of the realm)")
	f.StringVar(&name, "name", "", "with --can member: the node name the membership binds")
	f.StringVar(&expires, "expires", ucanDefaultTTL.String(), "when the grant ends: a duration from now or an RFC 3339 time")
	f.StringVar(&notBefore, "not-before", "", "when the grant starts: a duration from now or an RFC 3339 time (default now)")
	f.StringVar(&proofPath, "proof", "", "file of the chain that granted --as what it delegates (a sub-delegation)")
	f.StringVar(&outPath, "out", "", "write the chain to this file (mode 0600) instead of stdout")
	f.StringVar(&realmName, "realm", "", "the realm the grant is for; --with must lie under it")
	f.SortFlags = false
	return cmd
}

// ucanIssueResult is the --json output of ucan issue.
type ucanIssueResult struct {
	Chain     string     `json:"chain"`  // the text to hand to the audience
	Length    int        `json:"length"` // delegations in the chain
	Issuer    string     `json:"issuer"`
	Audience  string     `json:"audience"`
	Command   string     `json:"command"`
	Resource  string     `json:"resource"`
	Name      string     `json:"name,omitempty"`
	NotBefore *time.Time `json:"not_before,omitempty"`
	Expires   time.Time  `json:"expires"`
	Out       string     `json:"out,omitempty"` // the file it was written to
}

func newUCANInspectCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect TOKEN|@FILE|-",
		Short: "Describe a token or a chain for people",
		Long: `Describe a token or a chain: for each token its kind, issuer, audience,
subject, command, policy and the resource pattern Macula reads in it,
validity window, content ID, and whether its signature verifies; then whether
the tokens link up as a chain and what it grants. It does not check time, the
realm or revocations: 'macula-node ucan verify' does.`,
		Example: `  macula-node ucan inspect @orders.ucan
  macula-node ucan issue ... | macula-node ucan inspect -`,
		Args: argsN(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := ucanReadTokenArg(cmd, args[0])
			if err != nil {
				return err
			}
			d, err := ucan.Describe(data)
			if err != nil {
				return fmt.Errorf("cannot inspect: %v", cleanUCANError(err))
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), d)
			}
			_, err = io.WriteString(cmd.OutOrStdout(), d.String())
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the description as JSON (tokens, checks, effective)")
	return cmd
}

// ucanVerifyResult is the --json output of ucan verify.
type ucanVerifyResult struct {
	Valid        bool           `json:"valid"`
	Reason       string         `json:"reason,omitempty"`
	Realm        string         `json:"realm"`
	Authority    string         `json:"authority"`
	Caller       string         `json:"caller,omitempty"`
	Member       bool           `json:"member"`
	Name         string         `json:"name,omitempty"`
	Capabilities []ucanCapJSON  `json:"capabilities,omitempty"`
	Expires      *time.Time     `json:"expires,omitempty"`
	Check        *ucanCheckJSON `json:"check,omitempty"`
}

type ucanCapJSON struct {
	Command  string `json:"command"`
	Resource string `json:"resource"`
}

type ucanCheckJSON struct {
	Command  string `json:"command"`
	Resource string `json:"resource,omitempty"`
	Allowed  bool   `json:"allowed"`
	Reason   string `json:"reason,omitempty"`
}

func newUCANVerifyCmd() *cobra.Command {
	var (
		authority, realmName, forDID, can, with string
		asJSON                                  bool
		revokedFiles                            []string
	)
	cmd := &cobra.Command{
		Use:   "verify TOKEN|@FILE|- --authority DID --realm REALM",
		Short: "Validate a chain as a node of the realm would, and check a command",
		Long: `Validate a delegation chain as a node of a secure realm does when a peer
presents it on its connection: rooted at --authority, linked, signed, within
its validity window (60 s leeway), patterns within --realm, held by the
presenting peer (--for; default the chain's final audience). Print what it
grants: the caller, membership, capabilities and expiry.

With --can (and --with, the concrete name; a pattern for subscribe; the node
name for member), also check whether that command on that resource is
allowed.

Revocations are known only as far as --revoked gives them (files of records,
one per line, as 'ucan revoke' prints them and GET /v1/ucan/revocations lists
them): without it a chain that verifies may still have been revoked.

Exit codes: 0 valid (and allowed), 1 a failure to check, 2 a wrong command
line, 7 refused (one line says why).`,
		Example: `  macula-node ucan verify @orders.ucan --authority did:key:z6Mk... --realm io.acme
  macula-node ucan verify @orders.ucan --authority did:key:z6Mk... --realm io.acme \
      --can call --with io.acme.orders.get`,
		Args: argsN(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			usage := func(format string, args ...any) error {
				return &usageError{err: fmt.Errorf(format, args...), hint: cmd.CommandPath()}
			}
			if authority == "" {
				return usage("--authority is required (the did:key of the realm authority)")
			}
			if realmName == "" {
				return usage("--realm is required")
			}
			if _, err := realm.ParseDIDKey(authority); err != nil {
				return usage("--authority %q: want a did:key: %v", authority, err)
			}
			if err := realm.ValidateRealm(realmName); err != nil {
				return usage("--realm %q: %v", realmName, err)
			}
			if forDID != "" {
				if _, err := realm.ParseDIDKey(forDID); err != nil {
					return usage("--for %q: want a did:key: %v", forDID, err)
				}
			}
			var command ucan.Command
			if can != "" {
				c, err := ucan.ParseCommand(can)
				if err != nil {
					return usage("--can %q: %v", can, cleanUCANError(err))
				}
				command = c
				if with == "" && command != ucan.Member {
					return usage("--can %s needs --with NAME, the resource to check", can)
				}
			} else if with != "" {
				return usage("--with needs --can, the command to check")
			}
			data, err := ucanReadTokenArg(cmd, args[0])
			if err != nil {
				return err
			}
			res := ucanVerifyResult{Realm: realmName, Authority: authority}
			refused := func(reason string) error {
				res.Reason = reason
				if asJSON {
					if err := printJSON(cmd.OutOrStdout(), res); err != nil {
						return err
					}
				}
				return &codedError{code: exitUnauthorized, err: errors.New("refused: " + reason)}
			}
			chain, err := ucan.ParseChain(data)
			if err != nil {
				return refused(cleanUCANError(err))
			}
			peer := forDID
			if peer == "" {
				if peer, err = chain.Holder(); err != nil {
					return refused(fmt.Sprintf("cannot tell whom the chain is for (%v); give --for DID", cleanUCANError(err)))
				}
			}
			v, err := ucan.New(ucan.Config{Realm: realmName, Authority: authority})
			if err != nil {
				return fmt.Errorf("validator: %v", cleanUCANError(err))
			}
			for _, f := range revokedFiles {
				if err := ucanAddRevocations(v, f); err != nil {
					return fmt.Errorf("--revoked %v", err)
				}
			}
			vd, err := v.Validate(cmd.Context(), peer, []ucan.Chain{chain})
			if err != nil {
				return refused(ucanVerifyReason(err, len(chain)))
			}
			g := vd.Grant()
			res.Valid = true
			res.Caller, res.Member, res.Name = g.Caller, g.Member, g.Name
			for _, c := range g.Capabilities {
				res.Capabilities = append(res.Capabilities, ucanCapJSON{Command: string(c.Command), Resource: c.Resource})
			}
			if !g.Expires.IsZero() {
				exp := g.Expires.UTC()
				res.Expires = &exp
			}
			var checkErr error
			if command != "" {
				switch {
				case command == ucan.Member:
					checkErr = ucan.CheckMember(vd, with)
				case command == ucan.Subscribe && realm.IsPattern(with):
					checkErr = ucan.CheckPattern(vd, command, with)
				default:
					checkErr = ucan.Check(vd, command, with)
				}
				res.Check = &ucanCheckJSON{Command: string(command), Resource: with, Allowed: checkErr == nil}
				if checkErr != nil {
					res.Check.Reason = cleanUCANError(checkErr)
				}
			}
			w := cmd.OutOrStdout()
			if asJSON {
				if err := printJSON(w, res); err != nil {
					return err
				}
			} else if err := ucanPrintVerify(w, len(chain), res); err != nil {
				return err
			}
			if checkErr != nil {
				what := string(command)
				if with != "" {
					what += " on " + with
				}
				return &codedError{code: exitUnauthorized, err: fmt.Errorf("refused: %s: %s", what, cleanUCANError(checkErr))}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&authority, "authority", "", "did:key of the realm authority the chain must be rooted at")
	f.StringVar(&realmName, "realm", "", "the realm whose names the chain's patterns must lie under")
	f.StringVar(&forDID, "for", "", "did:key of the peer presenting the chain (default: the chain's final audience)")
	f.StringVar(&can, "can", "", "also check this command: call|publish|subscribe|advertise|member|all, or /macula/...")
	f.StringVar(&with, "with", "", "with --can: the name to check it on (a pattern for subscribe, the node name for member)")
	f.StringArrayVar(&revokedFiles, "revoked", nil, "file of revocation records in force, one per line (repeatable)")
	f.BoolVar(&asJSON, "json", false, "print the verdict as JSON")
	f.SortFlags = false
	return cmd
}

// ucanAddRevocations reads revocation records, one per line in base64 or
// base64url, and adds them to v.
func ucanAddRevocations(v *ucan.Validator, path string) error {
	data, err := ucanReadLimited(path, nil)
	if err != nil {
		return err
	}
	for i, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSpace(line); line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		rec, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(line, "="))
		if err != nil {
			rec, err = base64.StdEncoding.DecodeString(line)
		}
		if err != nil {
			return fmt.Errorf("%s:%d: not base64", path, i+1)
		}
		if err := v.AddRevocation(rec); err != nil {
			return fmt.Errorf("%s:%d: %v", path, i+1, cleanUCANError(err))
		}
	}
	return nil
}

func ucanPrintVerify(w io.Writer, n int, res ucanVerifyResult) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Valid\tyes: chain of %d delegation(s) rooted at %s, realm %s\n", n, res.Authority, res.Realm)
	fmt.Fprintf(tw, "Caller\t%s\n", res.Caller)
	switch {
	case res.Member && res.Name != "":
		fmt.Fprintf(tw, "Member\tyes, as %s (did:macula:%s.%s)\n", res.Name, res.Realm, res.Name)
	case res.Member:
		fmt.Fprintf(tw, "Member\tyes\n")
	default:
		fmt.Fprintf(tw, "Member\tno\n")
	}
	for i, c := range res.Capabilities {
		label := ""
		if i == 0 {
			label = "Capabilities"
		}
		fmt.Fprintf(tw, "%s\t%s on %s\n", label, c.Command, c.Resource)
	}
	if len(res.Capabilities) == 0 {
		fmt.Fprintf(tw, "Capabilities\t-\n")
	}
	if res.Expires != nil {
		fmt.Fprintf(tw, "Expires\t%s (in %s)\n", res.Expires.Format(time.RFC3339), time.Until(*res.Expires).Round(time.Second))
	} else {
		fmt.Fprintf(tw, "Expires\tnever\n")
	}
	if c := res.Check; c != nil {
		what := c.Command
		if c.Resource != "" {
			what += " on " + c.Resource
		}
		if c.Allowed {
			fmt.Fprintf(tw, "Allowed\tyes: %s\n", what)
		} else {
			fmt.Fprintf(tw, "Allowed\tno: %s (%s)\n", what, c.Reason)
		}
	}
	return tw.Flush()
}

// ucanVerifyReason says in one line why Validate refused a chain of n tokens.
func ucanVerifyReason(err error, n int) string {
	var te *ucan.TokenError
	if errors.As(err, &te) {
		where := fmt.Sprintf("token %d of %d", te.Index, n)
		switch {
		case n == 1:
			where = "the delegation"
		case te.Index == 0:
			where = fmt.Sprintf("token 0 (the root) of %d", n)
		case te.Index == n-1:
			where = fmt.Sprintf("token %d (the last) of %d", te.Index, n)
		}
		return where + ": " + cleanUCANError(te.Err)
	}
	return cleanUCANError(err)
}

// cleanUCANError is err's message on one line, without the ucan package's
// sentinel prefixes ("ucan: unauthorized: "), which say nothing to a person
// at a command line.
func cleanUCANError(err error) string { return oneLine(ucan.Reason(err)) }

// ucanKeyError explains why a key file could not be loaded.
func ucanKeyError(path string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("--as %s: no such key file (a realm authority key is made by 'macula-node realm init'; a node's is node.key in its data directory)", path)
	case errors.Is(err, ucan.ErrCorruptKey):
		return fmt.Errorf("--as %s: not an Ed25519 key file (PKCS#8 PEM)", path)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("--as %s: permission denied", path)
	}
	return fmt.Errorf("--as %s: %v", path, err)
}

// ucanParseWhen reads a time: a positive duration from now, or RFC 3339.
func ucanParseWhen(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return time.Time{}, errors.New("want a positive duration such as 1h, or an RFC 3339 time")
		}
		return now.Add(d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, errors.New("want a duration such as 1h or 30m, or an RFC 3339 time such as 2026-01-02T15:04:05Z")
	}
	return t, nil
}

// ucanReadTokenArg reads a TOKEN|@FILE|- argument.
func ucanReadTokenArg(cmd *cobra.Command, arg string) ([]byte, error) {
	switch {
	case arg == "-":
		data, err := ucanReadLimited("-", cmd.InOrStdin())
		if err != nil {
			return nil, fmt.Errorf("reading the token from stdin: %v", err)
		}
		return data, nil
	case strings.HasPrefix(arg, "@"):
		return ucanReadLimited(arg[1:], nil)
	}
	return []byte(arg), nil
}

// ucanReadLimited reads a file (or stdin for "-") of at most ucanMaxInput bytes.
func ucanReadLimited(path string, stdin io.Reader) ([]byte, error) {
	var r io.Reader
	if path == "-" && stdin != nil {
		r = stdin
	} else {
		f, err := os.Open(path)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("%s: no such file", path)
			}
			return nil, err
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, ucanMaxInput+1))
	if err != nil {
		return nil, err
	}
	if len(data) > ucanMaxInput {
		return nil, fmt.Errorf("%s: over %d bytes, not a chain", path, ucanMaxInput)
	}
	return data, nil
}
