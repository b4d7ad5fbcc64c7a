package registry

import (
	"github.com/macula-io/macula/node"
)

// Start starts the registry of a running node: on the node's host, in its
// realm, with its access policy (a secure realm's verdicts) and the realm's
// membership (node.Members). cfg.Realm and cfg.Access are taken from the
// node. Close the registry before the node.
func Start(n *node.Node, cfg Config) (*Registry, error) {
	cfg.Realm = n.Realm()
	cfg.Access = n.Access()
	var m Membership
	if ms := n.Members(); ms != nil {
		m = ms
	}
	return New(n.Host(), m, cfg)
}
