// Package gateway serves a node's API over HTTP, so that programs in any
// language (and the macula-node CLI) can use a running node: one
// http.Handler (NewHandler), served by a Gateway over HTTP/1.1 on TCP and
// over HTTP/3 (quic-go/http3) on UDP, both on loopback by default
// (127.0.0.1:7401, the same port number on each). The bodies of the routes
// are the types of package api, which also holds the Go client of the API
// (api.Client, over either protocol) and imports no libp2p package; this
// package imports it as wire, since its own handler type is named api.
//
// In an open realm (no authority) the API has no authentication: whoever
// can reach it can use the node, so keep it on loopback unless the network
// in front of it is trusted (the gateway warns at start when it listens
// elsewhere). In a secure realm, requests from off loopback need a UCAN
// bearer token: see Authentication.
//
// # Routes
//
// Every answer, errors included, is JSON (Content-Type application/json),
// except the reply of a successful call, which is the procedure's reply,
// and a subscription's event stream.
//
//	GET  /v1/node           api.NodeInfo: identity, realm, addresses, number of peers, API addresses,
//	                        security ("open" or "secure"), authority, and the node's own grant
//	GET  /v1/peers          []api.Peer: the connected peers of the realm ([] when none)
//	GET  /v1/resolve/{did}  api.Resolution of a did:key or a did:macula alias of the node's realm;
//	                        ?timeout= (default 10s)
//	GET  /v1/dht/stats      api.DHTStats: routing table and stored records
//	GET  /v1/dht/lookup     api.LookupResult: the providers of ?key=; ?limit= (default 20, 0 for all
//	                        found, at most 1000), ?timeout= (default 5s: the providers found by then)
//	POST /v1/dht/provide    api.ProvideResult {"key":K}: the node provides ?key= from now on; 200 once
//	                        announced, 202 if the announcement did not finish within ?timeout=
//	                        (default 10s; the key is kept and announced again later)
//	GET  /v1/nat            api.NATInfo: type, mapping, filtering, public_ip, public_port, hairpin, measured_at,
//	                        error, and security ("open" or "secure")
//	POST /v1/nat/probe      api.NATInfo (202): start a new NAT probe now; GET /v1/nat shows it when done
//	GET  /v1/log/level      api.LogLevel {"level":"info"}
//	PUT  /v1/log/level      LogLevel: set the level from the body {"level":"debug|info|warn|error"}
//	POST /v1/call/{procedure}
//	                        call the procedure: the body is the payload, the answer's body the
//	                        reply (200); see Calls
//	GET  /v1/advertise      []api.Advertisement: every procedure advertised on the node, with the
//	                        webhook of those advertised through the API
//	POST /v1/advertise/{procedure}
//	                        api.Advertisement: advertise the procedure served by a webhook, from the
//	                        body api.AdvertiseRequest {"url":U,"timeout":"30s","lease":"15s"}: 201
//	                        when new, 200 when the same URL renews it; see Webhooks
//	DELETE /v1/advertise/{procedure}
//	                        api.Advertisement: withdraw a procedure advertised through the API
//	POST /v1/publish/{topic}
//	                        api.PublishResult {"topic":T} (202): publish the body to the topic;
//	                        ?wait=true waits for room in full subscriber queues (?timeout= or
//	                        Macula-Timeout, default 10s, at most 60s; 503 no_room); see Pub/sub
//	GET  /v1/subscribe      server-sent events (text/event-stream) of the messages whose topic
//	                        matches ?pattern=, until the client goes away; ?backpressure=true
//	                        slows waiting publishers down instead of dropping; see Pub/sub
//	GET  /v1/pubsub/stats   api.PubSubStats: published, sent, delivered, dropped (send and local),
//	                        queued, frames_received, subscriptions, interested_peers
//	GET  /v1/ucan/revocations
//	                        []string: the revocation records in force, each in unpadded base64url
//	                        ([] in an open realm)
//	POST /v1/ucan/revocations
//	                        put the revocation record of the body (ucan.Revoke; raw, or its base64
//	                        text in either alphabet) in force and pass it on to the realm: 204; 400
//	                        bad_request for a record that is not the authority's, 409 open_realm
//	                        in an open realm
//	POST /v1/actors/{capability}/{kind}/{id}
//	                        send the body to the actor (package actors) and answer with its reply
//	                        (200, Content-Type as the request's, the incarnation in
//	                        Macula-Actor-Node and Macula-Actor-Incarnation); ?cast=true: a cast,
//	                        202 once its owner accepted it. The init argument is the
//	                        Macula-Init-Arg header or ?init=; the timeout as for calls
//	GET  /v1/actors         api.ActorList: the actors active on this node (?limit=, default 1000)
//	                        and its actor counters
//	GET  /v1/actors/log     api.ActivationLog: this node's activation log (started and stopped
//	                        incarnations), for the single-activation checker
//	GET  /v1/ring           api.Ring: every capability's nodes, their shard counts and the
//	                        placement's digest; ?owners=true adds the owner of every shard
//	GET  /v1/members        api.Members: the realm's live members (package member) with their
//	                        capabilities and clusters, this node marked self, and the view's
//	                        version; ?capability= and ?cluster= keep the members that have it
//	GET  /v1/members/stats  api.MemberStats: members, suspects, links, syncs, suspicions,
//	                        refutations, dropped frames and claims
//	PUT  /v1/capabilities   api.Capabilities {"capabilities":["game","chat"]}: replace what this
//	                        node serves and tell the realm; answers its api.Member. 400
//	                        invalid_name for a bad name, 403 unauthorized for a capability the
//	                        node holds no /macula/serve grant for (secure realm)
//
// The operators' routes (ops.go): the dashboard, metrics, the API's
// description, the realm's picture:
//
//	GET  /{$}               the dashboard page (the path / alone; text/html, assets embedded,
//	                        nothing from elsewhere): node, NAT, mesh, procedures, topics, DHT,
//	                        membership, ring, actors, registry, live (it reads the stream below)
//	GET  /ui/{file}         the page's script and style
//	GET  /metrics           the node's metrics in the Prometheus text format (package metrics;
//	                        404 not_enabled without Config.Metrics)
//	GET  /v1/openapi.json   the OpenAPI 3.1 document of this API (openapi.json, kept true by
//	                        TestOpenAPIMatchesRoutes: a new route goes there too)
//	GET  /v1/mesh           api.Mesh: every member of the realm, the links between them (direct
//	                        or relayed, RTT) and each member's clock skew (package mesh)
//	GET  /v1/dashboard      api.Dashboard: what the page shows now; ?mesh=true adds the mesh
//	GET  /v1/dashboard/stream
//	                        server-sent events "snapshot" (api.Dashboard) every ?interval=
//	                        (default 1s, 250ms to 1m), the mesh in every third
//
// The page, its assets and the OpenAPI document hold nothing about the
// node and need no authority; every other route needs what the rest of the
// API needs (the root command in a secure realm). The page sends the
// Authorization header it is given (a field on the page, or /#auth=VALUE)
// with its requests.
//
// The actor routes answer 404 not_enabled when the gateway has no actor
// system (Config.Actors). Their own errors: 404 not_served (no node serves
// the capability), 404 unknown_kind (its owner has no such kind), 429
// mailbox_full, 422 actor_crashed, 422 actor_init, 422 remote_error (the
// actor returned an error: Remote holds its code and message), 503
// restart_limit, 503 unavailable (the owner could not be reached, or its
// shard was moving, within the timeout), 502 disconnected (lost after it was
// sent), 504 timeout.
//
// The registry's routes (404 not_enabled on a node without a registry; see
// Registry, and registry.go for each route's detail):
//
//	GET    /v1/registry                api.RegistryInfo: clusters and their nodes, log level, counters
//	PUT    /v1/registry                api.RegistryLogLevel: the registry's own log level
//	GET    /v1/registry/watch          ?prefix=: server-sent events of the registry's changes
//	GET    /v1/registry/{key...}       api.RegistryEntry of a name; []api.RegistryEntry for a prefix
//	POST   /v1/registry/{key...}       api.RegisterRequest: register a process made through the API
//	DELETE /v1/registry/{key...}       ?process=: unregister it
//	GET    /v1/groups/{key...}         []api.RegistryMember of a group, or of a prefix's groups
//	POST   /v1/groups/{key...}         api.RegisterRequest: join a group
//	DELETE /v1/groups/{key...}         ?process=: leave it
//	POST   /v1/dispatch/{key...}       the body to every process under the key: api.DispatchResult
//	POST   /v1/send/{addr...}          the body to the process at <peer ID>/<number>
//	PUT    /v1/clusters/{name}         connect the node to a named cluster
//	DELETE /v1/clusters/{name}         disconnect it
//	GET    /v1/processes               []api.ProcessInfo: the processes made through this API
//	POST   /v1/processes               api.ProcessRequest: a process served by a webhook
//	GET    /v1/processes/stream        a process that lives as long as this event stream
//	PUT    /v1/processes/{id}          renew a webhook process's lease
//	DELETE /v1/processes/{id}          end a process
//
// A ?timeout= is a Go duration (5s, 1500ms); values over 60s count as 60s,
// except for calls. Request bodies are limited to 64 KiB, except for calls
// and publishes.
//
// # Calls
//
// POST /v1/call/{procedure} calls a procedure of the node's realm anywhere in
// the realm (rpc.RPC.Call). The body is the payload, at most the rpc
// service's MaxPayload (1 MiB by default; more is 413 too_large). Its
// Content-Type picks the codec: application/json is rpc.JSON,
// application/cbor rpc.CBOR, anything else or none rpc.Raw; the reply comes
// in the same codec, with the matching Content-Type (application/octet-stream
// for raw). The timeout is the Macula-Timeout header or ?timeout=, a Go
// duration: default 30s, values over 5m count as 5m. ?idempotent=true lets
// the node retry the call on another provider if the connection is lost
// after it was sent. Each way a call fails has its own answer:
//
//	400 invalid_name   not a concrete procedure name of the node's realm
//	403 unauthorized   the caller may not call it
//	404 not_found      no node of the realm advertises it
//	413 too_large      a payload over the limit
//	422 remote_error   the handler answered with an error, in "remote"
//	502 disconnected   the connection to the callee was lost, or none could be reached
//	504 timeout        no answer within the timeout
//
// A remote error carries the handler's error:
//
//	{"error":{"code":"remote_error","message":"remote error invalid_order: no such order",
//	  "remote":{"code":"invalid_order","message":"no such order","data":{"id":7},"data_encoding":"json"}}}
//
// where data is the handler's detail: the JSON value itself when the call
// was JSON and the detail is JSON, else a base64 string (data_encoding
// "base64"); absent when there is none.
//
// # Webhooks
//
// POST /v1/advertise/{procedure} lets a program in any language serve a
// procedure: the node advertises it in the realm and POSTs each call to the
// webhook URL, which must be a place the registrant may aim the node at
// (see Webhook targets). The webhook request has the payload as its
// body, the Content-Type of the call's codec, and the headers
// Macula-Procedure, Macula-Caller-DID, Macula-Caller-Peer and, when the call
// has a deadline, Macula-Deadline (RFC 3339 with nanoseconds, UTC). It ends
// when the call does (its caller cancelled or timed out), or after the
// advertisement's timeout if that comes first. The webhook answers:
//
//	2xx                the body is the reply (at most MaxPayload bytes), in the call's codec
//	non-2xx            the call fails with a remote error: the body's {"error":{"code":C,
//	                   "message":M,"data":D}} when it has that shape (data optional, any
//	                   JSON), else code webhook_<status> with the body's first 1 KiB as message
//	no answer          remote error webhook_unreachable (or webhook_timeout after the
//	                   advertisement's timeout)
//
// An advertisement lasts until DELETE, or until the Gateway closes (which
// withdraws them all and aborts their webhook requests, whose calls end
// with the remote error "unavailable"). With a lease it also ends when the
// lease runs out: POSTing the same URL again renews it (200), so a program
// that advertises and dies is withdrawn within one lease; macula-node
// advertise renews every third of its lease. Each lease is a timer that
// re-arms itself for the time left when a renewal came in since it was
// set; the Gateway counts the timers and stops them in Close. A handler
// from NewHandler, which has no Close, keeps its webhook advertisements as
// long as the node lives.
//
// # Webhook targets
//
// A webhook (an advertisement's, POST /v1/advertise, or a registry
// process's, POST /v1/processes) makes the node send requests where the
// registrant says, from the node's host and network position. So who
// registers decides where:
//
//   - The node's own user (a request with the local credential, see
//     Loopback; in an open realm, any request from loopback) may name the
//     node's loopback: 127.0.0.0/8, ::1, and names such as localhost that
//     resolve there. Everyone else may not: a program with a bearer token,
//     even one on the same host, could otherwise aim the node at any local
//     service (another node's API, a database, a cloud agent).
//   - Anywhere else needs the operator's allow-list, Config.WebhookAllow
//     (macula-node run --webhook-allow, MACULA_WEBHOOK_ALLOW,
//     webhook_allow): entries of an IP address or prefix, or a host name
//     (*.example.com for the names under it), each with an optional port
//     (10.0.0.0/8, 192.0.2.7:8080, [fd00::/8]:443, hooks.example.com:443).
//     Empty by default: loopback webhooks of the node's own user, nothing
//     else. An entry also lets programs name loopback, and link-local and
//     cloud metadata addresses (169.254.0.0/16, fe80::/10, fd00:ec2::254,
//     100.100.100.200), only when it lies within them (127.0.0.1:9000, not
//     0.0.0.0/0); a name entry never admits them.
//   - Nobody, whatever the list says: the API's own listen address (every
//     local address at its port when it listens on 0.0.0.0 or ::), and
//     addresses no webhook has: unspecified (0.0.0.0, ::, 0.0.0.0/8, which
//     reach the host itself), multicast, broadcast, IPv4-compatible IPv6.
//
// IPv4-mapped IPv6 addresses (::ffff:127.0.0.1) count as the IPv4 address
// they map; NAT64 ones (64:ff9b::7f00:1) are loopback, link-local or
// metadata when the IPv4 address inside is, and then admitted only by an
// entry naming them. The rules are applied to every address the URL's host resolves
// to when it is registered (403 unauthorized, naming the address and the
// rule; 400 when it does not resolve), and again to each address the node
// dials for every call: the node resolves the name itself and dials only
// admitted addresses, so a name that later resolves elsewhere (DNS
// rebinding) gains nothing. Redirects are never followed (a 3xx is the
// remote error webhook_3xx); proxies from the environment are not used; the
// webhooks of the node's own user and of others never share connections.
//
// And a request a node makes to a webhook is never served by a Macula API:
// one that carries Macula-Procedure, Macula-Caller-DID or Macula-Process is 403
// unauthorized, so that a webhook aimed at an API (another node's on the
// host, where in an open realm loopback is that node) cannot act there.
//
// # Pub/sub
//
// POST /v1/publish/{topic} publishes the body to a concrete topic of the
// node's realm (pubsub.PubSub.Publish): no wildcard, no empty segment,
// under the realm, else 400 invalid_name. The body is the payload, at most
// the pubsub service's MaxMessageSize (1 MiB by default; more is 413
// too_large). A Content-Type of application/json marks a JSON payload,
// which must be valid JSON (else 400 bad_request); anything else, or none,
// is raw bytes. The answer is 202 Accepted {"topic":T} once the message is
// queued for the subscriber nodes: delivery is at most once, and a 202
// says nothing of who received it (GET /v1/pubsub/stats counts).
//
// By default the node sheds: a subscriber whose queue is full misses the
// message, and the node counts it (dropped_send, dropped_local). With
// ?wait=true (any value strconv.ParseBool takes; another is 400
// bad_request) the node publishes with pubsub.WaitForRoom: it waits for
// room in every full queue instead, for at most the request's timeout
// (the Macula-Timeout header or ?timeout=, a Go duration; default
// DefaultPublishWait, 10s; capped at 60s; read and checked without wait
// too, but used only with it). A publisher that waits for each answer is
// so slowed down to its slowest subscriber instead of losing messages;
// subscribers on other nodes are waited for only if they subscribed with
// pubsub.Backpressure, as GET /v1/subscribe?backpressure=true does
// (package pubsub, "Flow control"). When the timeout ends first the
// answer is 503 no_room with Retry-After: 1, and the error says what was
// done, in its message and in
// "partial":{"queued":Q,"missed":M}: the message was queued for Q
// subscribers (nodes and the node's own subscriptions) and dropped for M,
// so publishing it again gives the first Q a second copy. A waiting
// publish holds one of the API's MaxInFlight slots while it waits.
//
// GET /v1/subscribe?pattern=P subscribes the node to P (an exact topic, or
// "*" for one segment and a final ">" for one or more, able to match a
// topic of the realm; else 400 invalid_name, before the stream starts) and
// streams every matching message, from any node of the realm including
// this one, as server-sent events, until the client goes away, the
// gateway closes or the node stops (then the stream just ends). The
// subscription exists when the 200 answer's headers arrive, and ends with
// the stream. The stream is:
//
//	: subscribed to io.acme.orders.*
//
//	event: message
//	data: {"topic":"io.acme.orders.placed","payload":{"id":42},"publisher":"did:key:z6Mk...","time":"2026-01-02T15:04:05.123456789Z","seq":17}
//
//	event: message
//	data: {"topic":"io.acme.orders.raw","payload":"AAH/","payload_encoding":"base64","publisher":"did:key:z6Mk...","time":"2026-01-02T15:04:05.2Z","seq":18}
//
//	event: dropped
//	data: {"dropped":476,"total":476}
//
//	:
//
// A message's data is one line of JSON, an api.SubscribeEvent: the concrete
// topic; the payload, which is the JSON value itself when the payload is
// valid JSON in UTF-8 (byte for byte as published, or compacted if it held
// line breaks), else a base64 string with "payload_encoding":"base64"; the
// publisher's did:key; the publish time (RFC 3339 with nanoseconds, UTC, on
// the publisher's clock); and the publisher's sequence number. Messages
// come in the order the node received them, which is publish order per
// publisher. Whether a payload is JSON is decided by its bytes, not by how
// it was published (a raw payload that happens to be JSON comes as JSON).
//
// The stream's queue is the subscription's (pubsub's SubscriptionBuffer,
// 1024 messages by default). A client that reads more slowly than messages
// come loses the newest ones when it is full, as pubsub drops for any slow
// subscriber, and nobody else slows down; an "event: dropped" says how
// many (api.SubscribeDropped: since the last report, and in all), at most
// every DropReportInterval (1s). A client that takes no batch of events
// for 30s is cut off.
//
// With ?backpressure=true (any value strconv.ParseBool takes; another is
// 400 bad_request, before anything is subscribed) the node subscribes with
// pubsub.Backpressure: a message from another node that finds the queue
// full waits for room instead of being dropped, so a publisher that
// publishes with ?wait=true is slowed down to this client's pace rather
// than losing messages to it (messages published on this node without
// wait still drop). The cost is the node's: while the queue is full, the
// whole stream from each publisher node to this node waits (every topic,
// every subscription of the node), and publishers there that do not wait
// drop at their full send queue instead. A client that stops reading but
// keeps its connection holds that up until a write to it has waited 30s
// (the write deadline of a batch, as above; where the connection takes no
// deadline, the subscription still ends then): its stream and
// subscription end, and the publisher nodes' streams flow again. The
// subscription also ends as soon as the client goes away, the gateway
// closes or the node stops. A stream with nothing to send for HeartbeatInterval
// (15s) gets a comment line ":". Events are flushed as they come, in
// batches of what is waiting, over HTTP/1.1 (chunked) and HTTP/3 alike.
//
// # Authentication
//
// In a secure realm (node.Config.Authority set), a request may carry a UCAN
// invocation addressed to the node:
//
//	Authorization: Bearer <chain>
//
// where <chain> is ucan.Chain.String of the invocation's proofs, root first,
// followed by the invocation itself (ucan.Invoke with Executor the node's
// did:key); ucan.ParseChain reads it. The node checks it with
// Validator.ValidateInvocation, which consumes it: make a new invocation for
// every request (api.Client.Token and ucantoken.InvocationTokens do). What it must be for:
//
//	POST /v1/call/{procedure}        /macula/call on the procedure
//	POST /v1/publish/{topic}         /macula/publish on the topic
//	GET  /v1/subscribe?pattern=P     /macula/subscribe on P, and the chain's pattern must
//	                                 cover P whole (ucan.CheckPattern)
//	POST, DELETE /v1/registry/{key}  /macula/register on the key's resource (registry.Resource)
//	POST, DELETE /v1/groups/{key}    /macula/join on the key's resource
//	POST /v1/dispatch/{key}          /macula/dispatch on the key's resource, or a prefix's pattern
//	POST, DELETE /v1/advertise/{procedure}
//	                                 /macula/advertise on the procedure
//	POST /v1/actors/{capability}/{kind}/{id}
//	                                 /macula/actor on <realm>.<capability>.<kind>
//	every other route                /macula, the root command, with no resource, from a
//	                                 chain granting it on every name of the realm
//
// A request with "Authorization: Macula-Local <credential>" from loopback
// acts as the node itself (see Loopback). Any other request needs a token:
// from off loopback without an Authorization header it is 401
// unauthenticated (with WWW-Authenticate: Bearer), whose message says what
// to send; from loopback, too, and the answer names the credential file as
// well. A request with a header is checked against it wherever it comes
// from: a header other than "Bearer " or "Macula-Local ", a chain that
// ParseChain cannot read, or a wrong credential is 401 unauthenticated; an
// invocation that ValidateInvocation refuses (expired, replayed, issued in
// the future, another node's, another command or name, a revoked or broken
// chain, a bad signature, an undecodable token) is 403 unauthorized, with
// the reason in the message; one the node cannot record now (its replay
// cache full of live invocations, or its file not writable: ucan.ErrBusy)
// is 503 unavailable. A token says what the program may ask of the node;
// the node must also hold the right itself, since its services and its
// peers check the node's own grant. Used invocations stay refused across
// restarts of a node with a data directory (ucan.Config.ReplayFile).
//
// # Loopback
//
// In a secure realm, being on loopback proves nothing: any local program of
// any user, and any request the node itself is made to send (a webhook),
// comes from there. A local process acts as the node only if it proves it
// runs as the node's user, with the node's local credential: a random
// secret a Gateway makes at every start and writes, with the address it is
// for, into Config.CredentialFile (DataDir/api-credential by default; JSON
// api.LocalCredential; mode 0600, so only the node's user and root read
// it), and removes at Close. It is accepted only from loopback (127.0.0.0/8,
// ::1), and grants exactly what the node holds: the node's own grant
// applies to calls, publications, subscriptions and advertisements (a right
// the node lacks is 403), the node's routes (log level, DHT, NAT probe,
// revocations, ...) are open to it, and its advertisements may name
// loopback webhooks. It grants nothing the node's user could not do with
// the node's key anyway. A 401 on loopback names the file in its challenge,
//
//	WWW-Authenticate: Macula-Local realm="macula", file="/home/u/.macula/n1/api-credential"
//
// so that a client running as that user can read it and try again
// (api.Client.Local; macula-node does): a client sends a credential only to
// the address it was made for (api.LocalCredential.For), so a program that
// takes a node's port while it is down learns nothing of use. A handler
// from NewHandler has a credential nobody can read: it takes bearer tokens
// only.
//
// In an open realm tokens are neither needed nor read: a request with one is
// served as one without.
//
// A subscription (GET /v1/subscribe) checks its grant again on every
// message, the program's with a token and the node's own without: when the
// grant is revoked or expires, the stream ends with an event "ended"
// ({"reason": "..."}; api.Subscription's Next returns an error matching
// api.ErrUnauthorized).
//
// In an open realm the API has no authentication at all: from loopback it
// acts as the node for whoever reaches it (keep it on loopback), and off
// loopback too when it listens there. Webhook targets apply all the same.
//
// Known limit: the loopback rule trusts the socket's peer address, so a
// reverse proxy on the same host makes every request "loopback": in a
// secure realm that only matters with the credential, which a proxy does
// not have; in an open realm it makes every request the node's (put a proxy
// in front only with tokens enforced by the proxy, or not at all).
//
// # Errors
//
// An error answer has a status other than 2xx and the body
//
//	{"error":{"code":"invalid_did","message":"invalid DID: ..."}}
//
// where code is stable (api's Code constants) and message is for people:
//
//	400 bad_request         a missing or malformed parameter or body
//	400 invalid_did         not a did:key or did:macula alias
//	400 other_realm         an alias of another realm
//	400 invalid_key         an empty DHT key or one over dht.MaxKeyLen bytes
//	400 invalid_level       a log level other than debug, info, warn, error
//	400 invalid_name        not a concrete procedure or topic name of the node's realm, or not a
//	                        pattern that can match a topic of the realm
//	401 unauthenticated     a secure realm's API reached without a bearer token or (on
//	                        loopback) the local credential, or with an unusable
//	                        Authorization header
//	403 unauthorized        the token, or the node's own grant, does not allow the request; a
//	                        webhook URL the registrant may not name; a node's webhook request
//	404 not_found           no such route (a path that is not clean, such as /v1/call//x or
//	                        /v1/groups, too: the message names the clean one; no redirect),
//	                        no record for the alias, no advertiser of the procedure, or
//	                        (DELETE /v1/advertise) not advertised here
//	405 method_not_allowed  the route exists for other methods (listed in Allow)
//	409 conflict            the procedure is advertised here otherwise: another webhook URL,
//	                        or the node's own code
//	409 open_realm          POST /v1/ucan/revocations in an open realm
//	413 too_large           a body over 64 KiB, a call's payload over the rpc limit, or a
//	                        published payload over the pubsub limit
//	422 remote_error        the procedure's handler answered with an error
//	500 internal            anything else
//	501 not_implemented     the log level endpoints of a gateway without a LevelVar
//	502 bad_record          a record from the DHT failed its checks
//	502 disconnected        the connection to a call's callee was lost, or none could be reached
//	503 unavailable         the node or gateway is closing, the node holds pubsub.MaxPatterns
//	                        distinct patterns already, or it cannot record a bearer
//	                        invocation now (ucan.ErrBusy)
//	504 timeout             the operation did not finish within its timeout
//
// api.Client returns an error answer as an *api.APIError, and a network
// failure as a wrapped error of the transport. An *api.APIError with code
// unauthenticated matches api.ErrUnauthenticated (errors.Is), one with code
// unauthorized api.ErrUnauthorized.
//
// # HTTP/3 certificate
//
// HTTP/3 needs TLS. Unless Config names a certificate, the gateway makes a
// self-signed one (ECDSA P-256, for 127.0.0.1, ::1 and localhost, valid ten
// years) and keeps it in Config.DataDir (api-cert.pem, api-key.pem, mode
// 0600), so clients can pin it once: Gateway.CertPEM, or the file, in the
// RootCAs of the tls.Config given to api.NewHTTP3Client.
//
// # Goroutines
//
// A Gateway owns one serve goroutine per protocol; each request runs on a
// goroutine of its server, counted by the Gateway. The handler starts no
// goroutines of its own: an event stream runs on its request's goroutine
// and ends with the request's context. The webhook requests run on the rpc
// service's handler goroutines, and the lease timers' functions on the
// runtime's, and the handler counts both. Close cancels the requests in flight, stops both
// servers, closes the UDP socket, withdraws the webhook advertisements,
// aborts their requests and waits for all of them.
package gateway
