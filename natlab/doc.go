// Package natlab builds Macula's NAT lab for tests: network namespaces that
// form a small Internet with a STUN server, relays and sites behind NAT
// routers of each type, all on one machine and cut off from the host's own
// network. The topology and every rule come from natlab.sh in this directory
// (embedded here and run by New), so that people get the same lab with
// `sudo natlab/natlab.sh up` and tests get it with natlab.New.
//
// # Topology
//
//	PREFIX-pub      bridge br0, the "internet": 7.0.0.0/24 and 8.0.0.0/24 on one segment
//	PREFIX-stun     7.0.0.2 and 7.0.0.3, coturn on ports 3478 and 3479 (RFC 5780)
//	PREFIX-relay    7.0.0.10   bootstrap / relay host
//	PREFIX-relay2   7.0.0.11   second relay host
//	PREFIX-public   7.0.0.20   a host with no NAT
//	site N:         router PREFIX-SITE-r (wan 8.0.0.N, lan 10.0.N.1/24),
//	                hosts PREFIX-SITE-hK (10.0.N.K+1, default route via the router)
//
// Default sites, numbered in this order: full_cone, restricted,
// port_restricted, symmetric, and hairpin (a port-restricted router with
// NAT loopback and two hosts). Public-looking addresses exist only inside the
// lab's namespaces, no namespace has a route out of the lab, and no lab
// interface lives in the host's namespace, so no packet leaves the machine.
//
// # NAT rules (nftables, checked by TestNATTypes with an RFC 5780 client)
//
//	all types        input: iifname "wan" ct state new drop
//	port_restricted  oifname "wan" masquerade
//	symmetric        oifname "wan" masquerade random,fully-random
//	full_cone        masquerade + prerouting iifname "wan" udp dport 1024-65535 dnat to the host
//	restricted       masquerade + set {mapped port . peer IP} learnt after the masquerade,
//	                 prerouting udp dport . ip saddr @peers dnat to the host
//	hairpin          + map mapped port -> host IP . port; lan packets to the public IP
//	                 are DNATed through it and SNATed to the public IP
//
// # Use
//
//	lab := natlab.New(t, natlab.Options{})     // skips unless root and tools; fails in CI
//	site := lab.Site(natlab.Symmetric)
//	p := site.Start(t, "/path/to/macula-node", "run", ...)   // inside the site's first host
//	out, err := lab.Relay().Exec(ctx, "ss", "-uln")
//
// Namespaces carry a per-run prefix; Close (registered with t.Cleanup) ends
// the processes started in the lab and deletes the namespaces, also when the
// test fails. A lab left behind by a killed test binary is removed by the
// next New (natlab.sh sweep: its owner process is gone).
package natlab
