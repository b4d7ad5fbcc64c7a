package registry

import (
	"context"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Membership is what the registry needs to know of the realm's nodes: which
// are alive, and which named clusters each has joined. The realm's
// membership service provides it (package member, wired by the node); a
// test may provide its own.
//
// A node's entries stay in this node's view while the node is alive by
// List (or while this node has a link to it), and go when Watch reports
// that it left (reason node_left) or failed (node_down).
type Membership interface {
	// List returns the live nodes of the realm, this one included.
	List() []NodeInfo
	// Watch reports changes until ctx is done; the channel is closed then.
	Watch(ctx context.Context) <-chan NodeChange
	// JoinCluster and LeaveCluster make this node's membership record say
	// it joined or left a named cluster.
	JoinCluster(ctx context.Context, name string) error
	LeaveCluster(ctx context.Context, name string) error
}

// NodeInfo is a live node of the realm.
type NodeInfo struct {
	ID       peer.ID
	Clusters []string // named clusters it joined, sorted
}

// ChangeKind says how a node's membership changed.
type ChangeKind uint8

const (
	// NodeJoined: a node became a live member.
	NodeJoined ChangeKind = iota + 1
	// NodeUpdated: a node's record changed (its clusters).
	NodeUpdated
	// NodeLeft: a node left cleanly.
	NodeLeft
	// NodeFailed: a node stopped answering (a crash, a partition).
	NodeFailed
)

// NodeChange is one change of the realm's membership.
type NodeChange struct {
	Kind     ChangeKind
	Node     NodeInfo
	Previous NodeInfo // the record before an update
}

// watchMembers applies the membership's changes until the registry
// closes.
func (r *Registry) watchMembers(ch <-chan NodeChange) {
	defer r.wg.Done()
	for {
		select {
		case <-r.ctx.Done():
			// Drain so that the sender is never stuck on us.
			go func() {
				for range ch {
				}
			}()
			return
		case c, ok := <-ch:
			if !ok {
				return
			}
			r.memberChange(c)
		}
	}
}

func (r *Registry) memberChange(ch NodeChange) {
	id := ch.Node.ID
	if id == r.self || id == "" {
		return
	}
	switch ch.Kind {
	case NodeJoined:
		r.setLive(id, true)
		// Ask the linked peers what they hold: the node's entries may
		// reach this one through them before it links to the node.
		r.askDigests()
	case NodeLeft, NodeFailed:
		r.setLive(id, false)
		reason, detail := ReasonNodeLeft, "the node left the realm"
		if ch.Kind == NodeFailed {
			reason, detail = ReasonNodeDown, "the node stopped answering"
		}
		r.log.info("registry: node gone; its entries are removed", "peer", id, "reason", reason)
		r.purgeNode(id, reason, detail, "")
	case NodeUpdated:
		for _, c := range ch.Previous.Clusters {
			if !slices.Contains(ch.Node.Clusters, c) && !r.linkSays(id, c) {
				r.purgeNode(id, ReasonClusterLeft, "the node left the cluster", c)
			}
		}
	}
}
