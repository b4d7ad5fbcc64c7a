package rpcbench

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/macula-io/macula/node"
	"github.com/macula-io/macula/ucan"
)

var flagRounds = flag.Int("rounds", 3, "rounds of open and secure per caller count (BenchmarkRPCSecure)")

// secureGoal is the issue's goal: secure throughput at least this fraction
// of open throughput.
const secureGoal = 0.90

// secureRealm returns a startMacula modifier that makes the realm secure:
// a new authority, a key of its own for each node, and its chains
// (membership with its name, plus advertise on the procedure for the callee
// a, call on it for the caller b).
func secureRealm(b *testing.B) func(name string, c *node.Config) {
	auth, err := ucan.GenerateKey()
	if err != nil {
		b.Fatal(err)
	}
	authDID := ucan.KeyDID(auth)
	expires := time.Now().Add(time.Hour)
	return func(name string, c *node.Config) {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		key, err := crypto.UnmarshalEd25519PrivateKey(priv)
		if err != nil {
			b.Fatal(err)
		}
		did := ucan.KeyDID(priv)
		issue := func(cmd ucan.Command, resource, member string) ucan.Chain {
			ch, err := ucan.Issue(auth, ucan.IssueOptions{
				Audience: did, Command: cmd, Resource: resource, Name: member,
				Expires: expires, Realm: benchRealm,
			})
			if err != nil {
				b.Fatalf("issue %s to %s: %v", cmd, name, err)
			}
			return ch
		}
		right := ucan.Call
		if name == "a" {
			right = ucan.Advertise
		}
		c.Key = key
		c.Authority = authDID
		c.Chains = []ucan.Chain{issue(ucan.Member, "", name), issue(right, procedure, "")}
	}
}

// BenchmarkRPCSecure compares RPC in a secure realm (UCAN) with RPC in an
// open realm, in one process and one run:
//
//	cd bench && go test -run '^$' -bench RPCSecure -benchtime 1x ./rpc/
//
// Two pairs of nodes run side by side: an open pair (no authority) and a
// secure pair, whose nodes hold a membership from the realm authority plus
// /macula/advertise on the procedure (callee, a) or /macula/call on it
// (caller, b). In the secure realm every call is checked on the caller (its
// own right to call, the provider's right to advertise) and on the callee
// (the caller's verdict for the connection).
//
// For each caller count the two are measured in turn, -rounds times each
// (open then secure in odd rounds, secure then open in even ones, so that a
// drift of the machine's load favours neither), with the same -warmup and
// -dur as BenchmarkRPC; the table gives the median of the rounds (req/s,
// p50, p99 and CPU per call, each its own median) and the ratio
// secure/open. The goal: secure >= 0.90x open throughput.
//
// Options, after the package: -rounds 3 -dur 3s -warmup 500ms -callers 1,64
func BenchmarkRPCSecure(b *testing.B) {
	counts := callerCounts(b)
	rounds := *flagRounds
	if rounds < 1 {
		b.Fatalf("-rounds %d: want at least 1", rounds)
	}
	open := startMacula(b)
	defer open.close()
	sec := startMacula(b, secureRealm(b))
	defer sec.close()
	if open.a.Secure() || open.b.Secure() || !sec.a.Secure() || !sec.b.Secure() {
		b.Fatalf("realms: open pair secure=%v/%v, secure pair secure=%v/%v",
			open.a.Secure(), open.b.Secure(), sec.a.Secure(), sec.b.Secure())
	}
	if g := sec.b.Grant(); !g.Member || g.Name != "b" {
		b.Fatalf("caller's own grant: %+v", g)
	}

	// The checks are on: the caller may not call what it was not granted.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_, err := sec.b.RPC().Call(ctx, benchRealm+".not-granted", []byte("ping"))
	cancel()
	if !errors.Is(err, ucan.ErrUnauthorized) {
		b.Fatalf("call without a grant in the secure realm: %v, want ucan.ErrUnauthorized", err)
	}

	envs := map[string]*maculaEnv{"open": open, "secure": sec}
	var results []result
	for _, c := range counts {
		for r := 1; r <= rounds; r++ {
			order := []string{"open", "secure"}
			if r%2 == 0 {
				order = []string{"secure", "open"}
			}
			for _, kind := range order {
				m := envs[kind]
				b.Run(fmt.Sprintf("%s-%d/round-%d", kind, c, r), func(b *testing.B) {
					results = append(results, measureOnce(b, kind, c, m.call, m.quicPackets))
				})
			}
		}
	}
	printSecureTable(os.Stdout, counts, results)
}

