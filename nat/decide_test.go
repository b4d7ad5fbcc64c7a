package nat

import (
	"net/netip"
	"strings"
	"testing"
)

func TestDecide(t *testing.T) {
	pub := netip.MustParseAddr("8.0.0.5")
	info := func(typ Type, m, f Behavior) Info {
		return Info{Type: typ, Mapping: m, Filtering: f, PublicIP: pub, PublicPort: 7400}
	}
	var (
		ei, ad, apd, unk = BehaviorEndpointIndependent, BehaviorAddressDependent, BehaviorAddressAndPortDependent, BehaviorUnknown
		open             = info(TypeOpen, ei, ei)
		openUnknownF     = info(TypeOpen, ei, unk)
		openFirewall     = info(TypeOpen, ei, apd)
		fullCone         = info(TypeFullCone, ei, ei)
		restricted       = info(TypeRestricted, ei, ad)
		portRestricted   = info(TypePortRestricted, ei, apd)
		symmetric        = info(TypeSymmetric, apd, apd)
		natUnknownType   = info(TypeUnknown, ei, unk) // single-socket STUN servers only
		nothing          = Info{Type: TypeUnknown, Mapping: unk, Filtering: unk}
	)
	cases := []struct {
		name string
		e    Evidence
		want Reachability
		why  string // a word of the reason
	}{
		{"no NAT", Evidence{NAT: open}, ReachabilityPublic, "no NAT"},
		{"no NAT, filtering not measured", Evidence{NAT: openUnknownF}, ReachabilityPublic, "no NAT"},
		{"no NAT behind a firewall", Evidence{NAT: openFirewall}, ReachabilityPrivate, "firewall"},
		{"full cone", Evidence{NAT: fullCone}, ReachabilityPublic, "full-cone"},
		{"restricted", Evidence{NAT: restricted}, ReachabilityPrivate, "restricted"},
		{"port restricted", Evidence{NAT: portRestricted}, ReachabilityPrivate, "port_restricted"},
		{"symmetric", Evidence{NAT: symmetric}, ReachabilityPrivate, "symmetric"},
		{"NAT of unknown type", Evidence{NAT: natUnknownType}, ReachabilityPrivate, "behind NAT"},
		{"nothing", Evidence{NAT: nothing}, ReachabilityUnknown, "not measured"},
		{"nothing, public interface", Evidence{NAT: nothing, PublicListen: true}, ReachabilityPublic, "interface"},
		{"public interface, but STUN sees a NAT", Evidence{NAT: natUnknownType, PublicListen: true}, ReachabilityPrivate, "behind NAT"},

		// Dial-back wins over the STUN type...
		{"port restricted, reached (a firewall that lets the port in)", Evidence{NAT: portRestricted, DialBack: DialBackReached}, ReachabilityPublic, "dial-back"},
		{"NAT of unknown type, reached", Evidence{NAT: natUnknownType, DialBack: DialBackReached}, ReachabilityPublic, "dial-back"},
		{"nothing measured, reached", Evidence{NAT: nothing, DialBack: DialBackReached}, ReachabilityPublic, "dial-back"},
		{"no NAT, blocked", Evidence{NAT: open, DialBack: DialBackBlocked}, ReachabilityPrivate, "dial-back"},
		{"full cone, blocked", Evidence{NAT: fullCone, DialBack: DialBackBlocked}, ReachabilityPrivate, "dial-back"},
		{"public interface, blocked", Evidence{NAT: nothing, PublicListen: true, DialBack: DialBackBlocked}, ReachabilityPrivate, "dial-back"},
		// ...but not where it cannot tell: a symmetric mapping, and an
		// address filter that lets in the peer the node talks to.
		{"symmetric, reached", Evidence{NAT: symmetric, DialBack: DialBackReached}, ReachabilityPrivate, "symmetric"},
		{"restricted, reached", Evidence{NAT: restricted, DialBack: DialBackReached}, ReachabilityPrivate, "restricted"},
	}
	for _, c := range cases {
		d := Decide(c.e, Policy{})
		if d.Reachability != c.want || !strings.Contains(d.Reason, c.why) {
			t.Errorf("%s: %s (%s), want %s (%q)", c.name, d.Reachability, d.Reason, c.want, c.why)
		}
		public := c.want == ReachabilityPublic
		if d.DHTServer != public || d.RelayService != public || d.Reservations == public || d.Public() != public {
			t.Errorf("%s: %+v: DHT server and relay service only when public, reservations otherwise", c.name, d)
		}
	}
}

func TestDecidePolicy(t *testing.T) {
	behind := Evidence{NAT: Info{Type: TypePortRestricted, Mapping: BehaviorEndpointIndependent, Filtering: BehaviorAddressAndPortDependent}}
	open := Evidence{NAT: Info{Type: TypeOpen, Mapping: BehaviorEndpointIndependent, Filtering: BehaviorEndpointIndependent}}
	cases := []struct {
		name                     string
		e                        Evidence
		p                        Policy
		reach                    Reachability
		dht, reservations, relay bool
	}{
		{"forced public behind NAT", behind, Policy{Reachability: ReachabilityPublic}, ReachabilityPublic, true, false, true},
		{"forced private when open", open, Policy{Reachability: ReachabilityPrivate}, ReachabilityPrivate, false, true, false},
		{"unknown is no force", open, Policy{Reachability: ReachabilityUnknown}, ReachabilityPublic, true, false, true},
		{"relay service off on a public node", open, Policy{RelayService: ForceOff}, ReachabilityPublic, true, false, false},
		{"relay service on behind NAT", behind, Policy{RelayService: ForceOn}, ReachabilityPrivate, false, true, true},
		{"DHT client on a public node", open, Policy{DHTServer: ForceOff}, ReachabilityPublic, false, false, true},
		{"DHT server behind NAT", behind, Policy{DHTServer: ForceOn}, ReachabilityPrivate, true, true, false},
		{"forced public, relay off", behind, Policy{Reachability: ReachabilityPublic, RelayService: ForceOff}, ReachabilityPublic, true, false, false},
	}
	for _, c := range cases {
		d := Decide(c.e, c.p)
		if d.Reachability != c.reach || d.DHTServer != c.dht || d.Reservations != c.reservations || d.RelayService != c.relay {
			t.Errorf("%s: %+v", c.name, d)
		}
		if c.p.Reachability == ReachabilityPublic || c.p.Reachability == ReachabilityPrivate {
			if !strings.HasPrefix(d.Reason, "forced") {
				t.Errorf("%s: reason %q does not say it was forced", c.name, d.Reason)
			}
		}
	}
}
