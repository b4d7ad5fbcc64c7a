package rpcbench

import (
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/macula-io/macula/metrics"
	"github.com/macula-io/macula/node"
)

// BenchmarkRPCTelemetry measures what the node's telemetry costs a call:
// the RPC echo of BenchmarkRPC in pairs of nodes side by side, one pair
// plain (nothing attached to the event bus) and one with package metrics
// on both nodes (what macula-node run and dev do: a bus handler counts
// every call made and served, by procedure and outcome, with latency
// histograms). The cases run in turn, -rounds rounds per caller count, and
// the table gives medians and the ratio to plain.
//
//	cd bench && go test -run '^$' -bench RPCTelemetry -benchtime 1x ./rpc/
func BenchmarkRPCTelemetry(b *testing.B) {
	counts := callerCounts(b)
	rounds := *flagRounds
	envs := map[string]*maculaEnv{}
	kinds := []string{"plain", "metrics"}
	envs["plain"] = startMacula(b)
	defer envs["plain"].close()
	m := startMacula(b)
	defer m.close()
	for _, n := range []*node.Node{m.a, m.b} {
		met, err := metrics.New(metrics.NewRegistry(), metrics.Sources{Node: n}, metrics.Config{})
		if err != nil {
			b.Fatal(err)
		}
		defer met.Close()
	}
	envs["metrics"] = m
	var results []result
	for _, c := range counts {
		for r := 1; r <= rounds; r++ {
			order := kinds
			if r%2 == 0 {
				order = []string{kinds[1], kinds[0]}
			}
			for _, kind := range order {
				e := envs[kind]
				b.Run(fmt.Sprintf("%s-%d/round-%d", kind, c, r), func(b *testing.B) {
					results = append(results, measureOnce(b, kind, c, e.call, e.quicPackets))
				})
			}
		}
	}
	printTelemetryTable(os.Stdout, counts, kinds, results)
}

func printTelemetryTable(w io.Writer, counts []int, kinds []string, rs []result) {
	if len(rs) == 0 {
		return
	}
	load := ""
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	fmt.Fprintf(w, "\nRPC echo with and without telemetry, %d-byte payload, median of %d rounds of %v after %v warm-up, GOMAXPROCS=%d, load average %s\n",
		payloadSize, *flagRounds, *flagDur, *flagWarmup, maxProcs(), load)
	fmt.Fprintf(w, "%-8s %7s %9s %21s %8s %8s %8s %9s %6s\n", "case", "callers", "req/s", "(min-max)", "p50", "p99", "cpu/call", "vs plain", "errors")
	for _, c := range counts {
		base := summarize(rs, kinds[0], c)
		for _, kind := range kinds {
			s := summarize(rs, kind, c)
			if s.rounds == 0 {
				continue
			}
			ratio := ""
			if base.rps > 0 {
				ratio = fmt.Sprintf("%.2fx", s.rps/base.rps)
			}
			fmt.Fprintf(w, "%-8s %7d %9.0f %21s %8s %8s %8s %9s %6d\n", kind, c, s.rps,
				fmt.Sprintf("(%.0f-%.0f)", s.min, s.max), us(s.p50), us(s.p99), us1(s.cpu), ratio, s.errs)
		}
	}
}
