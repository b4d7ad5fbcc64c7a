// Package punch gets direct paths between nodes whose NATs go-libp2p's hole
// punching (DCUtR) does not manage, or manages slowly, by choosing who dials
// from the NAT types the two nodes measured (package nat), and by
// birthday-paradox probing for a port-restricted NAT meeting a symmetric
// one. It is a service on a libp2p host: New(host, Config) sets its two
// stream handlers and watches the host's connections; Close removes them and
// waits for everything it started. A node wires it; nothing in it knows of
// the node.
//
// # NAT-aware dialing (Protocol)
//
// A node behind symmetric NAT that receives a relayed connection from a peer
// whose NAT maps endpoint-independently and filters by at most the remote
// address (full cone, restricted) waits, under DCUtR, for the peer's QUIC
// dial on DCUtR's first two attempts; the peer dials the symmetric node's
// observed ports, which are not the ports its NAT maps towards this peer, so
// both attempts time out (5 s each) and only the third, roles switched, gets
// through (about 10.5 s). The symmetric node can dial such a peer at once.
// So when a relayed connection comes in to a symmetric (or port-restricted)
// node, the service asks the peer over it for its NAT type and STUN address.
// A restricted peer first sends a few packets from its QUIC socket to the
// symmetric node's public IP, opening its filter for that address. The
// symmetric node then dials the peer's STUN address (one QUIC dial, 2 s).
//
// DCUtR starts at about the same time; Filter (its address filter) holds it
// for that peer until the service has decided (at most 4 s): were DCUtR's
// first hole punch (which only waits for an inbound connection from the
// peer's address) pending, the swarm would merge our dial to the same
// address into it, and both would fail ("hole punching attempted; no active
// dial"). When our dial works, Filter gives DCUtR no addresses and it stops;
// otherwise DCUtR runs as before.
//
// # Birthday probing (BirthdayProtocol)
//
// Port-restricted (side A) with symmetric (side B), as Tailscale does for
// hard NATs. A's STUN address A_pub is valid towards any destination. B's
// NAT gives each (socket, destination) a new random public port, so B opens
// BirthdaySockets (256) extra UDP sockets and sends one packet from each to
// A_pub: 256 random mappings on B's NAT, each letting A_pub in. A then sends
// up to BirthdayProbes (1024) probes from its QUIC socket to B's public IP
// at distinct random ports (32 every 8 ms), each carrying a nonce and the
// port it went to. A probe that hits one of B's mappings reaches B's socket
// k, and A's filter now lets B_ip:port_k in: the path between A's QUIC
// socket and socket k is open both ways. B closes its sockets, listens with
// the host's QUIC transport on socket k's port, and tells A the port; A
// dials it. B keeps that listener while a connection uses it. With B's
// ports uniformly random over 1024-65535, one attempt hits with chance
// HitChance(256, 1024, 64512) = 98.3%, after about 250 probes on average.
// Bounds: 5 s per attempt, one attempt per peer and direction per minute,
// two attempts and eight listeners at once; only verified realm peers over a
// relayed connection may ask.
//
// # Retries (retry.go)
//
// DCUtR and the punches above run once per relayed connection. A pair
// still reached through relays only RetryAfter (4 s) after its relayed
// connection opened is punched again, then after twice the wait (at most 5
// min) while it stays relayed. The symmetric side of a pair retries (a
// direct dial or birthday probing, as above); between two NATs that map
// endpoint-independently (open, full cone, restricted, port-restricted)
// the side with the smaller peer ID sends its info with "dial": the peer
// sends a few packets from its QUIC socket to the requester's STUN address
// (opening its filter for exactly that address), answers "opened", and the
// requester dials the peer's STUN address (5 s bound). At most 4 punches
// run at once.
//
// # Wire format
//
// Both protocols send frames of package frame (type, version 1, uint32
// length, payload); the payload is JSON. A frame over the limit, of an
// unknown type or version, or whose payload does not check, closes the
// stream.
//
//	punch/2.0.0     type 1 info   {"type": nat type, "addr": "ip:port", "opened": bool, "dial": bool}   <= 1024 bytes
//	                one frame each way: the requester's, then the reply
//	birthday/2.0.0  type 1 start  A -> B {"nonce": 16 bytes, "addr": A's public ip:port} <= 512 bytes
//	                type 2 ready  B -> A {"nonce": the same, "addr": B's public IP}
//	                type 3 hit    B -> A {"port": B's public port a probe came in on}
//	                type 4 done   A -> B {"ok": A's dial worked, "probes": how many}
//
// The node that received the relayed connection opens the birthday stream:
// as A it sends start and B answers ready; as B it sends ready first. The
// probes and opening packets are bare datagrams from socket to socket, not
// frames: "\x00macula-bday", the nonce, and the big-endian port they were
// sent to (0 in an opening packet). Their first byte keeps QUIC's fixed bit
// clear and they are not STUN, so the sockets they share with QUIC and STUN
// drop them.
//
// # Goroutines and locks
//
// The service counts every goroutine it starts (punches, stream handlers,
// the watchers of birthday listeners) in one WaitGroup that Close waits for;
// the readers of one attempt are owned and waited for by the attempt. mu
// guards the running punches and the birthday bounds and is never held
// across I/O.
package punch
