package api

import (
	"context"
	"net/http"
	"net/netip"
	"time"
)

// NATInfo is the answer of GET /v1/nat and POST /v1/nat/probe: what the
// node knows of its NAT (package nat's Info), and the realm's security, so
// that an open realm says so wherever a node's reachability is shown.
type NATInfo struct {
	// Type is the classic NAT type: "unknown", "open", "full_cone",
	// "restricted", "port_restricted" or "symmetric".
	Type string `json:"type"`
	// Mapping is how the NAT maps the node's socket to public ports, and
	// Filtering which inbound packets it lets through to a mapping:
	// "unknown", "endpoint_independent", "address_dependent" or
	// "address_and_port_dependent".
	Mapping   string `json:"mapping"`
	Filtering string `json:"filtering"`
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
	Servers []STUNServer `json:"servers"`
	// Security is SecurityOpen or SecuritySecure.
	Security string `json:"security"`
	// Reachability is what the node decided from its measurements (nil
	// from a node that does not say).
	Reachability *Reachability `json:"reachability,omitempty"`
}

// Reachability is a node's decision on whether peers can reach it, and
// what follows from it.
type Reachability struct {
	// Reachability is "public", "private", or "unknown" (nothing measured
	// yet; the node acts as private).
	Reachability string `json:"reachability"`
	// Reason says what the verdict rests on, or that it was forced.
	Reason string `json:"reason"`
	// DHTServer: the node answers DHT queries (else a DHT client).
	DHTServer bool `json:"dht_server"`
	// RelayReservations: the node keeps relay reservations and advertises
	// its relayed addresses.
	RelayReservations bool `json:"relay_reservations"`
	// RelayService: the node relays for realm members behind NAT.
	RelayService bool `json:"relay_service"`
}

// PublicAddr returns PublicIP:PublicPort, and false if there is none.
func (i *NATInfo) PublicAddr() (netip.AddrPort, bool) {
	if !i.PublicIP.IsValid() || i.PublicPort == 0 {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(i.PublicIP, i.PublicPort), true
}

// STUNServer is one STUN server in NATInfo.
type STUNServer struct {
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

// NAT returns what the node knows of its NAT, and its realm's security.
func (c *Client) NAT(ctx context.Context) (*NATInfo, error) {
	var out NATInfo
	if err := c.do(ctx, adminScope, http.MethodGet, "/v1/nat", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// NATProbe asks the node to probe its NAT again now. The probe runs in the
// background: the answer is what the node knew when it started (NAT shows
// the new result once its MeasuredAt is later).
func (c *Client) NATProbe(ctx context.Context) (*NATInfo, error) {
	var out NATInfo
	if err := c.do(ctx, adminScope, http.MethodPost, "/v1/nat/probe", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
