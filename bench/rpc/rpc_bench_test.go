// Package rpcbench compares Macula's RPC with NATS request/reply (issue 4,
// "Benchmark"), in one process and one run:
//
//	cd bench && go test -run '^$' -bench 'RPC$' -benchtime 1x ./rpc/
//
// Cases, each with a 128-byte payload echoed back:
//
//   - raw-quic: frames on one long-lived libp2p QUIC stream between the same
//     two hosts, echoed by the callee: the transport's ceiling. Its caller
//     side has one writer goroutine that flushes when its queue is empty.
//   - raw-yield: the same, but the writer yields once (runtime.Gosched)
//     before flushing, so that callers about to send share the write and
//     its QUIC packet: the ceiling with good batching.
//   - nats: nc.Request through an embedded nats-server on 127.0.0.1 (one
//     responder connection, one requester connection shared by the callers).
//   - macula: node B calls a procedure advertised on node A (rpc.Call).
//
// with 1 caller and 64 concurrent callers. Every case warms up for -warmup
// (0.5s) then measures for -dur (3s), or until -max calls, whichever comes
// first. It reports req/s, p50 and p99 latency and CPU time per call for
// each case (ReportMetric) and prints a table (also p99.9, max, heap
// allocations, packets and QUIC packets lost per call) with the ratios
// macula/NATS and macula/raw. It runs every case once whatever b.N is;
// -count N repeats the whole set. Options, after the package:
//
//	-dur 3s -warmup 500ms -max 5000000 -callers 1,64
//
// Both ends of every case run in this process, so CPU time per call is the
// whole cost of a call; it varies much less than req/s when other programs
// load the machine (the load average is printed with the table).
//
// A CPU profile of one case:
//
//	cd bench && go test -run '^$' -bench 'RPC$/macula-64$' -benchtime 1x -cpuprofile cpu.out ./rpc/
//	go tool pprof -top -nodecount 40 rpc.test cpu.out
package rpcbench

import (
	"bufio"
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/quic-go/quic-go"

	"github.com/macula-io/macula/node"
	"github.com/macula-io/macula/rpc"
)

var (
	flagDur     = flag.Duration("dur", 3*time.Second, "measured duration of each case")
	flagWarmup  = flag.Duration("warmup", 500*time.Millisecond, "warm-up before each case")
	flagMax     = flag.Int("max", 5_000_000, "maximum measured calls per case")
	flagCallers = flag.String("callers", "1,64", "comma-separated concurrent caller counts")
)

const (
	payloadSize = 128
	benchRealm  = "io.acme.bench"
	procedure   = "io.acme.bench.echo"
	natsSubject = "bench.echo"
	rawProto    = "/macula-bench/raw-echo/1.0.0"
	callTimeout = 5 * time.Second
)

// result is one case's figures.
type result struct {
	name    string
	kind    string // raw-quic, raw-yield, nats, macula
	callers int
	calls   int
	errs    int64
	elapsed time.Duration
	p50     time.Duration
	p99     time.Duration
	p999    time.Duration
	max     time.Duration
	// Packets per call during the whole case (warm-up included), both
	// directions: QUIC packets of the connection between the two hosts
	// (exact), or loopback TCP segments for NATS (from /proc/net/snmp, so
	// other processes' TCP traffic on the machine adds noise).
	pkts float64
	// lost counts QUIC packets declared lost during the case (-1: n/a).
	lost int64
	// cpu is the process's CPU time (user + system) per call during the
	// whole case, warm-up included: both ends of the case run in this
	// process, so it is the cost of a call, less sensitive than req/s to
	// other load on the machine.
	cpu time.Duration
	// allocs is the process's heap allocations per call (both ends, the
	// transport and, for NATS, the server), warm-up included.
	allocs float64
}

func (r result) rps() float64 { return float64(r.calls) / r.elapsed.Seconds() }

// callFunc makes one call; caller is the caller's index (0..callers-1).
type callFunc func(caller int, payload []byte) error

// counters reads packet counters of a case: packets so far (both
// directions), and packets lost so far (-1 if unknown).
type counters func() (pkts float64, lost int64)

