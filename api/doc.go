// Package api is the contract of a node's HTTP API and its Go client: the
// JSON bodies of every route (NodeInfo, Peer, LookupResult, SubscribeEvent,
// Error, ...), the error codes, media types and headers, and Client, which
// speaks the API over HTTP/1.1 (NewClient) or HTTP/3 (NewHTTP3Client).
// Package gateway serves the API; its package doc lists the routes and their
// rules (calls, webhooks, pub/sub, authentication, errors).
//
// The package is for programs that use a running node without being one:
// it imports nothing of libp2p, the DHT or go-ucan (a test checks the import
// graph), the way nats.go never imports nats-server. The types here are the
// wire's own, not the node's: gateway converts the node's values into them,
// so a change inside a service never changes the API by accident.
//
// In a secure realm a request needs a UCAN bearer token: set Client.Token,
// for instance to the TokenFunc of package api/ucantoken, which signs one
// invocation per request. A program running as the node's user, on its
// host, may act as the node instead, with the node's local credential
// (local.go): set Client.Local to let the client read it from the file the
// node names, or Client.Credential.
//
// Each feature's client methods and bodies live in their own file (node.go,
// nat.go, dht.go, rpc.go, pubsub.go, ucan.go, local.go); client.go holds
// what they share.
package api