// summary is the median of a case's rounds, each figure its own median.
type summary struct {
	rps           float64
	p50, p99, cpu time.Duration
	rounds        int
	errs          int64
	min, max      float64 // req/s of the slowest and fastest round
}

func summarize(rs []result, kind string, callers int) summary {
	var s summary
	var rps []float64
	var p50, p99, cpu []time.Duration
	for _, r := range rs {
		if r.kind != kind || r.callers != callers || r.calls == 0 {
			continue
		}
		rps = append(rps, r.rps())
		p50 = append(p50, r.p50)
		p99 = append(p99, r.p99)
		cpu = append(cpu, r.cpu)
		s.errs += r.errs
	}
	s.rounds = len(rps)
	if s.rounds == 0 {
		return s
	}
	s.rps, s.p50, s.p99, s.cpu = median(rps), median(p50), median(p99), median(cpu)
	s.min, s.max = slices.Min(rps), slices.Max(rps)
	return s
}

// median returns the middle value (the mean of the two middle ones for an
// even count) of a non-empty slice.
func median[T int64 | float64 | time.Duration](v []T) T {
	v = slices.Clone(v)
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

func printSecureTable(w io.Writer, counts []int, rs []result) {
	if len(rs) == 0 {
		return
	}
	load := ""
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	fmt.Fprintf(w, "\nRPC echo, open vs secure realm (UCAN), %d-byte payload, median of %d rounds of %v after %v warm-up, GOMAXPROCS=%d, load average %s\n",
		payloadSize, *flagRounds, *flagDur, *flagWarmup, maxProcs(), load)
	fmt.Fprintf(w, "%-7s %7s %9s %21s %8s %8s %8s %6s\n", "realm", "callers", "req/s", "(min-max)", "p50", "p99", "cpu/call", "errors")
	for _, c := range counts {
		for _, kind := range []string{"open", "secure"} {
			s := summarize(rs, kind, c)
			if s.rounds == 0 {
				continue
			}
			fmt.Fprintf(w, "%-7s %7d %9.0f %21s %8s %8s %8s %6d\n", kind, c, s.rps,
				fmt.Sprintf("(%.0f-%.0f)", s.min, s.max), us(s.p50), us(s.p99), us1(s.cpu), s.errs)
		}
	}
	fmt.Fprintf(w, "%-14s %8s %11s %9s %9s %9s %14s %s\n", "ratio", "callers", "throughput", "p50", "p99", "cpu/call", "per round", "goal")
	for _, c := range counts {
		o, s := summarize(rs, "open", c), summarize(rs, "secure", c)
		if o.rounds == 0 || s.rounds == 0 || o.rps == 0 {
			continue
		}
		// Ratio of each round's secure to the same round's open.
		var per []string
		var opens, secs []float64
		for _, r := range rs {
			if r.callers == c && r.kind == "open" {
				opens = append(opens, r.rps())
			}
			if r.callers == c && r.kind == "secure" {
				secs = append(secs, r.rps())
			}
		}
		for i := 0; i < len(opens) && i < len(secs); i++ {
			per = append(per, fmt.Sprintf("%.2f", secs[i]/opens[i]))
		}
		ratio := s.rps / o.rps
		goal := "met"
		if ratio < secureGoal {
			goal = "NOT met"
		}
		fmt.Fprintf(w, "%-14s %8d %10.2fx %8.2fx %8.2fx %8.2fx %14s %s (>= %.2fx)\n", "secure/open", c, ratio,
			float64(s.p50)/float64(o.p50), float64(s.p99)/float64(o.p99), float64(s.cpu)/float64(o.cpu),
			strings.Join(per, " "), goal, secureGoal)
	}
	fmt.Fprintln(w, "(throughput: ratio of the median req/s; per round: secure/open req/s of each round; cpu/call: CPU time of the process (both ends of both pairs) per call)")
}
