package ring

import (
	"fmt"
	"io"
	"slices"
)

// Row is the movement and balance of a placement at one cluster size, over
// several random node sets.
type Row struct {
	// N is the number of nodes before the change.
	N int
	// Join and Leave: shards moved when one node joins (N -> N+1) or one
	// leaves (N -> N-1), divided by the optimum (Shards/(N+1) for a join,
	// Shards/N for a leave): mean, 95th percentile and worst over the trials.
	Join, Leave Stat
	// Balance: max/mean load at N nodes, over the trials.
	Balance Stat
}

// Stat is a mean, a 95th percentile and a maximum.
type Stat struct{ Mean, P95, Max float64 }

func statOf(v []float64) Stat {
	s := slices.Clone(v)
	slices.Sort(s)
	var sum float64
	for _, x := range s {
		sum += x
	}
	return Stat{Mean: sum / float64(len(s)), P95: s[(len(s)*95)/100], Max: s[len(s)-1]}
}

// Movement measures a placement function (Place or Modulo) for every size
// from lo to hi nodes: trials random node sets per size, each with one join
// and one leave of a random member. The node ids are random 34-byte strings
// (the size of a libp2p Ed25519 peer id) from a generator seeded with seed,
// so a run is reproducible.
func Movement(place func(string, []string) *Placement, lo, hi, trials int, seed uint64) []Row {
	rng := seed
	next := func() uint64 { return splitmix(&rng) }
	var rows []Row
	for n := lo; n <= hi; n++ {
		var join, leave, bal []float64
		for range trials {
			nodes := make([]string, n+1)
			for i := range nodes {
				b := make([]byte, 34)
				for j := range b {
					b[j] = byte(next())
				}
				nodes[i] = string(b)
			}
			before := place("bench", nodes[:n])
			joined := place("bench", nodes)
			k := int(next() % uint64(n))
			rest := slices.Delete(slices.Clone(nodes[:n]), k, k+1)
			left := place("bench", rest)
			join = append(join, float64(len(Changes(before, joined)))/(Shards/float64(n+1)))
			leave = append(leave, float64(len(Changes(before, left)))/(Shards/float64(n)))
			bal = append(bal, before.MaxOverMean())
		}
		rows = append(rows, Row{N: n, Join: statOf(join), Leave: statOf(leave), Balance: statOf(bal)})
	}
	return rows
}

// WriteTable prints Place's rows beside Modulo's (the original's), one line
// per size.
func WriteTable(w io.Writer, place, modulo []Row) {
	fmt.Fprintf(w, "%3s | %-30s | %-30s | %-17s | %s\n", "N",
		"join moved/optimal mean p95 max", "leave moved/optimal mean p95 max", "max/mean mean max", "modulo: join leave max/mean")
	for i, r := range place {
		m := modulo[i]
		fmt.Fprintf(w, "%3d | %8.3f %8.3f %8.3f      | %8.3f %8.3f %8.3f       | %7.3f %7.3f   | %6.2f %6.2f %6.3f\n",
			r.N, r.Join.Mean, r.Join.P95, r.Join.Max, r.Leave.Mean, r.Leave.P95, r.Leave.Max,
			r.Balance.Mean, r.Balance.Max, m.Join.Mean, m.Leave.Mean, m.Balance.Max)
	}
}
