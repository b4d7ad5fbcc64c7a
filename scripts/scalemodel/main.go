// Command scalemodel models a realm of N nodes across sites (by default
// 50, 1,000 and 10,000) with the parameters and, where it can, the code of
// the project, and prints what each node costs: connections and why,
// membership traffic and how fast news spreads, DHT lookups (hops,
// requests, time), refresh and reprovide traffic, how a subscription
// reaches publishers, the registry's full mesh, and relay load
// (docs/reliability.md, "A realm of 10,000 nodes: model", issue 17).
//
//	go run ./scripts/scalemodel                   # make scalemodel
//	go run ./scripts/scalemodel -n 50,2000 -seed 2
//
// What is real: peer IDs (Ed25519 keys), their kad-dht keys and provider
// keys (dht.KeyCID), the membership overlay (member.Overlay, the function
// the membership's view uses), kad-dht's routing tables
// (go-libp2p-kbucket's RoutingTable) and its query algorithm with its
// parameters (k, alpha, beta, the follow-up), the connection manager's
// rules and limits, the registry's digest format and timers. What is
// assumed (sites and latencies, NAT mix, load, message sizes, no churn)
// is printed with the figures and listed in docs/reliability.md.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	o := defaultOptions()
	sizes := flag.String("n", "50,1000,10000", "realm sizes, comma-separated")
	flag.Uint64Var(&o.seed, "seed", o.seed, "seed of every random choice (keys, sites, NAT kinds, lookups)")
	flag.IntVar(&o.sites, "sites", o.sites, "sites the nodes are spread over")
	flag.Float64Var(&o.public, "public", o.public, "fraction of public nodes (DHT servers)")
	flag.Float64Var(&o.sym, "sym", o.sym, "fraction of nodes behind symmetric NAT")
	flag.IntVar(&o.relays, "relays", o.relays, "relays (the realm's bootstrap nodes)")
	flag.IntVar(&o.lookups, "lookups", o.lookups, "DHT lookups simulated per size")
	flag.IntVar(&o.inUse, "in-use", o.inUse, "peers a node calls or publishes to (load)")
	flag.Float64Var(&o.calls, "calls", o.calls, "calls per node and second (load)")
	flag.Float64Var(&o.callKB, "call-kb", o.callKB, "KiB of a call, request and answer")
	flag.Float64Var(&o.subs, "subs", o.subs, "subscribers of the model topic, as a fraction of N")
	flag.Float64Var(&o.pubs, "pubs", o.pubs, "publishers in the realm, as a fraction of N")
	flag.IntVar(&o.met, "met", o.met, "if > 0: routing tables from this many peers met, not refreshed ones")
	flag.DurationVar(&o.simTime, "sim", o.simTime, "simulated time of the connection model")
	jsonOut := flag.String("json", "", "also write the figures to this file")
	flag.Parse()

	var ns []int
	for _, s := range strings.Split(*sizes, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || v < 2 {
			fmt.Fprintf(os.Stderr, "scalemodel: -n: %q is not a size of 2 or more\n", s)
			os.Exit(2)
		}
		ns = append(ns, v)
	}
	var results []*result
	for _, n := range ns {
		start := time.Now()
		r, err := runModel(n, o)
		if err != nil {
			fmt.Fprintln(os.Stderr, "scalemodel:", err)
			os.Exit(1)
		}
		fmt.Fprintf(os.Stderr, "scalemodel: N=%d modelled in %v\n", n, time.Since(start).Round(time.Millisecond))
		results = append(results, r)
	}
	printResults(os.Stdout, o, results)
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(results, "", "  ")
		if err := os.WriteFile(*jsonOut, b, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "scalemodel:", err)
			os.Exit(1)
		}
	}
}
