package ucan

import (
	"errors"
	"fmt"
	"strings"

	"github.com/macula-io/macula/keyfile"
)

// Errors of the package. Every refusal of a token, a chain or a capability
// wraps ErrUnauthorized, so a caller that only needs "allowed or not" tests
// errors.Is(err, ErrUnauthorized) and maps it to rpc.ErrUnauthorized or HTTP
// 403; the more precise sentinels below say why.
var (
	// ErrUnauthorized is wrapped by every refusal.
	ErrUnauthorized = errors.New("ucan: unauthorized")

	// ErrMalformed: a token or chain that cannot be decoded, is larger than
	// the limits, or is not the kind of token Macula accepts (only Ed25519
	// did:key principals, Ed25519 signatures over DAG-CBOR payloads).
	ErrMalformed = fmt.Errorf("%w: malformed token", ErrUnauthorized)
	// ErrUnsupportedVersion: a well-formed envelope whose tag is not
	// ucan/dlg@1.0.0-rc.1 or ucan/inv@1.0.0-rc.1, such as the final
	// @1.0.0 tags (see the package documentation). It wraps ErrMalformed.
	ErrUnsupportedVersion = fmt.Errorf("%w: unsupported token version", ErrMalformed)
	// ErrBadSignature: a token whose signature does not verify with the key
	// of its issuer (a token signed by someone else than its iss).
	ErrBadSignature = fmt.Errorf("%w: bad signature", ErrUnauthorized)
	// ErrExpired: a token past its expiry (beyond the clock leeway).
	ErrExpired = fmt.Errorf("%w: expired", ErrUnauthorized)
	// ErrNotYetValid: a token before its not-before time (beyond the leeway).
	ErrNotYetValid = fmt.Errorf("%w: not yet valid", ErrUnauthorized)
	// ErrCommand: no valid chain grants the command asked for.
	ErrCommand = fmt.Errorf("%w: command not granted", ErrUnauthorized)
	// ErrCommandWidened: a delegation in a chain grants a command that its
	// proof does not cover (it tries to widen the command).
	ErrCommandWidened = fmt.Errorf("%w: command widened", ErrUnauthorized)
	// ErrResource: the resource is outside every pattern granted for the
	// command, or a delegation tries to widen the pattern of its proof.
	ErrResource = fmt.Errorf("%w: resource not granted", ErrUnauthorized)
	// ErrPolicy: a delegation's policy that this package cannot honour for
	// the request (a statement on invocation arguments when there are none,
	// an invalid pattern, a pattern outside the realm) or that the
	// invocation's arguments do not satisfy.
	ErrPolicy = fmt.Errorf("%w: policy not satisfied", ErrUnauthorized)
	// ErrBrokenChain: the delegations do not form a chain: an audience that
	// is not the next issuer, a subject that changes, a missing proof.
	ErrBrokenChain = fmt.Errorf("%w: broken chain", ErrUnauthorized)
	// ErrNotRooted: the chain does not start with a root delegation issued
	// by the realm authority.
	ErrNotRooted = fmt.Errorf("%w: chain not rooted at the realm authority", ErrUnauthorized)
	// ErrWrongAudience: the token is meant for another principal: a chain
	// whose last audience is not the acting node, or an invocation whose
	// executor is not this node.
	ErrWrongAudience = fmt.Errorf("%w: token meant for another principal", ErrUnauthorized)
	// ErrChainTooLong: more delegations in a chain than Config.MaxChain.
	ErrChainTooLong = fmt.Errorf("%w: chain too long", ErrUnauthorized)
	// ErrReplay: an invocation that this validator has already accepted.
	ErrReplay = fmt.Errorf("%w: replayed invocation", ErrUnauthorized)
	// ErrRevoked: a chain containing a delegation the authority revoked.
	ErrRevoked = fmt.Errorf("%w: revoked", ErrUnauthorized)
	// ErrBusy: the replay cache or the revocation list is full of entries
	// that are still live; the invocation (or revocation) is refused rather
	// than forgetting one that could then be replayed.
	ErrBusy = fmt.Errorf("%w: validator busy", ErrUnauthorized)
	// ErrNotMember: no membership grant of the realm (or not for that name).
	ErrNotMember = fmt.Errorf("%w: not a member of the realm", ErrUnauthorized)
	// ErrInternal: a panic inside token handling, recovered at the package
	// boundary. The input is refused; the process keeps running.
	ErrInternal = fmt.Errorf("%w: internal error (recovered)", ErrUnauthorized)

	// ErrConfig: an invalid Config or option; the message names the field.
	ErrConfig = errors.New("ucan: invalid configuration")
	// ErrIssue: Issue, Invoke or Revoke was asked for something it cannot
	// sign (a missing field, a capability the proof does not grant, ...).
	ErrIssue = errors.New("ucan: cannot issue")
	// ErrCorruptKey: a key file that is not a PKCS#8 PEM Ed25519 key.
	ErrCorruptKey = keyfile.ErrCorrupt
)

// TokenError locates a refusal: which presented chain and which token in it
// (0 is the root). It wraps the reason, so errors.Is(err, ErrExpired) and
// friends work through it.
type TokenError struct {
	Chain int    // index of the chain in the presentation, 0 for an invocation's proofs
	Index int    // index of the token in the chain (root first); -1 for the invocation itself
	ID    string // content ID of the token, when it could be decoded
	Err   error
}

func (e *TokenError) Error() string {
	where := fmt.Sprintf("chain %d token %d", e.Chain, e.Index)
	if e.Index < 0 {
		where = "invocation"
	}
	if e.ID != "" {
		where += " (" + e.ID + ")"
	}
	return where + ": " + e.Err.Error()
}

func (e *TokenError) Unwrap() error { return e.Err }

// refuse wraps a sentinel with detail.
func refuse(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: %s", sentinel, fmt.Sprintf(format, args...))
}

// sentinelPrefixes are the texts of the sentinels that other errors of the
// package begin with, each followed by ": ", then the package's own prefix
// (of a bare sentinel).
var sentinelPrefixes = []string{ErrIssue.Error() + ": ", ErrUnauthorized.Error() + ": ", ErrConfig.Error() + ": ", "ucan: "}

// Reason returns err's message for a person: without the package's sentinel
// prefixes ("ucan: unauthorized: ", "ucan: cannot issue: ", "ucan: invalid
// configuration: "), which a refusal repeats at every level and which say
// nothing once the caller knows the request was refused. So
// "ucan: unauthorized: invocation (bafy...): ucan: unauthorized: replayed
// invocation: ..." reads "invocation (bafy...): replayed invocation: ...".
// Errors of other packages keep their text.
func Reason(err error) string {
	msg := err.Error()
	for _, p := range sentinelPrefixes {
		msg = strings.ReplaceAll(msg, p, "")
	}
	return msg
}