// measure runs callers goroutines that call fn back to back: warm-up, then
// the measured window. Only calls started inside the window count. pkts, if
// not nil, reads the case's packet counters.
func measure(kind string, callers int, fn callFunc, pkts counters) result {
	warm, dur := *flagWarmup, *flagDur
	perCaller := *flagMax / callers
	if perCaller < 1 {
		perCaller = 1
	}
	if pkts == nil {
		pkts = func() (float64, int64) { return readSNMP().tcpIn, -1 }
	}
	before, lostBefore := pkts()
	cpuBefore := cpuTime()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	mallocs := ms.Mallocs
	var total atomic.Int64 // calls, warm-up included
	start := time.Now()
	mStart := start.Add(warm)
	end := mStart.Add(dur)
	lat := make([][]time.Duration, callers)
	var errs atomic.Int64
	var done atomic.Bool // set when one caller hit its count bound
	var stopAt atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < callers; i++ {
		lat[i] = make([]time.Duration, 0, min(perCaller, 1<<16))
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			payload := make([]byte, payloadSize)
			for j := range payload {
				payload[j] = byte(i + j)
			}
			for {
				t0 := time.Now()
				if !t0.Before(end) || done.Load() {
					return
				}
				err := fn(i, payload)
				d := time.Since(t0)
				total.Add(1)
				if err != nil {
					if errs.Add(1) > 1000 {
						done.Store(true)
					}
					continue
				}
				if !t0.Before(mStart) {
					lat[i] = append(lat[i], d)
					if len(lat[i]) >= perCaller && done.CompareAndSwap(false, true) {
						stopAt.Store(int64(time.Since(mStart)))
					}
				}
			}
		}(i)
	}
	wg.Wait()
	after, lostAfter := pkts()
	cpuUsed := cpuTime() - cpuBefore
	runtime.ReadMemStats(&ms)
	mallocs = ms.Mallocs - mallocs
	elapsed := dur
	if s := stopAt.Load(); s > 0 {
		elapsed = time.Duration(s)
	}
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	q := func(p float64) time.Duration {
		if len(all) == 0 {
			return 0
		}
		return all[min(len(all)-1, int(p*float64(len(all))))]
	}
	lost := lostAfter - lostBefore
	if lostBefore < 0 {
		lost = -1
	}
	return result{
		name: fmt.Sprintf("%s-%d", kind, callers), kind: kind, callers: callers,
		calls: len(all), errs: errs.Load(), elapsed: elapsed,
		p50: q(0.50), p99: q(0.99), p999: q(0.999), max: q(1),
		pkts:   (after - before) / float64(max(total.Load(), 1)),
		lost:   lost,
		cpu:    cpuUsed / time.Duration(max(total.Load(), 1)),
		allocs: float64(mallocs) / float64(max(total.Load(), 1)),
	}
}

// cpuTime returns the CPU time (user + system) used by this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// snmp holds the TCP counters of /proc/net/snmp.
type snmp struct{ tcpIn, tcpOut float64 }

func readSNMP() snmp {
	var s snmp
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return s
	}
	var names []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "Tcp:" {
			continue
		}
		if _, err := strconv.ParseFloat(f[1], 64); err != nil {
			names = f
			continue
		}
		for i := 1; i < len(f) && i < len(names); i++ {
			v, _ := strconv.ParseFloat(f[i], 64)
			switch f[0] + names[i] {
			case "Tcp:InSegs":
				s.tcpIn = v
			case "Tcp:OutSegs":
				s.tcpOut = v
			}
		}
	}
	return s
}

// ---- Macula: two nodes on loopback --------------------------------------

