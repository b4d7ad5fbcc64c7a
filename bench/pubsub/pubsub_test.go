// Package pubsubbench compares Macula pubsub with NATS on loopback: one
// publisher and one or four subscribers of io.acme.orders.*, 128-byte
// messages, each system in this process. Run it with
//
//	cd bench && go test -run '^$' -bench PubSub -benchtime 1x ./pubsub/
//
// PUBSUB_BENCH_SECONDS sets how long each run publishes (default 3) and
// PUBSUB_BENCH_ROUNDS how many rounds to take the median of (default 3);
// PUBSUB_BENCH_DIAG=1 logs queue and QUIC counters after each run.
// Macula runs with its defaults except SubscriptionBuffer (8192, see
// newMaculaNode). The host is shared by every node of a run, so the figures
// depend on GOMAXPROCS and on whatever else the machine is doing: run it on
// a quiet machine.
package pubsubbench

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math/bits"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pquic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/quic-go/quic-go"

	"github.com/macula-io/macula/dht"
	"github.com/macula-io/macula/event"
	"github.com/macula-io/macula/pubsub"
)

const (
	realmName   = "io.acme.orders"
	pattern     = "io.acme.orders.*"
	topic       = "io.acme.orders.placed"
	payloadSize = 128
	// maxMessages bounds a run by count as well as by time.
	maxMessages = 50_000_000
	// settle bounds the wait for deliveries after publishing stops.
	settle = 5 * time.Second
)

// result is one run's figures.
type result struct {
	system      string
	mode        string
	subs        int
	published   uint64
	pubDur      time.Duration
	delivered   uint64
	deliverDur  time.Duration // first publish to last delivery
	dropped     uint64
	p50, p99    time.Duration
	pubRate     float64
	deliverRate float64
}

func (r *result) finish() {
	r.pubRate = float64(r.published) / r.pubDur.Seconds()
	r.deliverRate = float64(r.delivered) / r.deliverDur.Seconds()
}

// recorder is one subscriber's counters and latency histogram. Each is fed
// by one goroutine (the subscription's), so only its counters are atomic.
type recorder struct {
	count atomic.Uint64
	last  atomic.Int64 // unix ns of the last delivery
	hist  histogram
	on    atomic.Bool // false during warm-up
}

func (r *recorder) record(payload []byte) {
	now := time.Now().UnixNano()
	if !r.on.Load() {
		r.count.Add(1)
		return
	}
	sent := int64(binary.BigEndian.Uint64(payload))
	r.hist.add(uint64(max(now-sent, 0)))
	r.count.Add(1)
	r.last.Store(now)
}

// histogram is a log-linear latency histogram: 16 buckets per power of
// two, so a percentile is within about 6%.
type histogram struct {
	n       uint64
	buckets [64 * 16]uint64
}

func bucketOf(v uint64) int {
	if v < 32 {
		return int(v)
	}
	shift := bits.Len64(v) - 5
	return shift*16 + int(v>>shift)
}

func bucketLow(i int) uint64 {
	if i < 32 {
		return uint64(i)
	}
	shift := i/16 - 1
	return uint64(i-shift*16) << shift
}

func (h *histogram) add(v uint64) {
	h.buckets[bucketOf(v)]++
	h.n++
}

func (h *histogram) merge(o *histogram) {
	h.n += o.n
	for i := range h.buckets {
		h.buckets[i] += o.buckets[i]
	}
}

func (h *histogram) quantile(q float64) time.Duration {
	want := uint64(q * float64(h.n))
	var seen uint64
	for i, c := range h.buckets {
		seen += c
		if seen > want {
			return time.Duration(bucketLow(i))
		}
	}
	return 0
}

func runFor() time.Duration {
	if s, err := strconv.ParseFloat(os.Getenv("PUBSUB_BENCH_SECONDS"), 64); err == nil && s > 0 {
		return time.Duration(s * float64(time.Second))
	}
	return 3 * time.Second
}

// window is the most messages the windowed publisher lets any subscriber
// be behind: half of pubsub's default send queue, so that a fair
// comparison never needs to drop.
const window = pubsub.DefaultPeerQueue / 2

