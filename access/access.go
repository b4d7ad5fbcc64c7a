// Package access is the seam between a realm's authorization and the services
// that act on it (rpc, pubsub, the HTTP gateway): it says what the node itself
// and each connected peer were granted, as ucan verdicts.
//
// The node owns the policy. It validates the delegation chains a peer presents
// in the realm handshake (once per connection, again when they change) and
// keeps the verdict for as long as the peer is connected; services look the
// verdict up on every call or message and check it with ucan.Check, which
// costs a map lookup and a few string comparisons. A nil Policy, or Open(),
// is an open realm: everything is allowed.
package access

import (
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/macula-io/macula/peerdid"
	"github.com/macula-io/macula/ucan"
)

// Policy answers what principals of the realm were granted.
type Policy interface {
	// Peer returns the verdict on what p presented in the realm handshake
	// of its connection; nil when p has presented nothing valid (it is not,
	// or no longer, a verified peer of the realm): refuse it.
	Peer(p peer.ID) *ucan.Verdict
	// Self returns the verdict on the node's own chains: what the node may
	// do itself. Services check it before they act, so that a node without
	// a grant learns so at once rather than from every peer's refusal.
	Self() *ucan.Verdict
}

// Open returns the policy of an open realm: every verdict allows everything
// (ucan.OpenVerdict), for the same code path with and without an authority.
func Open(self peer.ID) Policy { return open{self: ucan.OpenVerdict(peerdid.Of(self))} }

type open struct{ self *ucan.Verdict }

func (o open) Peer(p peer.ID) *ucan.Verdict { return ucan.OpenVerdict(peerdid.Of(p)) }
func (o open) Self() *ucan.Verdict          { return o.self }

// IsOpen reports whether pol lets everyone do everything: nil, or a policy
// whose own verdict is open. Services skip their checks for it.
func IsOpen(pol Policy) bool {
	if pol == nil {
		return true
	}
	vd := pol.Self()
	return vd != nil && vd.Grant().Open
}