type maculaEnv struct {
	a, b *node.Node
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startMacula starts node a (the callee, advertising procedure) and node b
// (the caller). mods, if any, adjust each node's configuration (name "a" or
// "b") before it starts, e.g. to make the realm secure.
func startMacula(b *testing.B, mods ...func(name string, c *node.Config)) *maculaEnv {
	ctx := context.Background()
	cfg := func(name string, boot []string) node.Config {
		c := node.DefaultConfig(benchRealm, name)
		c.ListenAddrs = []string{"/ip4/127.0.0.1/udp/0/quic-v1"}
		c.Bootstrap = boot
		c.Logger = quiet()
		for _, mod := range mods {
			mod(name, &c)
		}
		return c
	}
	a, err := node.New(cfg("a", nil))
	if err != nil {
		b.Fatal(err)
	}
	var boot []string
	for _, m := range a.Addrs() {
		boot = append(boot, m.String())
	}
	bn, err := node.New(cfg("b", boot))
	if err != nil {
		a.Close()
		b.Fatal(err)
	}
	env := &maculaEnv{a: a, b: bn}
	deadline := time.Now().Add(20 * time.Second)
	for len(a.Peers()) != 1 || len(bn.Peers()) != 1 {
		if time.Now().After(deadline) {
			env.close()
			b.Fatal("nodes a and b did not see each other")
		}
		time.Sleep(20 * time.Millisecond)
	}
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err = a.RPC().Advertise(actx, procedure, func(_ context.Context, req *rpc.Request) ([]byte, error) {
		return req.Payload, nil
	})
	if err != nil {
		env.close()
		b.Fatal(err)
	}
	// Wait until b finds a's record and a call goes through.
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := bn.RPC().Call(cctx, procedure, []byte("ping"))
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			env.close()
			b.Fatalf("b cannot call %s: %v", procedure, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The raw baseline's echo handler, on the same host as the procedure.
	a.Host().SetStreamHandler(rawProto, rawEcho)
	return env
}

// quicPackets counts the QUIC packets sent and received by b on its
// connections to a, and those lost (as either end saw them).
func (e *maculaEnv) quicPackets() (float64, int64) {
	var n float64
	var lost int64
	for _, c := range e.b.Host().Network().ConnsToPeer(e.a.ID()) {
		var qc *quic.Conn
		if c.As(&qc) {
			st := qc.ConnectionStats()
			n += float64(st.PacketsSent + st.PacketsReceived)
			lost += int64(st.PacketsLost)
		}
	}
	for _, c := range e.a.Host().Network().ConnsToPeer(e.b.ID()) {
		var qc *quic.Conn
		if c.As(&qc) {
			lost += int64(qc.ConnectionStats().PacketsLost)
		}
	}
	return n, lost
}

func (e *maculaEnv) close() {
	e.b.Close()
	e.a.Close()
}

func (e *maculaEnv) call(_ int, payload []byte) error {
	reply, err := e.b.RPC().Call(context.Background(), procedure, payload, rpc.WithTimeout(callTimeout))
	if err == nil && len(reply) != len(payload) {
		return fmt.Errorf("reply of %d bytes", len(reply))
	}
	return err
}

// ---- Raw baseline: frames on one libp2p QUIC stream ----------------------
//
// Frame: length uint32 | caller uint32 | payload. The callee echoes every
// frame, flushing when it has nothing more buffered to read. The caller side
// has one writer goroutine that drains a queue and flushes when it is empty
// (as rpc does), yielding once before the flush if yield is set, and one
// reader that hands each reply to its caller.

func rawEcho(s network.Stream) {
	defer s.Close()
	br := bufio.NewReaderSize(s, 64<<10)
	bw := bufio.NewWriterSize(s, 64<<10)
	var hdr [8]byte
	buf := make([]byte, 64<<10)
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(hdr[:4])
		if n > uint32(len(buf)) {
			_ = s.Reset()
			return
		}
		if _, err := io.ReadFull(br, buf[:n]); err != nil {
			return
		}
		bw.Write(hdr[:])
		bw.Write(buf[:n])
		if br.Buffered() == 0 {
			if err := bw.Flush(); err != nil {
				return
			}
		}
	}
}

type rawEnv struct {
	s       network.Stream
	out     chan []byte
	replies []chan []byte // per caller, capacity 1
	bufs    [][]byte      // per caller request frame
	wg      sync.WaitGroup
}

func startRaw(b *testing.B, m *maculaEnv, callers int, yield bool) *rawEnv {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := m.b.Host().NewStream(ctx, m.a.ID(), rawProto)
	if err != nil {
		b.Fatal(err)
	}
	r := &rawEnv{s: s, out: make(chan []byte, callers+16)}
	for i := 0; i < callers; i++ {
		r.replies = append(r.replies, make(chan []byte, 1))
		r.bufs = append(r.bufs, make([]byte, 8+payloadSize))
	}
	r.wg.Add(2)
	go func() { // writer
		defer r.wg.Done()
		bw := bufio.NewWriterSize(s, 64<<10)
		for f := range r.out {
			bw.Write(f)
			for len(r.out) > 0 {
				bw.Write(<-r.out)
			}
			if yield {
				runtime.Gosched()
				for len(r.out) > 0 {
					bw.Write(<-r.out)
				}
			}
			if err := bw.Flush(); err != nil {
				return
			}
		}
	}()
	go func() { // reader
		defer r.wg.Done()
		br := bufio.NewReaderSize(s, 64<<10)
		var hdr [8]byte
		bufs := make([][]byte, callers)
		for i := range bufs {
			bufs[i] = make([]byte, 64<<10)
		}
		for {
			if _, err := io.ReadFull(br, hdr[:]); err != nil {
				for _, ch := range r.replies {
					close(ch)
				}
				return
			}
			n, c := binary.BigEndian.Uint32(hdr[:4]), binary.BigEndian.Uint32(hdr[4:])
			if c >= uint32(callers) || n > 64<<10 {
				_ = s.Reset()
				continue
			}
			if _, err := io.ReadFull(br, bufs[c][:n]); err != nil {
				continue
			}
			r.replies[c] <- bufs[c][:n]
		}
	}()
	return r
}

// call sends one frame and waits for its echo. Each caller has at most one
// call in flight, so its request and reply buffers are its own.
func (r *rawEnv) call(i int, payload []byte) error {
	f := r.bufs[i][:8+len(payload)]
	binary.BigEndian.PutUint32(f[:4], uint32(len(payload)))
	binary.BigEndian.PutUint32(f[4:8], uint32(i))
	copy(f[8:], payload)
	r.out <- f
	reply, ok := <-r.replies[i]
	if !ok {
		return io.ErrClosedPipe
	}
	if len(reply) != len(payload) {
		return fmt.Errorf("reply of %d bytes", len(reply))
	}
	return nil
}

func (r *rawEnv) close() {
	close(r.out)
	_ = r.s.CloseWrite()
	time.AfterFunc(2*time.Second, func() { _ = r.s.Reset() })
	r.wg.Wait()
	_ = r.s.Close()
}

// ---- NATS: embedded server, request/reply --------------------------------

type natsEnv struct {
	srv       *natsserver.Server
	responder *nats.Conn
	requester *nats.Conn
}

func startNATS(b *testing.B) *natsEnv {
	srv, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		b.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		b.Fatal("nats-server not ready")
	}
	e := &natsEnv{srv: srv}
	if e.responder, err = nats.Connect(srv.ClientURL()); err != nil {
		e.close()
		b.Fatal(err)
	}
	if _, err = e.responder.Subscribe(natsSubject, func(m *nats.Msg) { _ = m.Respond(m.Data) }); err != nil {
		e.close()
		b.Fatal(err)
	}
	if err = e.responder.Flush(); err != nil {
		e.close()
		b.Fatal(err)
	}
	if e.requester, err = nats.Connect(srv.ClientURL()); err != nil {
		e.close()
		b.Fatal(err)
	}
	return e
}

