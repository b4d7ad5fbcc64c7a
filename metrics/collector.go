package metrics

import (
	"context"
	"strings"
	"sync/atomic"
	"time"

	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/macula-io/macula/dht"
	"github.com/macula-io/macula/nat"
	"github.com/macula-io/macula/rpc"
)

// collector turns the tables and the services' Stats into metrics at
// scrape time.
type collector struct {
	m     *Metrics
	descs map[string]*prometheus.Desc
}

// desc is one family: name, help, variable labels.
type desc struct {
	name, help string
	labels     []string
}

var families = []desc{
	{"peers", "Connected peers of the realm, by path (direct or relayed).", []string{"path"}},
	{"peer_rtt_seconds", "Round-trip times of the connected peers now (smoothed, as measured by libp2p).", nil},
	{"connections_opened_total", "Peers of the realm that came up (realm handshake done), by path.", []string{"path"}},
	{"connections_closed_total", "Peers of the realm that went, by reason: left (goodbye), unresponsive (missed pings), disconnected, other.", []string{"reason"}},
	{"peers_refused_total", "Peers disconnected because they failed the realm handshake (another realm, or no membership).", nil},
	{"rpc_calls_total", "Calls made from this node, by procedure and outcome.", []string{"procedure", "outcome"}},
	{"rpc_call_duration_seconds", "Latency of the calls made from this node, by procedure.", []string{"procedure"}},
	{"rpc_served_total", "Calls that arrived at this node, by procedure and outcome.", []string{"procedure", "outcome"}},
	{"rpc_served_duration_seconds", "Time from a call's arrival to its handler's answer, by procedure.", []string{"procedure"}},
	{"rpc_advertised_procedures", "Procedures advertised on this node.", nil},
	{"rpc_serving_bytes", "Request payload bytes held by the handlers running for remote callers.", nil},
	{"pubsub_published_total", "Messages published on this node.", nil},
	{"pubsub_sent_total", "Message frames written to peers' streams.", nil},
	{"pubsub_delivered_total", "Messages handed to this node's subscriptions.", nil},
	{"pubsub_received_total", "Message frames received from peers.", nil},
	{"pubsub_dropped_total", "Messages dropped, by reason: send_queue (a peer's queue was full or its stream closed), subscriber_queue (a local subscription's queue was full), unauthorized (received from a peer that may not publish), withheld (not sent to a peer that may not subscribe).", []string{"reason"}},
	{"pubsub_pattern_delivered_total", "Messages handed to this node's subscriptions, by pattern (while the pattern is subscribed).", []string{"pattern"}},
	{"pubsub_pattern_dropped_total", "Messages this node's subscriptions lost to a full queue, by pattern.", []string{"pattern"}},
	{"pubsub_queued", "Messages waiting in the send queues to peers.", nil},
	{"pubsub_subscriptions", "Live subscriptions on this node.", nil},
	{"pubsub_interested_peers", "Peers that announced at least one pattern to this node.", nil},
	{"dht_routing_table_peers", "Peers in the DHT's routing table.", nil},
	{"dht_buckets", "Non-empty k-buckets of the routing table.", nil},
	{"dht_provider_keys", "Keys this node holds provider records for.", nil},
	{"dht_value_records", "Value records this node stores.", nil},
	{"dht_providing_keys", "Keys this node provides itself.", nil},
	{"dht_mode", "1 for the mode the DHT runs in (server, client or auto).", []string{"mode"}},
	{"nat_type", "1 for the NAT type of the last probe.", []string{"type"}},
	{"nat_probes_total", "NAT probes, by outcome (ok, or error when the probe did not measure everything).", []string{"outcome"}},
	{"nat_public_address", "1 when the node knows its public address.", nil},
	{"relay_reservations", "Relays whose circuit addresses this node advertises (its reservations).", nil},
	{"hole_punches_total", "Hole punches (DCUtR) that ended, by outcome: direct or failed.", []string{"outcome"}},
	{"ucan_refusals_total", "Things refused for want of a UCAN grant, by reason.", []string{"reason"}},
	{"members", "Live members of the realm (this node included), by state: alive or suspect.", []string{"state"}},
	{"member_links", "Membership links open now.", nil},
	{"member_events_total", "Membership changes seen, by event.", []string{"event"}},
	{"member_suspicions_total", "Suspicions this node raised (a member's link went silent).", nil},
	{"member_refutations_total", "Suspicions of itself this node refuted.", nil},
	{"actors_active", "Actors started on this node.", nil},
	{"actors_queued_messages", "Messages in the mailboxes of this node's actors.", nil},
	{"actors_kinds", "Actor kinds registered on this node.", nil},
	{"actor_events_total", "Actor lifecycle events on this node, by event.", []string{"event"}},
	{"actors_moved_total", "Actors handed to (out) and taken from (in) other nodes.", []string{"direction"}},
	{"actor_shards", "Shards this node owns, by capability.", []string{"capability"}},
	{"registry_names", "Names in this node's view of the registry.", nil},
	{"registry_group_members", "Group memberships in this node's view of the registry.", nil},
	{"registry_processes", "Live local registry processes.", nil},
	{"registry_clusters", "Named clusters this node is connected to.", nil},
	{"registry_peers", "Peers with a registry link.", nil},
	{"registry_messages_total", "Registry messages (a Send, or a dispatch's message to one node), by direction.", []string{"direction"}},
	{"registry_dropped_total", "Registry messages, entries and events dropped, by reason.", []string{"reason"}},
	{"registry_conflicts_total", "Names this node's processes lost to another registration.", nil},
	{"event_handler_failures_total", "Event handlers detached because they panicked.", nil},
}

