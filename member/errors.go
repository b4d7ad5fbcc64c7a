package member

import (
	"errors"
	"fmt"
	"net"
	"slices"

	"github.com/macula-io/macula/realm"
)

// Errors of the package; test them with errors.Is.
var (
	// ErrConfig: a Config field is out of range; the message names it.
	ErrConfig = errors.New("member: bad config")
	// ErrInvalidName: a capability or cluster name that is not one segment
	// of [a-z0-9_-] (1..63 bytes, starting with a letter or digit), or a
	// list longer than MaxCapabilities or MaxClusters. It also matches
	// realm.ErrInvalid.
	ErrInvalidName = fmt.Errorf("member: %w", realm.ErrInvalid)
	// ErrUnauthorized: in a secure realm, this node holds no grant to serve
	// a capability it was asked to claim. The error also wraps the ucan
	// refusal (ucan.ErrUnauthorized).
	ErrUnauthorized = errors.New("member: unauthorized")
	// ErrClosed: Members was closed. It also matches net.ErrClosed.
	ErrClosed error = closedError{}
)

type closedError struct{}

func (closedError) Error() string        { return "member: closed" }
func (closedError) Is(target error) bool { return target == net.ErrClosed }

// ValidateName checks a capability or cluster name: one segment of
// [a-z0-9_-], 1..63 bytes, starting with a letter or digit, as a node name.
func ValidateName(name string) error {
	if err := realm.ValidateNodeName(name); err != nil {
		return fmt.Errorf("%w: %q: want one segment of [a-z0-9_-] such as \"game\"", ErrInvalidName, name)
	}
	return nil
}

// NormalizeCapabilities checks a list of capability names (ValidateName,
// at most MaxCapabilities) and returns it sorted without duplicates, as
// Members keeps it.
func NormalizeCapabilities(caps []string) ([]string, error) {
	return normalize("capability", caps, MaxCapabilities)
}

// normalize validates names and returns them sorted without duplicates.
func normalize(what string, names []string, limit int) ([]string, error) {
	out := make([]string, 0, len(names))
	for _, n := range names {
		if realm.ValidateNodeName(n) != nil {
			return nil, fmt.Errorf("%w: %s %q: want one segment of [a-z0-9_-] such as \"game\"", ErrInvalidName, what, n)
		}
		out = append(out, n)
	}
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) > limit {
		return nil, fmt.Errorf("%w: %d %s names, at most %d", ErrInvalidName, len(out), what, limit)
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}
