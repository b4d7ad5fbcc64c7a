// Package reach decides what a node does about its NAT from what it
// measures, puts the decision into effect on its libp2p host, and measures
// the one thing STUN cannot: whether peers can really reach the node's QUIC
// port.
//
// # Deciding
//
// nat.Decide turns the evidence (the STUN measurement, the latest dial-back
// check, whether the host listens on a public address of its own) and the
// operator's Policy (flags) into a Decision: reachability public or
// private, and from it DHT server or client, relay reservations or not, the
// relay service or not. The table is in nat.Decide's doc. The Service makes
// the first decision in New, before anything is measured (unknown, which
// acts as private: reservations at once, DHT client), and decides again
// when the NAT measurement changes (Update), when a connection comes in
// (the first peer that can check), and every minute.
//
// # Applying
//
// go-libp2p's own machinery follows one event, EvtLocalReachabilityChanged:
// autorelay keeps reservations while it says private, the host's address
// manager then advertises the relayed addresses, and kad-dht in auto mode
// serves queries only while it says public. AutoNAT v1 would emit that
// event from its own dial-backs, which need peers that run the AutoNAT
// service; the node builds its host with a forced reachability instead
// (static AutoNAT, which emits once and never again), and the Service emits
// every decision after that on the host's bus. The relay service
// (circuit v2, with the node's resources and ACL) is started and closed by
// the Service itself, so that it can be forced on or off.
//
// # Dial-back checks
//
// A STUN server tells the node its mapping and how its NAT filters packets
// from the server's other address; a cloud firewall that lets one port in
// (say UDP 7400) looks the same as a port-restricted NAT, and a host with a
// public address behind a firewall looks the same as an open one. So the
// node asks up to two connected peers (direct connections from public
// addresses, other than its own) to send a STUN Binding request with a
// transaction ID of its choosing, from a new socket, to the address the
// peer sees for the node. The node's Prober watches its QUIC socket for that
// transaction ID (nat.Prober.ExpectRequest): if one arrives the port is
// reachable ("reached"); if a peer sent and none arrived within 1.5 s, it is
// not ("blocked"). A peer that the node talks to passes an address-only
// filter, so checks are not run where STUN measured one (restricted cone),
// nor for a symmetric mapping (its port differs per destination). A result
// holds for the STUN measurement it was made under, and is renewed every
// CheckInterval.
//
// # Wire format
//
// One stream per check, /macula/<realm>/reach/1.0.0, frames of package
// frame (version 1): the requester sends type 1 (check) with the 12-byte
// transaction ID as payload; the peer answers type 2 (sent, empty) or
// type 3 (refused, the reason as text, at most 256 bytes). The peer sends
// three Binding requests 50 ms apart to the remote address of the
// connection the stream came on, nothing else, and only for verified realm
// peers on direct connections, once per peer per 10 s and 20 per second in
// all.
//
// # Goroutines
//
// The Service owns its decision loop and its stream handlers; Close removes
// the handler, stops the loop, waits for both, closes the relay service and
// the emitter.
package reach
