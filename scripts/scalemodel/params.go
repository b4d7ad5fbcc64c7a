package main

import (
	"time"

	"github.com/libp2p/go-libp2p-kad-dht/amino"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"

	"github.com/macula-io/macula/dht"
	"github.com/macula-io/macula/member"
	"github.com/macula-io/macula/node"
	"github.com/macula-io/macula/pubsub"
	"github.com/macula-io/macula/registry"
)

// The parameters of the model. Where the code exports a value, the model
// takes it from there; where it does not, the value is copied here with
// the file it comes from (docs/reliability.md lists them too).
var (
	// kad-dht (github.com/libp2p/go-libp2p-kad-dht v0.42.2): the realm's
	// DHT uses its defaults but for the concurrency (dht/dht.go passes no
	// bucket size or resiliency).
	kBucket     = amino.DefaultBucketSize // k: peers per bucket, and per answer
	alpha       = dht.Concurrency         // requests in flight per query (kad-dht's default: 10)
	beta        = amino.DefaultResiliency // the closest beta must have answered for a query to end
	provideTTL  = amino.DefaultProvideValidity
	lookupSettl = dht.LookupSettle // a Lookup with a limit ends at most this long after the last new provider

	// Membership (member/config.go).
	rings         = member.DefaultRings
	probeInterval = member.DefaultProbeInterval
	probeTimeout  = member.DefaultProbeTimeout

	// Connection manager (node/limits.go).
	lowWater  = node.ConnLowWater
	highWater = node.ConnHighWater
	grace     = node.ConnGrace

	// Registry (registry/config.go).
	antiEntropy = registry.DefaultAntiEntropy

	// Pub/sub (pubsub/config.go).
	interestRefresh = pubsub.DefaultInterestRefresh

	// Relays: go-libp2p's circuit v2 resources, which node/nat.go keeps but
	// for the per-IP and per-ASN bounds.
	relayRes = relayv2.DefaultResources()
)

// Values the code does not export.
const (
	// dht/dht.go settleAnswers: a Lookup with a limit ends once this many
	// peers answered since the last new provider (that answer included).
	settleAnswers = 3
	// dht.RefreshPeriod (kad-dht's RoutingTable.RefreshInterval, 10 minutes
	// by default).
	rtRefresh = dht.RefreshPeriod
	// kad-dht dht.go: buckets whose peers the DHT protects in the
	// connection manager (the others get a tag of value 5, baseConnMgrScore).
	protectedBuckets = 2
	kbucketTagValue  = 5
	// kbucket v0.9.0 table_refresh.go: maxCplForRefresh (PeerIDPreimageMaxCpl).
	maxCplForRefresh = 15

	// dht/dht.go New: the default ReprovideInterval of Macula's provided keys
	// (procedures, interest keys).
	reprovide = 12 * time.Hour
	// rpc/rpc.go: the default ProviderTTL (a caller's provider list is
	// looked up again after it), and rpc/balance.go's lookupLimit.
	providerTTL = 10 * time.Second

	// pubsub/pubsub.go: connTagValue, the connection manager's value of a
	// subscriber's link.
	pubsubTagValue = 20

	// registry/sync.go: quietTicks (an idle link's digest every 300 ticks);
	// registry/link.go: maxDials (dials of unconnected members in flight).
	quietTicks = 300
	maxDials   = 4

	// node/liveness.go and node/activity.go: a peer in use is pinged every
	// livenessInterval, an idle one not at all.
	livenessActive = time.Second
	// go-libp2p p2p/transport/quicreuse/config.go: KeepAlivePeriod.
	quicKeepAlive = 15 * time.Second
	// go-libp2p p2p/net/connmgr/connmgr.go: silencePeriod, the least time
	// between two trims.
	trimEvery = 10 * time.Second
	// node/limits.go maxConns: the resource manager's system limit of
	// connections (half inbound, half outbound).
	maxConns = 1024

	// node/nat.go: autorelay.WithNumRelays(2), the reservations a private
	// node keeps. (relayReservationsPerIP, 32, is not modelled.)
	numRelays         = 2
	relayLimitTime    = time.Hour // node/config.go: RelayLimitDuration
	relayLimitData    = 1 << 30   // node/config.go: RelayLimitData
	memberRecordBytes = 300       // docs/membership.md: ~300 bytes per member with its addresses
)

// Sizes on the wire that the model assumes (not read from the code).
const (
	frameHeader = 6   // package frame: type, version, uint32 length
	peerAddrs   = 110 // a peer's addresses in a DHT answer (two or three multiaddrs)
)