func (e *natsEnv) call(_ int, payload []byte) error {
	m, err := e.requester.Request(natsSubject, payload, callTimeout)
	if err == nil && len(m.Data) != len(payload) {
		return fmt.Errorf("reply of %d bytes", len(m.Data))
	}
	return err
}

func (e *natsEnv) close() {
	if e.requester != nil {
		e.requester.Close()
	}
	if e.responder != nil {
		e.responder.Close()
	}
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

// ---- The benchmark ----------------------------------------------------------

func callerCounts(b *testing.B) []int {
	var out []int
	for _, f := range strings.Split(*flagCallers, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			b.Fatalf("-callers %q: want a list of positive integers", *flagCallers)
		}
		out = append(out, n)
	}
	return out
}

func BenchmarkRPC(b *testing.B) {
	counts := callerCounts(b)
	m := startMacula(b)
	defer m.close()
	ns := startNATS(b)
	defer ns.close()

	var results []result
	run := func(kind string, callers int, pkts counters, setup func() (callFunc, func())) {
		b.Run(fmt.Sprintf("%s-%d", kind, callers), func(b *testing.B) {
			fn, done := setup()
			defer done()
			results = append(results, measureOnce(b, kind, callers, fn, pkts))
		})
	}
	for _, c := range counts {
		run("raw-quic", c, m.quicPackets, func() (callFunc, func()) {
			r := startRaw(b, m, c, false)
			return r.call, r.close
		})
		run("raw-yield", c, m.quicPackets, func() (callFunc, func()) {
			r := startRaw(b, m, c, true)
			return r.call, r.close
		})
		run("nats", c, nil, func() (callFunc, func()) { return ns.call, func() {} })
		run("macula", c, m.quicPackets, func() (callFunc, func()) { return m.call, func() {} })
	}
	printTable(os.Stdout, results)
}

