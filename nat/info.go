package nat

import (
	"net/netip"
	"time"
)

// Type is the classic (RFC 3489) name of a NAT's behaviour.
type Type string

// The NAT types. The string values are part of the API (JSON, CLI).
const (
	// TypeUnknown: not measured yet, or the servers could not tell.
	TypeUnknown Type = "unknown"
	// TypeOpen: no NAT; the public address is one of the host's own.
	TypeOpen Type = "open"
	// TypeFullCone: endpoint-independent mapping and filtering.
	TypeFullCone Type = "full_cone"
	// TypeRestricted: endpoint-independent mapping, address-dependent filtering.
	TypeRestricted Type = "restricted"
	// TypePortRestricted: endpoint-independent mapping,
	// address-and-port-dependent filtering.
	TypePortRestricted Type = "port_restricted"
	// TypeSymmetric: the mapping depends on the destination.
	TypeSymmetric Type = "symmetric"
)

// Behavior is a mapping or filtering behaviour of RFC 4787 / RFC 5780.
type Behavior string

// The behaviours. The string values are part of the API (JSON, CLI).
const (
	BehaviorUnknown                 Behavior = "unknown"
	BehaviorEndpointIndependent     Behavior = "endpoint_independent"
	BehaviorAddressDependent        Behavior = "address_dependent"
	BehaviorAddressAndPortDependent Behavior = "address_and_port_dependent"
)

// Info is what a probe found: the answer to `nat info`.
type Info struct {
	// Type is the classic NAT type.
	Type Type `json:"type"`
	// Mapping is how the NAT maps the node's socket to public ports.
	Mapping Behavior `json:"mapping"`
	// Filtering is which inbound packets the NAT lets through to a mapping.
	Filtering Behavior `json:"filtering"`
	// PublicIP and PublicPort are the QUIC socket's address as the first
	// answering server saw it. After a failed probe they are the last known
	// ones and Stale is true; they are empty if no probe ever succeeded.
	PublicIP   netip.Addr `json:"public_ip,omitzero"`
	PublicPort uint16     `json:"public_port,omitempty"`
	// Stale: this probe failed and PublicIP/PublicPort are from an earlier one.
	Stale bool `json:"stale,omitempty"`
	// Hairpin: whether a packet sent to the public address from behind the
	// same NAT arrives; null if not measured.
	Hairpin *bool `json:"hairpin"`
	// LocalAddr is the local address of the probed socket.
	LocalAddr string `json:"local_addr,omitempty"`
	// MeasuredAt is when the probe ended; zero if there was none yet.
	MeasuredAt time.Time `json:"measured_at,omitzero"`
	// DurationMS is how long the probe took, in milliseconds.
	DurationMS float64 `json:"duration_ms,omitempty"`
	// Error is the last probe's error, empty if it measured everything.
	Error string `json:"error,omitempty"`
	// Servers reports each configured STUN server as the last probe found it.
	Servers []ServerResult `json:"servers"`
}

// PublicAddr returns PublicIP:PublicPort, and false if there is none.
func (i Info) PublicAddr() (netip.AddrPort, bool) {
	if !i.PublicIP.IsValid() || i.PublicPort == 0 {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(i.PublicIP, i.PublicPort), true
}

// ServerResult is one STUN server in Info.
type ServerResult struct {
	// Server is the server as configured (HOST:PORT).
	Server string `json:"server"`
	// Addr is the address it resolved to.
	Addr string `json:"addr,omitempty"`
	// OK: it answered the Binding request.
	OK bool `json:"ok"`
	// RFC5780: its answer carried OTHER-ADDRESS (or the RFC 3489
	// CHANGED-ADDRESS), so it can run the behaviour tests.
	RFC5780 bool `json:"rfc5780,omitempty"`
	// Mapped is the public address it reported.
	Mapped string `json:"mapped,omitempty"`
	// RTTMS is the time to its answer, in milliseconds.
	RTTMS float64 `json:"rtt_ms,omitempty"`
	// Error says why it did not answer.
	Error string `json:"error,omitempty"`
}

// classify gives the classic type of a mapping and filtering behaviour
// (open is decided before, by comparing the mapped address with the host's).
func classify(mapping, filtering Behavior) Type {
	switch mapping {
	case BehaviorAddressDependent, BehaviorAddressAndPortDependent:
		return TypeSymmetric
	case BehaviorEndpointIndependent:
		switch filtering {
		case BehaviorEndpointIndependent:
			return TypeFullCone
		case BehaviorAddressDependent:
			return TypeRestricted
		case BehaviorAddressAndPortDependent:
			return TypePortRestricted
		}
	}
	return TypeUnknown
}
