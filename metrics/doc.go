// Package metrics exposes a node's figures to Prometheus: a collector on a
// registry the program passes in (never the global one), fed by the node's
// event bus (a handler attached with event.Bus.Attach, so nothing is lost
// and the services' hot paths do not change) and by the services' Stats,
// read at scrape time. The gateway serves the registry at GET /metrics, and
// the dashboard reads the same tables (Procedures, Topics).
//
// # Families
//
// All names start with macula_ and follow Prometheus's conventions
// (counters end in _total, durations are _seconds histograms).
//
//	macula_peers{path}                              gauge: connected realm peers, direct|relayed
//	macula_peer_rtt_seconds                         histogram of the connected peers' round-trip times (now)
//	macula_connections_opened_total{path}           peers that came up (connection_up)
//	macula_connections_closed_total{reason}         peers that went: left|unresponsive|disconnected|other
//	macula_rpc_calls_total{procedure,outcome}       calls made from this node (rpc.Outcomes)
//	macula_rpc_call_duration_seconds{procedure}     their latency
//	macula_rpc_served_total{procedure,outcome}      calls served here (rpc.ServedOutcomes)
//	macula_rpc_served_duration_seconds{procedure}   their handlers' time
//	macula_rpc_advertised_procedures                gauge
//	macula_rpc_serving_bytes                        gauge
//	macula_pubsub_published_total, _sent_total, _delivered_total, _received_total
//	macula_pubsub_dropped_total{reason}             send_queue|subscriber_queue|unauthorized|withheld
//	macula_pubsub_pattern_delivered_total{pattern}, macula_pubsub_pattern_dropped_total{pattern}
//	macula_pubsub_queued, _subscriptions, _interested_peers   gauges
//	macula_dht_routing_table_peers, _buckets, _provider_keys, _value_records, _providing_keys   gauges
//	macula_dht_mode{mode}                           gauge: 1 for the mode the DHT runs in
//	macula_nat_type{type}                           gauge: 1 for the NAT type measured last
//	macula_nat_probes_total{outcome}                ok|error
//	macula_nat_public_address                       gauge: 1 when a public address is known
//	macula_relay_reservations                       gauge: relays whose circuit addresses this node advertises
//	macula_hole_punches_total{outcome}              direct|failed
//	macula_ucan_refusals_total{reason}              call|publish_in|publish_out|register|membership|handshake|api_unauthenticated|api_unauthorized
//	macula_members{state}, macula_member_links, macula_member_events_total{event}
//	macula_member_suspicions_total, macula_member_refutations_total
//	macula_actors_active, macula_actors_queued_messages, macula_actors_kinds
//	macula_actor_events_total{event}                started|stopped|crashed|moved
//	macula_actors_moved_total{direction}            in|out
//	macula_actor_shards{capability}                 gauge: shards this node owns
//	macula_registry_names, _group_members, _processes, _clusters, _peers   gauges
//	macula_registry_messages_total{direction}       sent|received
//	macula_registry_dropped_total{reason}           send|mailbox|no_process|unauthorized|relayed|over_limit|events
//	macula_registry_conflicts_total
//	macula_event_handler_failures_total
//
// # Bounded labels
//
// No label takes a value per message, per peer or per id. outcome, reason,
// path, state, event and direction come from fixed sets. procedure,
// pattern and capability are names, so each is bounded by
// Config.MaxLabelValues (64 by default) per label: a procedure gets a label
// of its own when it is advertised on this node or when a call from here
// reached a provider (ok or the handler's error: the name exists), a
// pattern when this node subscribes to it, a capability when this node
// owns shards of it; the first MaxLabelValues such names keep their label
// for the life of the Metrics, and every other one counts under "_other"
// (OtherLabel). Calls to procedures nobody advertises (not found, timeouts
// of unknown names) are always "_other", so that a caller cannot make
// series by calling random names.
package metrics
