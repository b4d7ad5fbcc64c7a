// Command macula-node runs nodes of a Macula mesh and talks to running ones.
//
// # Running nodes
//
//	macula-node dev [--nodes N] [--log-level warn] [--api HOST:PORT] [--secure]
//
// starts N nodes (default 3, at most 32) of realm io.macula.dev in one
// process, on loopback, with identities kept in memory: node1 is the
// bootstrap of the others. Node i serves its API on 127.0.0.1:740<i> (TCP
// for HTTP/1.1, UDP for HTTP/3), or on a random port when that one is taken;
// with --api, on its port plus i-1, and a port that is taken is an error.
// dev waits until every node sees the others, prints a table (name, DID, peer
// ID, QUIC address, API address) and commands to try, and runs until Ctrl-C.
//
//	macula-node run --realm REALM [flags]
//
// is the daemon: one node and its API until SIGINT or SIGTERM. Flags:
//
//	--config FILE                  TOML config file
//	--realm REALM                  realm, reverse DNS such as io.acme.orders (required)
//	--name NAME                    name in the realm (default: the host name, lower-cased)
//	--data-dir DIR                 key and state (default: $HOME/.macula/<name>)
//	--listen MULTIADDR             QUIC listen address, repeatable (default /ip4/0.0.0.0/udp/7400/quic-v1)
//	--bootstrap MULTIADDR          peer to join through, with /p2p/<id>; repeatable
//	--api HOST:PORT                HTTP/1.1 API address (default 127.0.0.1:7401)
//	--http3 HOST:PORT|off          HTTP/3 API address on UDP (default: the --api address)
//	--log-level LEVEL              debug, info, warn or error (default info)
//	--log-format FORMAT            text or json (default text)
//	--reconnect                    redial dropped bootstrap peers (default true)
//	--reconnect-interval DURATION  first wait before a redial, doubling (default 1s)
//	--max-reconnect-attempts N     give a bootstrap peer up after N failures (default 0: never)
//	--dht-mode MODE                server, client or auto (default auto: a server while publicly reachable)
//	--stun HOST:PORT               STUN server for the NAT probe, repeatable (bootstrap peers answer STUN too)
//	--relay MULTIADDR              relay node to keep a reservation with, repeatable
//	--relay-service[=false]        force the relay service on (off); default: on while publicly reachable
//	--hole-punching                upgrade relayed connections to direct ones (default true)
//	--reachability public|private  force what the node believes of its reachability (default: measured)
//	--webhook-allow ENTRY          where webhooks may point besides loopback: IP, prefix or host name, optional :port; repeatable
//
// Every flag can also be given as an environment variable, MACULA_ and the
// flag's name upper-cased with '-' as '_' (MACULA_REALM, MACULA_DATA_DIR;
// a repeatable flag takes a comma-separated list, MACULA_BOOTSTRAP=a,b), and
// as a key of the config file, the flag's name with '-' as '_':
//
//	realm = "io.acme.orders"
//	name = "worker-1"
//	bootstrap = ["/ip4/10.0.0.1/udp/7400/quic-v1/p2p/12D3Koo..."]
//	reconnect_interval = "2s"
//
// The command line beats the environment, which beats the file, which beats
// the defaults; a key of the file that names no flag is an error.
//
// Once the node and its API are up, run writes <data-dir>/node.json (peer_id,
// did, alias, realm, name, addrs, api, http3, pid, started_at) and logs "node
// ready"; it removes node.json on a clean exit. A start that fails (a bad
// realm or bootstrap address, a busy port, a data directory that cannot be
// written, a corrupt node.key) prints one error line, exits non-zero, and
// leaves the disk as it was: logs are held until the start succeeded. run
// holds a lock on <data-dir>/lock while it runs: a second run on the same
// data directory is refused ("data directory in use", with the holder's
// pid). The HTTP/3 API listens on the --api address, on UDP, unless --http3
// says otherwise; a port that cannot be bound is named with its flag.
//
// Started by go run, macula-node stops (SIGTERM, a clean stop) when the go
// command dies, which passes no signal on; its hints (dev's "Try" lines,
// the join hint of a secure realm) say "go run PKG" then, the path typed or
// "macula-node" otherwise.
//
// # Talking to a running node
//
// The client commands talk to a node through its HTTP API, at --api (or
// MACULA_API; default 127.0.0.1:7401). They print text, or with --json the
// API's JSON answer; --timeout bounds the request. Every command but run
// and dev takes --json (the local ones too: key, realm init, ucan, version). In a secure realm they
// act as the node with its local credential, which they find themselves
// (--api-credential FILE, else <--data-dir>/api-credential, else the file
// the node's answer names; they must run as the node's user): see
// docs/security.md.
//
//	macula-node id                 DIDs (did:key and alias), peer ID, realm, addresses
//	macula-node peers              connected peers of the realm
//	macula-node resolve DID        a did:key or did:macula alias to its key, peer ID, addresses
//	macula-node dht stats          routing table size and stored records
//	macula-node dht lookup KEY     providers of KEY with their addresses
//	macula-node dht provide KEY    make the node provide KEY
//	macula-node log-level [LEVEL]  print or set the node's log level
//	macula-node call PROC          call a procedure of the realm, print the reply
//	macula-node advertise PROC     serve a procedure with a webhook until stopped
//	macula-node publish TOPIC      publish a message to a topic of the realm
//	macula-node subscribe PATTERN  print the messages whose topic matches, as they come
//	macula-node pubsub stats       pub/sub counters: published, delivered, dropped, frames
//	macula-node nat info           the node's NAT: type, mapping, filtering, public address
//	macula-node nat probe          probe the NAT again now, wait, print as nat info
//	macula-node registry ls|watch  the registry's names, and its changes as they come
//	macula-node groups ls          the members of the registry's groups
//	macula-node version            the version of this binary (also macula-node --version)
//
// # Calling and serving procedures
//
//	macula-node call PROC [--data JSON | --data-file FILE | --data -] [--timeout 5s] [--raw]
//	                 [--content-type TYPE] [--idempotent]
//
// calls the procedure PROC (io.acme.orders.get_order) wherever it is
// advertised in the node's realm, through POST /v1/call/PROC, and prints the
// reply: JSON pretty-printed, anything else (or anything with --raw) as it
// is. The payload is --data, the file --data-file, or stdin with --data -;
// it is sent as application/json (checked to be JSON before it is sent)
// unless --content-type says otherwise (application/cbor, or anything else
// for raw bytes); with no payload at all, an empty raw one. --timeout bounds
// the call on the node (default 30s there); the command waits 5s more for
// the node's answer. --idempotent lets the node retry the call on another
// provider if a connection is lost after it was sent.
//
//	macula-node advertise PROC --url http://127.0.0.1:PORT/path [--lease 15s] [--webhook-timeout D]
//
// advertises PROC on the node, served by the webhook --url (on loopback): the
// node POSTs each call's payload there and answers with the webhook's answer
// (see package gateway for the webhook's contract). It prints "advertised
// PROC -> URL" and renews the advertisement every third of --lease until
// SIGINT or SIGTERM; then it withdraws it and exits 0. If the process dies
// without withdrawing it, the node drops the procedure when the lease runs
// out. A renewal that fails for a reason that may pass (the API unreachable,
// the node restarting) is reported on stderr and tried again, and
// re-advertises the procedure on a node that lost it; one the node refuses
// (409: another webhook took the name) ends the command with exit code 1.
//
// # Publishing and subscribing
//
//	macula-node publish TOPIC [--data JSON | --data-file FILE | --data -] [--raw] [--wait [--timeout D]] [--json]
//
// publishes a message to the concrete topic TOPIC of the node's realm
// (io.acme.orders.placed; no wildcards) through POST /v1/publish/TOPIC, and
// prints "published N bytes to TOPIC" once the node has queued it for the
// subscriber nodes (delivery is at most once; that line does not say who
// received it). The payload is --data, the file --data-file, or stdin with
// --data -; it is sent as JSON, checked to be JSON before it is sent, unless
// --raw sends it as raw bytes; with no payload at all, an empty raw one.
// By default the node sheds: a subscriber whose queue is full misses the
// message, and the node counts it. With --wait (POST ?wait=true) the node
// waits, for at most --timeout (default the node's 10s, at most 60s), for
// room in every full queue instead, so a publisher is slowed down rather
// than losing messages (subscribers on other nodes only if they subscribed
// with --backpressure: see subscribe below); when the timeout
// ends first, publish exits 4 and says for how many subscribers the
// message was queued and for how many it was dropped.
//
//	macula-node subscribe PATTERN [--json] [--count N] [--backpressure]
//
// subscribes through GET /v1/subscribe to PATTERN: an exact topic
// (io.acme.orders.placed), "*" for one segment (io.acme.orders.*) or a final
// ">" for one or more (io.acme.>). It says "macula-node: subscribed to
// PATTERN" on stderr once the node has made the subscription, then prints
// each message as it comes, one line each:
//
//	2026-01-02T15:04:05.123+01:00 io.acme.orders.placed z6Mk...a2doKq {"id":42}
//
// the publish time (local), the topic, the start and end of the publisher's
// did:key, and the payload: JSON as it is, text quoted ("hello"), other
// bytes as base64:AAH/. With --json each line is the API's JSON object for
// the message, {"topic":...,"payload":...,"publisher":...,"time":...,
// "seq":N}, the payload a JSON value, or a base64 string with
// "payload_encoding":"base64". It runs until SIGINT or SIGTERM, or until N
// messages with --count, and exits 0; if the node stops, or the stream
// breaks, it exits 1. A subscriber that reads more slowly than messages come
// loses messages (the node drops the newest for it); subscribe reports each
// drop on stderr, "macula-node: the node dropped N message(s) of PATTERN, not
// read fast enough (M in all)". With --backpressure (GET
// /v1/subscribe?backpressure=true) the node holds messages from other nodes
// back instead, so that publishers that publish with --wait are slowed down
// to the subscriber's pace (package pubsub, "Flow control"); while it is
// behind, everything each publisher node sends the subscriber's node waits
// too. If subscribe stops reading (its output blocked) until a write of the
// node's to it has waited 30s, the node ends the subscription and subscribe
// exits 1.
//
//	macula-node pubsub stats [--json]
//
// prints the node's pub/sub counters: messages published, message frames
// sent to other nodes and received from them, messages delivered to local
// subscriptions, dropped (send queues, subscriptions), queued, the number of
// subscriptions and of peers that announced interest.
//
// A topic or pattern the node refuses (a wildcard in a topic, an empty
// segment, outside the realm) and a payload over the node's limit are
// errors of the API (400, 413): exit code 1. A --data that is not JSON is a
// wrong command line: exit code 2.
//
// # The registry
//
//	macula-node registry ls [PREFIX] [--cluster C] [--json]
//	macula-node groups ls [PREFIX] [--cluster C] [--limit N] [--json]
//	macula-node registry watch [PREFIX] [--cluster C] [--json] [--count N]
//	macula-node registry info | log-level [off|info|verbose]
//	macula-node registry connect|disconnect CLUSTER
//	macula-node registry dispatch KEY [--data JSON | --data-file FILE | --data -] [--raw]
//	macula-node registry register KEY... [--meta JSON]   (groups join KEY... likewise)
//
// list the realm's registered names and group members as the node sees them
// (KEY PROCESS META; a PREFIX ends in "/", a key without one lists that key and
// every key under it), print its changes as they come (TIME KIND KEY PROCESS
// META [REASON: DETAIL]), show its clusters, nodes and counters, set its own
// log level, connect the node to a named cluster, send a message to every
// process under a key, and hold names or memberships for a process that
// lives as long as the command (printing what is sent to it). See
// docs/registry.md.
//
// # Errors and exit codes
//
// Every failure is one line on stderr, "macula-node: <what went wrong>",
// such as
//
//	macula-node: remote error invalid_order: no such order
//
// The exit code is
//
//	0  success
//	1  the command failed, including a refusal of the API (a bad topic,
//	   pattern or name, a payload over the limit); for call, any failure not
//	   listed below
//	2  the command line is wrong (an unknown command, flag or argument, an
//	   empty argument; call's and publish's --data that is not JSON;
//	   subscribe's negative --count), or a setting is, wherever it was given
//	   (run's missing --realm, a bad realm or node name, log level, address
//	   or config file key, in a flag, a MACULA_* variable or the config file)
//	3  call: no node of the realm advertises the procedure (HTTP 404 not_found)
//	4  call: no answer within the timeout (504 timeout); publish --wait:
//	   a subscriber's queue stayed full until the timeout (503 no_room)
//	5  call: the handler answered with an error (422 remote_error)
//	6  call: the connection to the handler's node was lost, or none could be
//	   reached (502 disconnected)
//	7  call: the caller may not call the procedure (403 unauthorized)
package main