func printTable(w io.Writer, rs []result) {
	if len(rs) == 0 {
		return
	}
	load := ""
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	fmt.Fprintf(w, "\nRPC echo, %d-byte payload, %v per case after %v warm-up, GOMAXPROCS=%d, load average %s\n",
		payloadSize, *flagDur, *flagWarmup, maxProcs(), load)
	fmt.Fprintf(w, "%-10s %7s %9s %9s %8s %8s %8s %9s %8s %7s %9s %6s %6s\n", "case", "callers", "calls", "req/s", "p50", "p99", "p99.9", "max", "cpu/call", "allocs", "pkts/call", "lost", "errors")
	for _, r := range rs {
		lost := "-"
		if r.lost >= 0 {
			lost = strconv.FormatInt(r.lost, 10)
		}
		fmt.Fprintf(w, "%-10s %7d %9d %9.0f %8s %8s %8s %9s %8s %7.1f %9.2f %6s %6d\n", r.kind, r.callers, r.calls, r.rps(), us(r.p50), us(r.p99), us(r.p999), us(r.max), us1(r.cpu), r.allocs, r.pkts, lost, r.errs)
	}
	find := func(kind string, c int) (result, bool) {
		for _, r := range rs {
			if r.kind == kind && r.callers == c {
				return r, true
			}
		}
		return result{}, false
	}
	header := false
	for _, r := range rs {
		if r.kind != "macula" {
			continue
		}
		for _, base := range []string{"nats", "raw-quic", "raw-yield"} {
			o, ok := find(base, r.callers)
			if !ok || o.calls == 0 || r.calls == 0 {
				continue
			}
			if !header {
				fmt.Fprintf(w, "%-22s %8s %14s %10s %10s\n", "ratio", "callers", "throughput", "p50", "p99")
				header = true
			}
			fmt.Fprintf(w, "%-22s %8d %13.2fx %9.2fx %9.2fx\n", "macula/"+base, r.callers,
				r.rps()/o.rps(), float64(r.p50)/float64(o.p50), float64(r.p99)/float64(o.p99))
		}
	}
	fmt.Fprintln(w, "(throughput ratio > 1 and p50 ratio < 1 mean macula is better; cpu/call, allocs: CPU time and heap allocations of the process (both ends) per call; pkts/call: QUIC packets of the connection, or loopback TCP segments for NATS, per call, both directions; lost: QUIC packets declared lost)")
}

func us(d time.Duration) string { return fmt.Sprintf("%.0fus", float64(d.Nanoseconds())/1e3) }

func us1(d time.Duration) string { return fmt.Sprintf("%.1fus", float64(d.Nanoseconds())/1e3) }

func maxProcs() int { return runtime.GOMAXPROCS(0) }

// measureOnce measures once, whatever b.N, and reports the figures as the
// benchmark's metrics.
func measureOnce(b *testing.B, kind string, callers int, fn callFunc, pkts counters) result {
	var r result
	for i := 0; i < b.N && i < 1; i++ {
		r = measure(kind, callers, fn, pkts)
	}
	if r.errs > 0 {
		b.Errorf("%s: %d calls failed", r.name, r.errs)
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(r.rps(), "req/s")
	b.ReportMetric(float64(r.p50.Nanoseconds())/1e3, "p50-us")
	b.ReportMetric(float64(r.p99.Nanoseconds())/1e3, "p99-us")
	b.ReportMetric(float64(r.cpu.Nanoseconds())/1e3, "cpu-us/call")
	return r
}
