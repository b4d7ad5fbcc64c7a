// BenchmarkPubSubSlowSubscriber measures the slow-subscriber policy of
// issue 5 ("the publisher and the other subscribers are not slowed below
// half their rate"). Run it with
//
//	cd bench && go test -run '^$' -bench PubSubSlow -benchtime 1x ./pubsub/
//
// In one run, one after the other, each on fresh nodes: "baseline", one
// publisher node and 3 healthy subscriber nodes of io.acme.orders.*; "slow",
// the same plus a 4th subscriber node whose handler sleeps 1 ms per message;
// "stuck", the same plus a 4th whose handler blocks from its first message
// until the run ends; and, as a control, "fast", a 4th with a normal
// handler that is left out of the window like the others (so that the cost
// of a 4th receiving node on a shared host can be told apart from the cost
// of its slowness). Each case publishes 128-byte messages for
// PUBSUB_BENCH_SECONDS (default 3), windowed (the window applies to the
// healthy subscribers only: the publisher never waits for the 4th) and flat
// out; PUBSUB_BENCH_MODE=flat|windowed runs one mode only. Nodes are
// configured as in BenchmarkPubSub (newMaculaNode), including the 4th.
package pubsubbench

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/macula-io/macula/pubsub"
)

// slowResult is one case's figures.
type slowResult struct {
	kind, mode    string
	published     uint64
	pubRate       float64
	healthyRate   float64 // min over the healthy subscribers
	healthyLost   uint64  // max over the healthy subscribers of published - delivered
	slowDelivered uint64  // handler calls of the 4th subscriber during the run
	slowRate      float64
	slowDropped   uint64 // the 4th's Subscription.Dropped
	slowLocal     uint64 // Stats.DroppedLocal of the 4th's node
	sendDropped   uint64 // Stats.DroppedSend of the publisher node
	slowFrames    uint64 // Stats.FramesReceived of the 4th's node
}

// slowSetup is one case's nodes.
type slowSetup struct {
	pub      *maculaNode
	nodes    []*maculaNode // subscriber nodes; the 4th, if any, last
	healthy  []*recorder
	slowRec  *recorder
	slowSub  *pubsub.Subscription
	slowNode *maculaNode
	release  chan struct{} // closed to free a stuck handler
	publish  func([]byte) error
}

func (s *slowSetup) close() {
	close(s.release)
	for _, n := range append(s.nodes, s.pub) {
		n.close()
	}
}

// setUpSlow builds the publisher, 3 healthy subscriber nodes and, for kind
// "fast", "slow" or "stuck", a 4th subscriber node with that handler.
func setUpSlow(tb testing.TB, kind string) *slowSetup {
	s := &slowSetup{pub: newMaculaNode(tb), release: make(chan struct{})}
	connect := func() *maculaNode {
		n := newMaculaNode(tb)
		s.nodes = append(s.nodes, n)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := n.h.Connect(ctx, peer.AddrInfo{ID: s.pub.h.ID(), Addrs: s.pub.h.Addrs()}); err != nil {
			tb.Fatal(err)
		}
		return n
	}
	for i := 0; i < 3; i++ {
		n := connect()
		r := &recorder{}
		s.healthy = append(s.healthy, r)
		if _, err := n.ps.Subscribe(pattern, func(m pubsub.Message) { r.record(m.Payload) }); err != nil {
			tb.Fatal(err)
		}
	}
	all := s.healthy
	if kind != "baseline" {
		n := connect()
		r := &recorder{}
		s.slowRec, s.slowNode = r, n
		release := s.release
		var h func(pubsub.Message)
		switch kind {
		case "fast":
			h = func(m pubsub.Message) { r.record(m.Payload) }
		case "slow":
			h = func(m pubsub.Message) {
				r.record(m.Payload)
				time.Sleep(time.Millisecond)
			}
		case "stuck":
			h = func(m pubsub.Message) {
				r.record(m.Payload)
				if r.on.Load() { // past the warm-up: block until the case ends
					<-release
				}
			}
		}
		sub, err := n.ps.Subscribe(pattern, h)
		if err != nil {
			tb.Fatal(err)
		}
		s.slowSub = sub
		all = append(all[:len(all):len(all)], r)
	}
	ctx := context.Background()
	s.publish = func(p []byte) error { return s.pub.ps.Publish(ctx, topic, p) }
	warmUp(tb, all, s.publish)
	if s.slowRec != nil {
		// Let the slow handler finish its warm-up backlog.
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) && s.slowNode.ps.Stats().Delivered < s.slowNode.ps.Stats().FramesReceived {
			time.Sleep(10 * time.Millisecond)
		}
	}
	return s
}

