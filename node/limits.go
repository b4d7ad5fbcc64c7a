package node

import (
	"time"

	"github.com/libp2p/go-libp2p/config"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"

	"github.com/macula-io/macula/internal/p2phost"
)

// Resource limits of a node's libp2p host (docs/reliability.md lists them).
//
// The connection manager keeps at most ConnHighWater connections: above
// that it closes the least valued ones, down to ConnLowWater, sparing those
// younger than ConnGrace and those the services protect or value (the
// membership protects its overlay links, pubsub values its subscribers'
// links, the DHT its routing table's peers).
//
// The resource manager bounds what any peer can make the node hold: libp2p's
// default limits (with its own services' limits), computed for a fixed
// resourceMemory rather than a fraction of the machine's memory, so that a
// node behaves the same on every machine, with room for a realm's
// connections. Per peer: 8 connections, 256 inbound streams (64 per
// protocol); a stream past a limit is reset at once, and only that peer
// feels it.
const (
	ConnLowWater  = 64
	ConnHighWater = 128
	ConnGrace     = time.Minute

	resourceMemory = 1 << 30 // what the limits are scaled for
	resourceFDs    = 4096
	maxConns       = 1024 // connections of every peer together
)

// hostLimits gives the limits of a new node's resource manager; a test
// makes a misbehaving peer without limits of its own.
var hostLimits = resourceLimits

// resourceLimits are the resource manager's limits.
func resourceLimits() rcmgr.ConcreteLimitConfig {
	limits := rcmgr.DefaultLimits
	p2phost.SetDefaultServiceLimits(&limits)
	partial := rcmgr.PartialLimitConfig{
		System: rcmgr.ResourceLimits{
			Conns:         maxConns,
			ConnsInbound:  maxConns / 2,
			ConnsOutbound: maxConns / 2,
		},
	}
	return partial.Build(limits.Scale(resourceMemory, resourceFDs))
}

// limitOptions is the host option of the connection manager and the
// resource manager.
func limitOptions() (p2phost.Option, error) {
	cm, err := connmgr.NewConnManager(ConnLowWater, ConnHighWater, connmgr.WithGracePeriod(ConnGrace))
	if err != nil {
		return nil, err
	}
	// Without metrics: the host's are off (node.go), and the resource
	// manager's would still be kept, never exported, a timestamp formatted
	// and labelled counters updated under one lock on every stream,
	// connection and memory reservation (perf: 3% of a node's CPU under
	// lookups).
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(hostLimits()), rcmgr.WithMetricsDisabled())
	if err != nil {
		_ = cm.Close()
		return nil, err
	}
	return func(cfg *config.Config) error {
		cfg.ConnManager, cfg.ResourceManager = cm, rm
		return nil
	}, nil
}
