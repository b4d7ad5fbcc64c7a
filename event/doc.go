// Package event is the node's telemetry stream: a typed Event for each thing
// worth watching (a connection coming up or going down, an RPC call starting
// or stopping, a publish, a subscribe) and a Bus that fans events out to
// subscribers.
//
// The bus never blocks the code that emits: every subscription has a bounded
// buffer, and when it is full the newest event is dropped for that subscriber
// and counted (Subscription.Dropped). A slow dashboard therefore loses events,
// never slows the node.
//
// The package sits at the bottom of the design beside realm: services such as
// rpc and pubsub emit through a *Bus handed to them, without importing node.
package event
