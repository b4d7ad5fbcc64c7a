// Package nat finds out how a node is seen from the Internet: its public
// address and port as STUN reports them, and the behaviour of the NAT in
// front of it, by the tests of RFC 5780 (mapping, filtering, hairpinning)
// with the classic RFC 3489 names (open, full cone, restricted,
// port-restricted, symmetric). It also answers STUN itself, so that public
// Macula nodes are the STUN servers of a mesh and no other infrastructure is
// needed.
//
// # One socket for QUIC and STUN
//
// A NAT maps each local UDP socket on its own, so only STUN sent from the very
// socket that QUIC uses tells the address and port that QUIC peers see. A
// Prober therefore works on a net.PacketConn that shares the QUIC listener's
// socket: go-libp2p's quicreuse.ConnManager.SharedNonQUICPacketConn gives one
// (see SharedQUICConn). quic-go hands that conn every datagram that is not
// QUIC, hole-punch packets included, so the Prober's read loop keeps only what
// stun.IsMessage accepts and matches responses to its requests by their
// 96-bit transaction IDs; everything else is dropped and counted.
//
// # What a probe does
//
//  1. Binding request to every configured server (RFC 5389 section 7.2.1
//     retransmissions: RTO, 2*RTO, ... with a small cap). The first server
//     that answers gives the public address (XOR-MAPPED-ADDRESS). If it is
//     one of the host's own addresses with the socket's port, there is no NAT:
//     type open.
//  2. Mapping (RFC 5780 section 4.3): with a server that gives an
//     OTHER-ADDRESS, a request to the other IP and the primary port, then to
//     the other IP and the other port. Equal mapped addresses mean
//     endpoint-independent mapping; else address-dependent or
//     address-and-port-dependent. A server without RFC 5780 support still
//     helps: the mapped addresses from servers on different IPs are compared.
//  3. Filtering (RFC 5780 section 4.4), from a second, fresh socket on the
//     same local IP, so that the QUIC socket's own pinholes (towards the
//     server's other address after step 2) cannot fake a result: a request
//     with CHANGE-REQUEST "change IP and port"; an answer means
//     endpoint-independent filtering. Else "change port": an answer means
//     address-dependent filtering, none address-and-port-dependent. A
//     response from the address the request went to means the server ignored
//     CHANGE-REQUEST, and the filtering stays unknown.
//  4. Hairpin (RFC 5780 section 4.6): the fresh socket sends a Binding request
//     to the QUIC socket's public address; hairpinning works if the QUIC
//     socket receives it, as it would from another node behind the same NAT
//     that dials this one at its public address.
//
// Steps 2, 3 and 4 run at the same time. A server that answers nothing, sends
// garbage or cannot be reached costs one bounded transaction and shows up in
// Info.Error and Info.Servers; a probe never hangs and never panics on input.
//
// The classic type follows from the behaviours: no NAT is open; an
// endpoint-independent mapping is full_cone, restricted or port_restricted by
// its filtering; any other mapping is symmetric; what cannot be measured is
// unknown.
//
// # Answering STUN
//
// A Server answers Binding requests (RFC 5389) with XOR-MAPPED-ADDRESS,
// RESPONSE-ORIGIN and FINGERPRINT. With four sockets (two IPs times two ports)
// it supports RFC 5780: OTHER-ADDRESS in every response and CHANGE-REQUEST.
// With one socket it leaves OTHER-ADDRESS out and refuses CHANGE-REQUEST with
// 420 (Unknown Attribute), as RFC 5780 section 6.1 asks. A Prober with
// Config.Respond answers on the QUIC socket itself, the way a public node
// serves its mesh. Responses are rate limited (ServerConfig.RateLimit), since
// a response is larger than the request that asked for it.
//
// # Goroutines and locks
//
// A Prober owns its read loop and its timer loop; a Server owns one read loop
// per socket. Close stops and waits for them. A Prober's probeMu lets one
// probe run at a time and is held through it; its mu guards the results and
// is taken after probeMu, never across I/O. Config.OnUpdate runs with probeMu
// held, so it must not call Probe or Close.
package nat