// publishLoop publishes stamped payloads until the time or count runs out.
// With windowed set, it keeps every subscriber within window messages of
// the publisher (reading the recorders' counts, as an application would
// with acknowledgements), yielding the processor while one is behind.
func publishLoop(d time.Duration, pub func([]byte) error, recs []*recorder, base []uint64, windowed bool) (uint64, time.Duration, error) {
	payload := make([]byte, payloadSize)
	start := time.Now()
	deadline := start.Add(d)
	var n uint64
	behind := func() bool {
		for i, r := range recs {
			if n-(r.count.Load()-base[i]) > window {
				return true
			}
		}
		return false
	}
	for n < maxMessages {
		if n&63 == 0 {
			if n&1023 == 0 && time.Now().After(deadline) {
				break
			}
			for spins := 0; windowed && behind(); spins++ {
				if spins < 100 {
					runtime.Gosched()
				} else {
					time.Sleep(20 * time.Microsecond)
				}
			}
		}
		binary.BigEndian.PutUint64(payload, uint64(time.Now().UnixNano()))
		if err := pub(payload); err != nil {
			return n, time.Since(start), err
		}
		n++
	}
	return n, time.Since(start), nil
}

// waitSettled waits until the delivered total stops growing or reaches
// want, for at most settle.
func waitSettled(recs []*recorder, base []uint64, want uint64) uint64 {
	total := func() uint64 {
		var t uint64
		for i, r := range recs {
			t += r.count.Load() - base[i]
		}
		return t
	}
	deadline := time.Now().Add(settle)
	last, lastChange := total(), time.Now()
	for time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		t := total()
		if t >= want {
			return t
		}
		if t != last {
			last, lastChange = t, time.Now()
		} else if time.Since(lastChange) > 300*time.Millisecond {
			break
		}
	}
	return total()
}

