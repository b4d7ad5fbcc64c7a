package registry

import (
	"context"
	"slices"

	"github.com/macula-io/macula/member"
)

// Membership is what the registry needs to know of the realm's nodes: which
// are alive, and which named clusters each has joined. The realm's
// membership service, *member.Members (node.Members), provides it; a test
// may provide its own.
//
// A node's entries stay in this node's view while the node is alive by
// List (or while this node has a link to it), and go when Watch reports
// that it left (reason node_left) or failed (node_down).
type Membership interface {
	// List returns the live members of the realm, this node included.
	List() []member.Member
	// Watch reports changes until ctx is done; the channel is closed then.
	Watch(ctx context.Context) <-chan member.Change
	// JoinCluster and LeaveCluster make this node's membership record say
	// it joined or left a named cluster.
	JoinCluster(ctx context.Context, name string) error
	LeaveCluster(ctx context.Context, name string) error
}

var _ Membership = (*member.Members)(nil)

// watchMembers applies the membership's changes until the registry
// closes.
func (r *Registry) watchMembers(ch <-chan member.Change) {
	defer r.wg.Done()
	for {
		select {
		case <-r.ctx.Done():
			return
		case c, ok := <-ch:
			if !ok {
				return
			}
			r.memberChange(c)
		}
	}
}

func (r *Registry) memberChange(ch member.Change) {
	id := ch.Member.ID

	if id == r.self || id == "" {
		return
	}
	switch ch.Kind {
	case member.Joined:
		r.setLive(id, true)
		// Tell the linked peers what we hold, for a few ticks: the
		// node's entries may reach this one through them before it
		// links to the node (a peer relays a stream to one that stays
		// behind on it).
		r.eagerDigests()
	case member.Left, member.Failed:
		r.setLive(id, false)
		reason, detail := ReasonNodeLeft, "the node left the realm"
		if ch.Kind == member.Failed {
			reason, detail = ReasonNodeDown, "the node stopped answering"
			if ch.Reason != "" {
				detail += ": " + ch.Reason
			}
		}
		r.log.info("registry: node gone; its entries are removed", "peer", id, "reason", reason)
		r.purgeNode(id, reason, detail, "")
	case member.Updated:
		r.setLive(id, true)
		for _, c := range ch.Previous.Clusters {
			if !slices.Contains(ch.Member.Clusters, c) && !r.linkSays(id, c) {
				r.purgeNode(id, ReasonClusterLeft, "the node left the cluster", c)
			}
		}
	}
}
