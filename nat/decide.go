package nat

// What a node does about its NAT follows from what it measured: whether
// peers can open connections to it decides its DHT mode, whether it keeps
// relay reservations, and whether it serves as a relay. Decide is that
// table; package nat/reach measures (dial-back) and applies it to a host.

// Reachability says whether peers can open a connection to the node.
type Reachability string

// The reachabilities. The string values are part of the API (JSON, CLI).
const (
	// ReachabilityUnknown: nothing measured yet. A node acts as if private
	// (reservations, DHT client) until it knows better.
	ReachabilityUnknown Reachability = "unknown"
	// ReachabilityPublic: peers can dial the node's QUIC port.
	ReachabilityPublic Reachability = "public"
	// ReachabilityPrivate: they cannot; the node needs a relay to be reached.
	ReachabilityPrivate Reachability = "private"
)

// DialBack is the outcome of a dial-back check: connected peers sent a
// packet to the address they see for this node, from a socket this node has
// never sent to.
type DialBack string

// The outcomes of a dial-back check.
const (
	// DialBackNone: no check ran (no peer to ask), or it is out of date.
	DialBackNone DialBack = ""
	// DialBackReached: a peer's packet arrived.
	DialBackReached DialBack = "reached"
	// DialBackBlocked: peers sent and nothing arrived.
	DialBackBlocked DialBack = "blocked"
)

// Evidence is what a node knows of its own reachability.
type Evidence struct {
	// NAT is the latest STUN measurement (a stale one is used as it is).
	NAT Info
	// DialBack is the latest dial-back check for the current NAT
	// measurement.
	DialBack DialBack
	// PublicListen: the node listens on a globally routable address of its
	// own. It only counts while nothing else is known (the first node of a
	// mesh, with no STUN server and no peer yet).
	PublicListen bool
}

// Force overrides one choice; the zero value, ForceAuto, lets the
// measurement decide.
type Force string

// The forces.
const (
	ForceAuto Force = ""
	ForceOn   Force = "on"
	ForceOff  Force = "off"
)

// Policy is what the operator forces (flags); the zero value forces nothing.
type Policy struct {
	// Reachability, if public or private, replaces the measured one (and so
	// every choice below that is not forced itself).
	Reachability Reachability
	// DHTServer forces DHT server mode (on) or client mode (off).
	DHTServer Force
	// RelayService forces the relay service on or off.
	RelayService Force
}

// Decision is what a node does about its reachability.
type Decision struct {
	// Reachability is the verdict; unknown acts as private.
	Reachability Reachability `json:"reachability"`
	// Reason says what the verdict rests on.
	Reason string `json:"reason"`
	// DHTServer: answer DHT queries and be in others' routing tables (only
	// for nodes that others can dial). Otherwise a DHT client.
	DHTServer bool `json:"dht_server"`
	// Reservations: keep relay reservations and advertise the relayed
	// addresses (for nodes that others cannot dial).
	Reservations bool `json:"relay_reservations"`
	// RelayService: relay for realm members behind NAT (public nodes).
	RelayService bool `json:"relay_service"`
}

// Public reports whether the node acts as publicly reachable.
func (d Decision) Public() bool { return d.Reachability == ReachabilityPublic }

// Decide turns evidence and policy into a decision:
//
//	evidence (first that applies)                            reachability
//	mapping depends on the destination (symmetric NAT)       private
//	endpoint-independent mapping, address-dependent          private (a dial-back from a peer
//	  filtering (restricted cone)                                     the node talks to passes it)
//	dial-back reached                                        public
//	dial-back blocked                                        private
//	STUN: no NAT, filtering endpoint-independent or unknown  public
//	STUN: no NAT, filtering by address or port (firewall)    private
//	STUN: full cone                                          public
//	STUN: restricted or port-restricted                      private
//	STUN: a public address that is not the node's own        private
//	a public address on an interface, nothing measured       public
//	nothing                                                  unknown (acts as private)
//
// Then: DHT server and relay service when public, relay reservations when
// not; a forced reachability replaces the measured one, and a forced DHT
// mode or relay service overrides its own choice.
func Decide(e Evidence, p Policy) Decision {
	var d Decision
	d.Reachability, d.Reason = measured(e)
	switch p.Reachability {
	case ReachabilityPublic, ReachabilityPrivate:
		d.Reachability, d.Reason = p.Reachability, "forced ("+d.Reason+")"
	}
	public := d.Reachability == ReachabilityPublic
	d.DHTServer = forced(p.DHTServer, public)
	d.RelayService = forced(p.RelayService, public)
	d.Reservations = !public
	return d
}

func forced(f Force, auto bool) bool {
	switch f {
	case ForceOn:
		return true
	case ForceOff:
		return false
	}
	return auto
}

// measured is the reachability that the evidence shows, and why.
func measured(e Evidence) (Reachability, string) {
	i := e.NAT
	_, measuredAddr := i.PublicAddr()
	switch {
	case i.Mapping == BehaviorAddressDependent || i.Mapping == BehaviorAddressAndPortDependent:
		return ReachabilityPrivate, "symmetric NAT: its mapping depends on the destination"
	case i.Mapping == BehaviorEndpointIndependent && i.Filtering == BehaviorAddressDependent:
		return ReachabilityPrivate, "restricted-cone NAT: it filters by address"
	case e.DialBack == DialBackReached:
		return ReachabilityPublic, "dial-back: a peer reached the QUIC port from a new socket"
	case e.DialBack == DialBackBlocked:
		return ReachabilityPrivate, "dial-back: peers' packets from new sockets did not reach the QUIC port"
	}
	switch i.Type {
	case TypeOpen:
		if i.Filtering == BehaviorEndpointIndependent || i.Filtering == BehaviorUnknown || i.Filtering == "" {
			return ReachabilityPublic, "no NAT: the public address is the host's own"
		}
		return ReachabilityPrivate, "no NAT, but inbound packets are filtered (a firewall)"
	case TypeFullCone:
		return ReachabilityPublic, "full-cone NAT: its mapped port takes packets from anyone"
	case TypeRestricted, TypePortRestricted:
		return ReachabilityPrivate, string(i.Type) + " NAT"
	}
	if measuredAddr {
		return ReachabilityPrivate, "behind NAT (STUN public address is not the host's own)"
	}
	if e.PublicListen {
		return ReachabilityPublic, "a public address on an interface (not measured yet)"
	}
	return ReachabilityUnknown, "not measured yet"
}
