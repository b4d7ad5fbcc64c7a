// Package gateway serves a node's API over HTTP, so that programs in any
// language (and the macula-node CLI) can use a running node: one
// http.Handler (NewHandler), served by a Gateway over HTTP/1.1 on TCP and
// over HTTP/3 (quic-go/http3) on UDP, both on loopback by default
// (127.0.0.1:7401, the same port number on each). Client is the Go client
// of the API, over either protocol.
//
// The API has no authentication: whoever can reach it can use the node. Keep
// it on loopback unless the network in front of it is trusted.
//
// # Routes
//
// Every answer, errors included, is JSON (Content-Type application/json).
//
//	GET  /v1/node           NodeInfo: identity, realm, addresses, number of peers, API addresses
//	GET  /v1/peers          []Peer: the connected peers of the realm ([] when none)
//	GET  /v1/resolve/{did}  node.Resolution of a did:key or a did:macula alias of the node's realm;
//	                        ?timeout= (default 10s)
//	GET  /v1/dht/stats      dht.Stats: routing table and stored records
//	GET  /v1/dht/lookup     LookupResult: the providers of ?key=; ?limit= (default 20, 0 for all
//	                        found, at most 1000), ?timeout= (default 5s: the providers found by then)
//	POST /v1/dht/provide    ProvideResult {"key":K}: the node provides ?key= from now on; 200 once
//	                        announced, 202 if the announcement did not finish within ?timeout=
//	                        (default 10s; the key is kept and announced again later)
//	GET  /v1/log/level      LogLevel {"level":"info"}
//	PUT  /v1/log/level      LogLevel: set the level from the body {"level":"debug|info|warn|error"}
//
// A ?timeout= is a Go duration (5s, 1500ms); values over 60s count as 60s.
// Request bodies are limited to 64 KiB.
//
// # Errors
//
// An error answer has a status other than 2xx and the body
//
//	{"error":{"code":"invalid_did","message":"invalid DID: ..."}}
//
// where code is stable (the Code constants) and message is for people:
//
//	400 bad_request         a missing or malformed parameter or body
//	400 invalid_did         not a did:key or did:macula alias
//	400 other_realm         an alias of another realm
//	400 invalid_key         an empty DHT key or one over dht.MaxKeyLen bytes
//	400 invalid_level       a log level other than debug, info, warn, error
//	404 not_found           no such route, or no record for the alias
//	405 method_not_allowed  the route exists for other methods (listed in Allow)
//	413 too_large           a body over 64 KiB
//	500 internal            anything else
//	501 not_implemented     the log level endpoints of a gateway without a LevelVar
//	502 bad_record          a record from the DHT failed its checks
//	503 unavailable         the node or gateway is closing
//	504 timeout             the operation did not finish within its timeout
//
// Client returns an error answer as an *APIError, and a network failure as a
// wrapped error of the transport.
//
// # HTTP/3 certificate
//
// HTTP/3 needs TLS. Unless Config names a certificate, the gateway makes a
// self-signed one (ECDSA P-256, for 127.0.0.1, ::1 and localhost, valid ten
// years) and keeps it in Config.DataDir (api-cert.pem, api-key.pem, mode
// 0600), so clients can pin it once: Gateway.CertPEM, or the file, in the
// RootCAs of the tls.Config given to NewHTTP3Client.
//
// # Goroutines
//
// A Gateway owns one serve goroutine per protocol; each request runs on a
// goroutine of its server, counted by the Gateway. Close cancels the
// requests in flight, stops both servers, closes the UDP socket and waits
// for all of them. The handler itself starts no goroutines.
package gateway
