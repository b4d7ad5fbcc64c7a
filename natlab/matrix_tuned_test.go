//go:build natlabtuned

package natlab

// The tuned configuration of the NAT matrix: the flags that forced the NAT
// choices before the nodes made them (relays --relay-service --reachability
// public, NATed nodes --reachability private --dht-mode client, the public
// node --reachability public). It is a second configuration, measured for
// comparison (docs/nat.md), not the proof: users type only --bootstrap and
// --stun, which the default configuration runs in make test. Built with
// -tags natlabtuned:
//
//	go test -tags natlabtuned -run TestNATMatrix -v ./natlab/
func init() {
	matrixConfigs = append(matrixConfigs, matrixConfig{
		name: "tuned", doc: "matrix-tuned",
		relay: func(m *matrix) []string {
			return []string{"--relay-service", "--reachability", "public", "--stun", m.lab.STUNAddr(), "--reconnect-interval", "500ms"}
		},
		relay2: func(m *matrix) []string {
			return []string{"--relay-service", "--reachability", "public", "--stun", m.lab.STUNAddr(), "--bootstrap", m.relay.multiaddr(), "--reconnect-interval", "500ms"}
		},
		site: func(m *matrix) []string {
			return append(m.common(), "--reachability", "private", "--dht-mode", "client", "--reconnect-interval", "500ms")
		},
		public: func(m *matrix) []string {
			return append(m.common(), "--reachability", "public", "--reconnect-interval", "500ms")
		},
	})
}
