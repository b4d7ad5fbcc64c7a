package gateway

import (
	wire "github.com/macula-io/macula/api"
	"github.com/macula-io/macula/dht"
	"github.com/macula-io/macula/nat"
	"github.com/macula-io/macula/node"
	"github.com/macula-io/macula/pubsub"
)

// The API's bodies are package api's types (imported as wire: this
// package's handler type is named api). The functions below turn the
// node's own values into them, so that a field added to a service's type
// changes the API only when it is added here too; TestWireJSON checks that
// each conversion keeps every field the service has today.

func resolutionOf(r *node.Resolution) wire.Resolution {
	out := wire.Resolution{DID: r.DID, Alias: r.Alias, PeerID: r.PeerID, Addrs: r.Addrs}
	if out.Addrs == nil {
		out.Addrs = []string{}
	}
	if rec := r.Record; rec != nil {
		out.Record = &wire.AliasRecord{
			Alias: rec.Alias, DID: rec.DID, PeerID: rec.PeerID, Addrs: rec.Addrs,
			Seq: rec.Seq, Bound: rec.Bound, Expires: rec.Expires, Member: rec.Member, Sig: rec.Sig,
		}
	}
	return out
}

func dhtStatsOf(s dht.Stats) wire.DHTStats {
	return wire.DHTStats{
		Mode: string(s.Mode), Nodes: s.Nodes, Buckets: s.Buckets, ProviderKeys: s.ProviderKeys,
		ValueRecords: s.ValueRecords, StoredKeys: s.StoredKeys, Providing: s.Providing,
	}
}

// pubsubStatsOf is a conversion: the two types have the same fields, so a
// field added to pubsub.Stats alone stops this from compiling.
func pubsubStatsOf(s pubsub.Stats) wire.PubSubStats { return wire.PubSubStats(s) }

func natInfoOf(i nat.Info, security string) wire.NATInfo {
	out := wire.NATInfo{
		Type: string(i.Type), Mapping: string(i.Mapping), Filtering: string(i.Filtering),
		PublicIP: i.PublicIP, PublicPort: i.PublicPort, Stale: i.Stale, Hairpin: i.Hairpin,
		LocalAddr: i.LocalAddr, MeasuredAt: i.MeasuredAt, DurationMS: i.DurationMS, Error: i.Error,
		Security: security,
	}
	if i.Servers != nil {
		out.Servers = make([]wire.STUNServer, len(i.Servers))
		for k, s := range i.Servers {
			out.Servers[k] = wire.STUNServer(s)
		}
	}
	return out
}
