package registry

import (
	"github.com/macula-io/macula/node"
)

// Start starts the registry of a running node: on the node's host, in its
// realm, with its access policy (a secure realm's verdicts) and, when cfg
// has none, the logger given (or slog.Default). cfg.Realm and cfg.Access
// are taken from the node. Close the registry before the node.
func Start(n *node.Node, cfg Config) (*Registry, error) {
	cfg.Realm = n.Realm()
	cfg.Access = n.Access()
	return New(n.Host(), nil, cfg)
}