func measureSlow(tb testing.TB, kind string, windowed bool) slowResult {
	runtime.GC()
	s := setUpSlow(tb, kind)
	defer s.close()

	base := make([]uint64, len(s.healthy))
	for i, r := range s.healthy {
		base[i] = r.count.Load()
		r.last.Store(0)
	}
	pubBase := s.pub.ps.Stats()
	var slowBase uint64
	var slowStats pubsub.Stats
	var slowDroppedBase uint64
	if s.slowRec != nil {
		slowBase = s.slowRec.count.Load()
		slowStats = s.slowNode.ps.Stats()
		slowDroppedBase = s.slowSub.Dropped()
	}

	start := time.Now()
	n, pubDur, err := publishLoop(runFor(), s.publish, s.healthy, base, windowed)
	if err != nil {
		tb.Fatal(err)
	}
	waitSettled(s.healthy, base, n*uint64(len(s.healthy)))

	mode := "flat out"
	if windowed {
		mode = "windowed"
	}
	res := slowResult{kind: kind, mode: mode, published: n, pubRate: float64(n) / pubDur.Seconds()}
	for i, r := range s.healthy {
		got := r.count.Load() - base[i]
		d := time.Unix(0, r.last.Load()).Sub(start)
		rate := float64(got) / d.Seconds()
		if i == 0 || rate < res.healthyRate {
			res.healthyRate = rate
		}
		if n > got {
			res.healthyLost = max(res.healthyLost, n-got)
		}
	}
	res.sendDropped = s.pub.ps.Stats().DroppedSend - pubBase.DroppedSend
	if s.slowRec != nil {
		// Figures when the healthy ones have settled; frames still in the
		// slow node's queue are neither delivered nor dropped yet.
		res.slowDelivered = s.slowRec.count.Load() - slowBase
		res.slowRate = float64(res.slowDelivered) / pubDur.Seconds()
		st := s.slowNode.ps.Stats()
		res.slowLocal = st.DroppedLocal - slowStats.DroppedLocal
		res.slowFrames = st.FramesReceived - slowStats.FramesReceived
		res.slowDropped = s.slowSub.Dropped() - slowDroppedBase
	}
	return res
}

// BenchmarkPubSubSlowSubscriber: see the top of this file. b.N is not used.
func BenchmarkPubSubSlowSubscriber(b *testing.B) {
	modeEnv := os.Getenv("PUBSUB_BENCH_MODE")
	var rs []slowResult
	for _, windowed := range []bool{true, false} {
		if (modeEnv == "flat" && windowed) || (modeEnv == "windowed" && !windowed) {
			continue
		}
		for _, kind := range []string{"baseline", "fast", "slow", "stuck"} {
			rs = append(rs, measureSlow(b, kind, windowed))
		}
	}
	printSlowTable(os.Stdout, rs)
	for _, r := range rs {
		if r.kind == "stuck" && r.mode == "windowed" {
			b.ReportMetric(r.healthyRate, "healthy-delivered/s")
		}
	}
}

func printSlowTable(w io.Writer, rs []slowResult) {
	fmt.Fprintf(w, "\nslow subscriber on loopback: 1 publisher, 3 healthy subscribers + a 4th: fast (control), slow (1 ms/msg) or stuck, "+
		"%d-byte messages, pattern %s, GOMAXPROCS=%d, %v per case\n\n", payloadSize, pattern, runtime.GOMAXPROCS(0), runFor())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "case\tpublisher\tpublished\tpublished msg/s\thealthy delivered msg/s (min)\thealthy lost (max)\t"+
		"4th delivered\t4th msg/s\t4th frames recv\t4th DroppedLocal\t4th sub.Dropped\t4th still queued\tpub DroppedSend\t")
	for _, r := range rs {
		if r.kind == "baseline" {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%.0f\t%d\t-\t-\t-\t-\t-\t-\t%d\t\n", r.kind, r.mode, r.published, r.pubRate,
				r.healthyRate, r.healthyLost, r.sendDropped)
			continue
		}
		queued := int64(r.slowFrames) - int64(r.slowDelivered) - int64(r.slowLocal)
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%.0f\t%d\t%d\t%.0f\t%d\t%d\t%d\t%d\t%d\t\n", r.kind, r.mode, r.published, r.pubRate,
			r.healthyRate, r.healthyLost, r.slowDelivered, r.slowRate, r.slowFrames, r.slowLocal, r.slowDropped, queued, r.sendDropped)
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, mode := range []string{"windowed", "flat out"} {
		var base *slowResult
		for i := range rs {
			if rs[i].kind == "baseline" && rs[i].mode == mode {
				base = &rs[i]
			}
		}
		if base == nil {
			continue
		}
		for _, r := range rs {
			if r.mode != mode || r.kind == "baseline" {
				continue
			}
			pr, hr := r.pubRate/base.pubRate, r.healthyRate/base.healthyRate
			verdict := "ok (both >= 0.5)"
			if pr < 0.5 || hr < 0.5 {
				verdict = "BELOW 0.5"
			}
			fmt.Fprintf(w, "%s, %s / baseline: published %.2fx, healthy delivered %.2fx: %s\n", mode, r.kind, pr, hr, verdict)
		}
	}
	fmt.Fprintln(w, "\n4th still queued = frames received - delivered - DroppedLocal, when the healthy subscribers had settled.")
}