func newCollector(m *Metrics) *collector {
	c := &collector{m: m, descs: make(map[string]*prometheus.Desc, len(families))}
	for _, f := range families {
		c.descs[f.name] = prometheus.NewDesc("macula_"+f.name, f.help, f.labels, nil)
	}
	return c
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// out is a helper that sends metrics of one scrape.
type out struct {
	c  *collector
	ch chan<- prometheus.Metric
}

func (o out) counter(name string, v uint64, labels ...string) {
	o.ch <- prometheus.MustNewConstMetric(o.c.descs[name], prometheus.CounterValue, float64(v), labels...)
}

func (o out) gauge(name string, v float64, labels ...string) {
	o.ch <- prometheus.MustNewConstMetric(o.c.descs[name], prometheus.GaugeValue, v, labels...)
}

func (o out) histogram(name string, h *histo, labels ...string) {
	cum, n, sum := h.snapshot()
	o.ch <- prometheus.MustNewConstHistogram(o.c.descs[name], n, sum, cum, labels...)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	o := out{c, ch}
	m := c.m
	n := m.src.Node
	ct := &m.counts

	// Connections.
	var byPath [2]int
	var rtts histo
	for _, p := range n.Peers() {
		byPath[indexOr(pathValues, p.Path, 0)]++
		if p.RTT > 0 {
			rtts.observe(p.RTT)
		}
	}
	for i, p := range pathValues {
		o.gauge("peers", float64(byPath[i]), p)
		o.counter("connections_opened_total", ct.opened[i].Load(), p)
	}
	o.histogram("peer_rtt_seconds", &rtts)
	for i, r := range closeReasons {
		o.counter("connections_closed_total", ct.closed[i].Load(), r)
	}
	o.counter("peers_refused_total", ct.refusedPeers.Load())

	// RPC.
	m.procs.each(func(name string, p *procStats) {
		for i, oc := range rpc.Outcomes {
			o.counter("rpc_calls_total", p.calls[i].Load(), name, oc)
		}
		o.histogram("rpc_call_duration_seconds", &p.callH, name)
		for i, oc := range rpc.ServedOutcomes {
			o.counter("rpc_served_total", p.served[i].Load(), name, oc)
		}
		o.histogram("rpc_served_duration_seconds", &p.servH, name)
	})
	o.gauge("rpc_advertised_procedures", float64(len(n.RPC().Advertised())))
	rst := n.RPC().Stats()
	o.gauge("rpc_serving_bytes", float64(rst.ServingBytes))

	// Pub/sub.
	ps := n.PubSub().Stats()
	o.counter("pubsub_published_total", ps.Published)
	o.counter("pubsub_sent_total", ps.Sent)
	o.counter("pubsub_delivered_total", ps.Delivered)
	o.counter("pubsub_received_total", ps.FramesReceived)
	o.counter("pubsub_dropped_total", ps.DroppedSend, "send_queue")
	o.counter("pubsub_dropped_total", ps.DroppedLocal, "subscriber_queue")
	o.counter("pubsub_dropped_total", ps.DroppedUnauthorized, "unauthorized")
	o.counter("pubsub_dropped_total", ps.WithheldUnauthorized, "withheld")
	var otherDelivered, otherDropped uint64
	patterns := 0
	for _, p := range n.PubSub().PatternStats() {
		if patterns >= m.max {
			otherDelivered += p.Delivered
			otherDropped += p.Dropped
			continue
		}
		patterns++
		o.counter("pubsub_pattern_delivered_total", p.Delivered, p.Pattern)
		o.counter("pubsub_pattern_dropped_total", p.Dropped, p.Pattern)
	}
	if patterns >= m.max {
		o.counter("pubsub_pattern_delivered_total", otherDelivered, OtherLabel)
		o.counter("pubsub_pattern_dropped_total", otherDropped, OtherLabel)
	}
	o.gauge("pubsub_queued", float64(ps.Queued))
	o.gauge("pubsub_subscriptions", float64(ps.Subscriptions))
	o.gauge("pubsub_interested_peers", float64(ps.InterestedPeers))

	// DHT.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	ds, err := n.DHT().Stats(ctx)
	cancel()
	if err == nil {
		o.gauge("dht_routing_table_peers", float64(ds.Nodes))
		o.gauge("dht_buckets", float64(ds.Buckets))
		o.gauge("dht_provider_keys", float64(ds.ProviderKeys))
		o.gauge("dht_value_records", float64(ds.ValueRecords))
		o.gauge("dht_providing_keys", float64(ds.Providing))
		for _, md := range []dht.Mode{dht.ModeServer, dht.ModeClient, dht.ModeAuto} {
			o.gauge("dht_mode", b2f(ds.Mode == md), string(md))
		}
	}

	// NAT, relays, hole punching.
	ni := n.NAT()
	for _, t := range []nat.Type{nat.TypeUnknown, nat.TypeOpen, nat.TypeFullCone, nat.TypeRestricted, nat.TypePortRestricted, nat.TypeSymmetric} {
		o.gauge("nat_type", b2f(ni.Type == t), string(t))
	}
	for i, oc := range natProbeOutcomes {
		o.counter("nat_probes_total", ct.natProbes[i].Load(), oc)
	}
	_, public := ni.PublicAddr()
	o.gauge("nat_public_address", b2f(public))
	o.gauge("relay_reservations", float64(len(Relays(n.Host().Addrs()))))
	for i, oc := range holePunchOutcomes {
		o.counter("hole_punches_total", ct.holePunches[i].Load(), oc)
	}

	// Membership.
	var ms struct {
		live, suspect, links int
		droppedUnauth        uint64
	}
	if mem := n.Members(); mem != nil {
		st := mem.Stats()
		ms.live, ms.suspect, ms.links, ms.droppedUnauth = st.Members-st.Suspect, st.Suspect, st.Links, st.DroppedUnauthorized
		o.counter("member_suspicions_total", st.Suspicions)
		o.counter("member_refutations_total", st.Refutations)
	}
	o.gauge("members", float64(ms.live), "alive")
	o.gauge("members", float64(ms.suspect), "suspect")
	o.gauge("member_links", float64(ms.links))
	for i, e := range memberEventValues {
		o.counter("member_events_total", ct.memberEvents[i].Load(), e)
	}

	// Actors.
	if s := m.src.Actors; s != nil {
		st := s.Stats()
		o.gauge("actors_active", float64(st.Active))
		o.gauge("actors_queued_messages", float64(st.Queued))
		o.gauge("actors_kinds", float64(st.Kinds))
		o.counter("actors_moved_total", st.MovedIn, "in")
		o.counter("actors_moved_total", st.MovedOut, "out")
		for i, e := range actorEventValues {
			o.counter("actor_events_total", ct.actorEvents[i].Load(), e)
		}
		m.caps.each(func(name string, v *atomic.Int64) { o.gauge("actor_shards", float64(v.Load()), name) })
	}

	// Registry.
	var regUnauth uint64
	if r := m.src.Registry; r != nil {
		st := r.Stats()
		regUnauth = st.DroppedUnauthorized
		o.gauge("registry_names", float64(st.Names))
		o.gauge("registry_group_members", float64(st.Members))
		o.gauge("registry_processes", float64(st.Processes))
		o.gauge("registry_clusters", float64(st.Clusters))
		o.gauge("registry_peers", float64(st.Peers))
		o.counter("registry_messages_total", st.MessagesSent, "sent")
		o.counter("registry_messages_total", st.MessagesReceived, "received")
		for _, d := range []struct {
			reason string
			v      uint64
		}{{"send", st.DroppedSend}, {"mailbox", st.DroppedMailbox}, {"no_process", st.NoProcess},
			{"unauthorized", st.DroppedUnauthorized}, {"relayed", st.DroppedRelayed},
			{"over_limit", st.DroppedOverLimit}, {"events", st.DroppedEvents}} {
			o.counter("registry_dropped_total", d.v, d.reason)
		}
		o.counter("registry_conflicts_total", st.Conflicts)
	}

	// UCAN refusals, from every service that refuses.
	for _, r := range []struct {
		reason string
		v      uint64
	}{{"call", rst.Refused}, {"publish_in", ps.DroppedUnauthorized}, {"publish_out", ps.WithheldUnauthorized},
		{"register", regUnauth}, {"membership", ms.droppedUnauth}, {"handshake", ct.refusedPeers.Load()},
		{apiRefusalReasons[0], m.apiRefusals[0].Load()}, {apiRefusalReasons[1], m.apiRefusals[1].Load()}} {
		o.counter("ucan_refusals_total", r.v, r.reason)
	}
	o.counter("event_handler_failures_total", n.Events().HandlerFailures())
}

// Relays returns the peer IDs of the relays in addrs' circuit addresses
// (/.../p2p/RELAY/p2p-circuit), each once: the relays a node holds
// reservations with when addrs are its own addresses.
func Relays(addrs []ma.Multiaddr) []string {
	var out []string
	for _, a := range addrs {
		s := a.String()
		i := strings.Index(s, "/p2p-circuit")
		if i < 0 {
			continue
		}
		head := s[:i]
		j := strings.LastIndex(head, "/p2p/")
		if j < 0 {
			continue
		}
		id := head[j+len("/p2p/"):]
		seen := false
		for _, r := range out {
			seen = seen || r == id
		}
		if !seen {
			out = append(out, id)
		}
	}
	return out
}