// warmUp publishes until every recorder has seen a message.
func warmUp(tb testing.TB, recs []*recorder, pub func([]byte) error) {
	payload := make([]byte, payloadSize)
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok := true
		for _, r := range recs {
			ok = ok && r.count.Load() > 0
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			tb.Fatal("subscribers never got a warm-up message")
		}
		if err := pub(payload); err != nil {
			tb.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // let the warm-up drain
	for _, r := range recs {
		r.on.Store(true)
	}
}

// system is one side of the comparison, set up and ready to publish.
type system struct {
	name  string
	subs  int
	recs  []*recorder
	pub   func([]byte) error
	flush func()        // after publishing; may be nil
	diag  func() string // transport diagnostics; may be nil
	close func()
}

func measure(tb testing.TB, sys *system, windowed bool) result {
	base := make([]uint64, len(sys.recs))
	for i, r := range sys.recs {
		base[i] = r.count.Load()
		r.hist = histogram{}
		r.last.Store(0)
	}
	start := time.Now()
	n, pubDur, err := publishLoop(runFor(), sys.pub, sys.recs, base, windowed)
	if err != nil {
		tb.Fatal(err)
	}
	if sys.flush != nil {
		sys.flush()
	}
	delivered := waitSettled(sys.recs, base, n*uint64(sys.subs))
	var lastNs int64
	var h histogram
	for _, r := range sys.recs {
		lastNs = max(lastNs, r.last.Load())
		h.merge(&r.hist)
	}
	mode := "flat out"
	if windowed {
		mode = "windowed"
	}
	res := result{
		system: sys.name, mode: mode, subs: sys.subs, published: n, pubDur: pubDur, delivered: delivered,
		deliverDur: time.Unix(0, lastNs).Sub(start), dropped: n*uint64(sys.subs) - delivered,
		p50: h.quantile(0.50), p99: h.quantile(0.99),
	}
	res.finish()
	if sys.diag != nil && os.Getenv("PUBSUB_BENCH_DIAG") != "" {
		tb.Logf("%s %s subs=%d: %s", sys.name, mode, sys.subs, sys.diag())
	}
	// Let queues drain before the next run.
	time.Sleep(200 * time.Millisecond)
	return res
}

// quicStats sums the QUIC statistics of h's connections: packets sent and
// declared lost, and the range of congestion windows and smoothed RTTs.
func quicStats(h host.Host) string {
	var sent, lost, bytesSent uint64
	var out []string
	for _, c := range h.Network().Conns() {
		var qc *quic.Conn
		if !c.As(&qc) {
			continue
		}
		st := qc.ConnectionStats()
		sent += st.PacketsSent
		lost += st.PacketsLost
		bytesSent += st.BytesSent
		out = append(out, fmt.Sprintf("cwnd %dKB srtt %v", st.CongestionWindow>>10, st.SmoothedRTT.Round(time.Microsecond)))
	}
	return fmt.Sprintf("QUIC packets sent %d (%d bytes each) lost %d; %v", sent, bytesSent/max(sent, 1), lost, out)
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// maculaNode is a bare host with the realm's DHT and pubsub, as node wires
// them.
type maculaNode struct {
	h  host.Host
	d  *dht.DHT
	ps *pubsub.PubSub
}

func newMaculaNode(tb testing.TB) *maculaNode {
	h, err := libp2p.New(
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/udp/0/quic-v1"),
		libp2p.Transport(libp2pquic.NewTransport),
		libp2p.DisableRelay(), libp2p.DisableMetrics(),
	)
	if err != nil {
		tb.Fatal(err)
	}
	d, err := dht.New(h, dht.Config{Realm: realmName, Logger: quiet()})
	if err != nil {
		tb.Fatal(err)
	}
	cfg := pubsub.DefaultConfig(realmName)
	cfg.Logger = quiet()
	// Room for the windowed publisher's window at the subscriber, as NATS's
	// client has (it buffers up to 524288 messages per subscription by
	// default); the package default, 1024, would drop there.
	cfg.SubscriptionBuffer = 2 * window
	ps, err := pubsub.New(h, d, event.NewBus(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return &maculaNode{h: h, d: d, ps: ps}
}

func (n *maculaNode) close() {
	n.ps.Close()
	n.d.Close()
	n.h.Close()
}

func setUpMacula(tb testing.TB, subs int) *system {
	pubNode := newMaculaNode(tb)
	nodes := []*maculaNode{pubNode}
	sys := &system{name: "macula", subs: subs, close: func() {
		for _, n := range nodes {
			n.close()
		}
	}}
	for i := 0; i < subs; i++ {
		n := newMaculaNode(tb)
		nodes = append(nodes, n)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := n.h.Connect(ctx, peer.AddrInfo{ID: pubNode.h.ID(), Addrs: pubNode.h.Addrs()})
		cancel()
		if err != nil {
			tb.Fatal(err)
		}
		r := &recorder{}
		sys.recs = append(sys.recs, r)
		if _, err := n.ps.Subscribe(pattern, func(m pubsub.Message) { r.record(m.Payload) }); err != nil {
			tb.Fatal(err)
		}
	}
	ctx := context.Background()
	sys.pub = func(p []byte) error { return pubNode.ps.Publish(ctx, topic, p) }
	sys.diag = func() string {
		var local, frames uint64
		for _, n := range nodes[1:] {
			st := n.ps.Stats()
			local += st.DroppedLocal
			frames += st.FramesReceived
		}
		st := pubNode.ps.Stats()
		return fmt.Sprintf("publisher sent %d dropped %d; subscribers received %d dropped %d; %s",
			st.Sent, st.DroppedSend, frames, local, quicStats(pubNode.h))
	}
	warmUp(tb, sys.recs, sys.pub)
	return sys
}

func setUpNATS(tb testing.TB, subs int) *system {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		tb.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		tb.Fatal("nats-server not ready")
	}
	var conns []*nats.Conn
	sys := &system{name: "nats", subs: subs, close: func() {
		for _, c := range conns {
			c.Close()
		}
		ns.Shutdown()
	}}
	for i := 0; i < subs; i++ {
		nc, err := nats.Connect(ns.ClientURL())
		if err != nil {
			tb.Fatal(err)
		}
		conns = append(conns, nc)
		r := &recorder{}
		sys.recs = append(sys.recs, r)
		if _, err := nc.Subscribe(pattern, func(m *nats.Msg) { r.record(m.Data) }); err != nil {
			tb.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			tb.Fatal(err)
		}
	}
	pc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		tb.Fatal(err)
	}
	conns = append(conns, pc)
	sys.pub = func(p []byte) error { return pc.Publish(topic, p) }
	sys.flush = func() { _ = pc.Flush() }
	warmUp(tb, sys.recs, sys.pub)
	return sys
}

func rounds() int {
	if n, err := strconv.Atoi(os.Getenv("PUBSUB_BENCH_ROUNDS")); err == nil && n > 0 {
		return n
	}
	return 3
}

// BenchmarkPubSub runs each system, subscriber count and mode in several
// interleaved rounds (b.N is not used: every run publishes for
// PUBSUB_BENCH_SECONDS) and prints a table of the medians. "flat out"
// publishes in a tight loop; "paced" keeps the publisher's send queues
// under half full by watching Stats().Queued (NATS needs no pacing: its
// publisher is paced by TCP).
func BenchmarkPubSub(b *testing.B) {
	// For profiling one case: PUBSUB_BENCH_ONLY=macula|nats,
	// PUBSUB_BENCH_SUBS=1|4, PUBSUB_BENCH_MODE=flat|windowed.
	only, onlySubs, onlyMode := os.Getenv("PUBSUB_BENCH_ONLY"), os.Getenv("PUBSUB_BENCH_SUBS"), os.Getenv("PUBSUB_BENCH_MODE")
	var results []result
	for round := 0; round < rounds(); round++ {
		for _, subs := range []int{1, 4} {
			if onlySubs != "" && onlySubs != strconv.Itoa(subs) {
				continue
			}
			for _, setUp := range []func(testing.TB, int) *system{setUpMacula, setUpNATS, setUpRaw} {
				runtime.GC()
				sys := setUp(b, subs)
				if only != "" && only != sys.name {
					sys.close()
					continue
				}
				if onlyMode != "windowed" {
					results = append(results, measure(b, sys, false))
				}
				if onlyMode != "flat" {
					results = append(results, measure(b, sys, true))
				}
				sys.close()
			}
		}
	}
	med := medians(results)
	printTable(os.Stdout, med, rounds())
	for _, r := range med {
		if r.system == "macula" && r.subs == 4 && r.mode == "windowed" {
			b.ReportMetric(r.deliverRate, "delivered/s")
		}
	}
}

// summary is the median of one case's rounds.
type summary struct {
	result
	minDeliver, maxDeliver float64
}

func median(xs []float64) float64 {
	slices.Sort(xs)
	if len(xs)%2 == 1 {
		return xs[len(xs)/2]
	}
	return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
}

// medians groups results by case, in first-seen order, and takes the
// median of each figure separately.
func medians(rs []result) []summary {
	type key struct {
		system, mode string
		subs         int
	}
	var order []key
	groups := map[key][]result{}
	for _, r := range rs {
		k := key{r.system, r.mode, r.subs}
		if groups[k] == nil {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	var out []summary
	for _, k := range order {
		g := groups[k]
		pick := func(f func(result) float64) float64 {
			xs := make([]float64, len(g))
			for i, r := range g {
				xs[i] = f(r)
			}
			return median(xs)
		}
		s := summary{result: result{system: k.system, mode: k.mode, subs: k.subs}}
		s.pubRate = pick(func(r result) float64 { return r.pubRate })
		s.deliverRate = pick(func(r result) float64 { return r.deliverRate })
		s.dropped = uint64(pick(func(r result) float64 { return float64(r.dropped) / r.pubDur.Seconds() }))
		s.p50 = time.Duration(pick(func(r result) float64 { return float64(r.p50) }))
		s.p99 = time.Duration(pick(func(r result) float64 { return float64(r.p99) }))
		s.minDeliver, s.maxDeliver = g[0].deliverRate, g[0].deliverRate
		for _, r := range g {
			s.minDeliver = min(s.minDeliver, r.deliverRate)
			s.maxDeliver = max(s.maxDeliver, r.deliverRate)
		}
		out = append(out, s)
	}
	return out
}

func printTable(w io.Writer, rs []summary, rounds int) {
	fmt.Fprintf(w, "\npubsub on loopback, %d-byte messages, pattern %s, GOMAXPROCS=%d, median of %d rounds of %v\n\n",
		payloadSize, pattern, runtime.GOMAXPROCS(0), rounds, runFor())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "system\tpublisher\tsubscribers\tpublished msg/s\tdelivered msg/s\t(min-max)\tdropped msg/s\tp50 latency\tp99 latency\t")
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%.0f\t%.0f-%.0f\t%d\t%v\t%v\t\n", r.system, r.mode, r.subs, r.pubRate, r.deliverRate,
			r.minDeliver, r.maxDeliver, r.dropped, r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond))
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, subs := range []int{1, 4} {
		var n *summary
		for i := range rs {
			if rs[i].subs == subs && rs[i].system == "nats" {
				n = &rs[i]
			}
		}
		for i := range rs {
			if m := &rs[i]; n != nil && m.subs == subs && m.system == "macula" {
				fmt.Fprintf(w, "%d subscriber(s), macula %s / nats: delivered %.2fx, published %.2fx\n",
					subs, m.mode, m.deliverRate/n.deliverRate, m.pubRate/n.pubRate)
			}
		}
	}
}
