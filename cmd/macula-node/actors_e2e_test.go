package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/macula-io/macula/actors"
	"github.com/macula-io/macula/api"
	"github.com/macula-io/macula/internal/testnet"
)

// startActorNode starts macula-node run serving caps with the demo actor
// kind, as a user would try actors.
func startActorNode(t *testing.T, realmName, name, caps string, bootstrap ...string) *runNode {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	args := []string{"run", "--realm", realmName, "--name", name, "--data-dir", dir,
		"--listen", "/ip4/127.0.0.1/udp/0/quic-v1", "--api", "127.0.0.1:0", "--http3", "off",
		"--capabilities", caps, "--demo-actors"}
	for _, b := range bootstrap {
		args = append(args, "--bootstrap", b)
	}
	n := &runNode{proc: startProc(t, name, nil, args...), dir: dir}
	n.waitReady(t)
	return n
}

// counterReply is the demo counter's answer.
type counterReply struct {
	ID    string `json:"id"`
	Count int    `json:"count"`
}

func actorCall(ctx context.Context, c *api.Client, capability, id string, timeout time.Duration) (api.ActorRef, int, error) {
	ref, reply, err := c.ActorCall(ctx, capability, actors.CounterKind, id, nil, api.ActorOptions{Timeout: timeout})
	if err != nil {
		return ref, 0, err
	}
	var r counterReply
	if err := json.Unmarshal(reply, &r); err != nil {
		return ref, 0, fmt.Errorf("reply %q: %v", reply, err)
	}
	return ref, r.Count, nil
}

// waitRing waits until every node's ring shows, for each capability, the
// nodes given (by peer ID) with one digest on all of them.
func waitRing(t *testing.T, nodes []*runNode, want map[string][]string) {
	t.Helper()
	for k := range want {
		slices.Sort(want[k])
	}
	testnet.Eventually(t, 30*time.Second, func() error {
		digests := map[string]string{}
		for _, n := range nodes {
			c := api.NewClient(n.st.API)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			r, err := c.Ring(ctx, false)
			cancel()
			c.Close()
			if err != nil {
				return fmt.Errorf("%s: ring: %v", n.name, err)
			}
			got := map[string][]string{}
			for _, cr := range r.Capabilities {
				for _, x := range cr.Nodes {
					got[cr.Capability] = append(got[cr.Capability], x.ID)
				}
				if d, ok := digests[cr.Capability]; ok && d != cr.Digest {
					return fmt.Errorf("%s: %s digest %s, another node has %s", n.name, cr.Capability, cr.Digest, d)
				}
				digests[cr.Capability] = cr.Digest
			}
			if len(got) != len(want) {
				return fmt.Errorf("%s sees capabilities %v, want %v", n.name, got, want)
			}
			for capName, ids := range want {
				if !slices.Equal(got[capName], ids) {
					return fmt.Errorf("%s: %s served by %v, want %v", n.name, capName, got[capName], ids)
				}
			}
		}
		return nil
	})
}

// activationLog reads a node's activation log as the checker takes it.
func activationLog(t *testing.T, n *runNode) []actors.Activation {
	t.Helper()
	c := api.NewClient(n.st.API)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := c.ActivationLog(ctx)
	if err != nil {
		t.Fatalf("%s: activation log: %v", n.name, err)
	}
	if l.Truncated {
		t.Fatalf("%s: activation log truncated", n.name)
	}
	out := make([]actors.Activation, 0, len(l.Records))
	for _, r := range l.Records {
		id, err := peer.Decode(r.Node)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, actors.Activation{Capability: r.Capability, Kind: r.Kind, ID: r.ID, Node: id,
			Incarnation: r.Incarnation, Time: r.Time, Started: r.Started, Reason: r.Reason})
	}
	return out
}

// endOpen gives the incarnations of log that have no stop record a stop at
// end: the node is gone (killed, or stopped after its log was read).
func endOpen(log []actors.Activation, end time.Time) []actors.Activation {
	type key struct {
		id  string
		inc uint64
	}
	stopped := map[key]bool{}
	for _, r := range log {
		if !r.Started {
			stopped[key{r.Capability + "/" + r.ID, r.Incarnation}] = true
		}
	}
	out := slices.Clone(log)
	for _, r := range log {
		if r.Started && !stopped[key{r.Capability + "/" + r.ID, r.Incarnation}] {
			s := r
			s.Started, s.Time, s.Reason = false, end, "gone"
			out = append(out, s)
		}
	}
	return out
}

// TestActorsE2E runs the scenario across real macula-node processes:
// A serves game, B chat, C game, chat and payment; each actor lives on a
// node of its capability, always the same; a fourth node joins (shards move,
// the counters keep their counts); C stops cleanly (its actors move with
// their counts); a node is killed with kill -9 under load (calls fail with
// typed errors within their deadline, then succeed on the new owner). The
// single-activation checker runs over every node's activation log.
func TestActorsE2E(t *testing.T) {
	t.Parallel()
	const realmName = "io.e2e.actors"
	a := startActorNode(t, realmName, "a", "game")
	boot := a.st.Addrs[0]
	b := startActorNode(t, realmName, "b", "chat", boot)
	c := startActorNode(t, realmName, "c", "game,chat,payment", boot)
	waitRing(t, []*runNode{a, b, c}, map[string][]string{
		"game": {a.st.PeerID, c.st.PeerID}, "chat": {b.st.PeerID, c.st.PeerID}, "payment": {c.st.PeerID},
	})
	clients := map[*runNode]*api.Client{}
	client := func(n *runNode) *api.Client {
		if clients[n] == nil {
			clients[n] = api.NewClient(n.st.API)
			t.Cleanup(func() { clients[n].Close() })
		}
		return clients[n]
	}
	ctx := context.Background()
	ids := map[string][]string{}
	counts := map[string]int{} // capability/id -> count
	where := map[string]string{}
	allowed := map[string][]string{"game": {a.st.PeerID, c.st.PeerID}, "chat": {b.st.PeerID, c.st.PeerID}, "payment": {c.st.PeerID}}
	for _, capName := range []string{"game", "chat", "payment"} {
		for i := range 24 {
			ids[capName] = append(ids[capName], fmt.Sprintf("%s_%d", capName, i))
		}
	}
	// Each id through every node: always the same node, one of its
	// capability's, and one count.
	for capName, list := range ids {
		for _, id := range list {
			key := capName + "/" + id
			for _, n := range []*runNode{a, b, c} {
				ref, n2, err := actorCall(ctx, client(n), capName, id, 10*time.Second)
				if err != nil {
					t.Fatalf("%s through %s: %v", key, n.name, err)
				}
				counts[key]++
				if n2 != counts[key] {
					t.Fatalf("%s through %s: count %d, want %d", key, n.name, n2, counts[key])
				}
				if w, ok := where[key]; ok && w != ref.Node {
					t.Fatalf("%s on %s through %s, on %s before", key, ref.Node, n.name, w)
				}
				where[key] = ref.Node
			}
			if !slices.Contains(allowed[capName], where[key]) {
				t.Fatalf("%s runs on %s, which does not serve %s", key, where[key], capName)
			}
		}
	}
	names := map[string]string{a.st.PeerID: "a", b.st.PeerID: "b", c.st.PeerID: "c"}
	spread := func() map[string]map[string]int {
		m := map[string]map[string]int{}
		for key, node := range where {
			capName, _, _ := strings.Cut(key, "/")
			if m[capName] == nil {
				m[capName] = map[string]int{}
			}
			m[capName][names[node]]++
		}
		return m
	}
	t.Logf("placement: %v", spread())

	// checkCounts calls every id once more through from: each keeps its
	// count (one more than before), and runs on a node of allowed.
	checkCounts := func(phase string, from *runNode, allowed map[string][]string) (moved int) {
		t.Helper()
		for capName, list := range ids {
			if len(allowed[capName]) == 0 {
				continue
			}
			for _, id := range list {
				key := capName + "/" + id
				ref, n, err := actorCall(ctx, client(from), capName, id, 10*time.Second)
				if err != nil {
					t.Fatalf("%s: %s: %v", phase, key, err)
				}
				counts[key]++
				if n != counts[key] {
					t.Fatalf("%s: %s: count %d, want %d (on %s, was on %s)", phase, key, n, counts[key], ref.Node, where[key])
				}
				if !slices.Contains(allowed[capName], ref.Node) {
					t.Fatalf("%s: %s on %s, not a node of %s", phase, key, ref.Node, capName)
				}
				if ref.Node != where[key] {
					moved++
				}
				where[key] = ref.Node
			}
		}
		return moved
	}

	// A fourth node joins: shards move to it, the counters keep counting.
	d := startActorNode(t, realmName, "d", "game,chat", boot)
	names[d.st.PeerID] = "d"
	waitRing(t, []*runNode{a, b, c, d}, map[string][]string{
		"game": {a.st.PeerID, c.st.PeerID, d.st.PeerID}, "chat": {b.st.PeerID, c.st.PeerID, d.st.PeerID}, "payment": {c.st.PeerID},
	})
	allowed = map[string][]string{"game": {a.st.PeerID, c.st.PeerID, d.st.PeerID}, "chat": {b.st.PeerID, c.st.PeerID, d.st.PeerID}, "payment": {c.st.PeerID}}
	moved := checkCounts("after d joined", b, allowed)
	if moved == 0 {
		t.Fatal("no actor moved to d")
	}
	t.Logf("d joined: %d of %d actors moved, counts kept; placement %v", moved, 3*24, spread())

	// C stops cleanly: its actors move with their counts.
	cLog := activationLog(t, c)
	if code := c.stop(t, syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("c exited with %d; stderr:\n%s", code, c.stderr.String())
	}
	cGone := time.Now()
	waitRing(t, []*runNode{a, b, d}, map[string][]string{
		"game": {a.st.PeerID, d.st.PeerID}, "chat": {b.st.PeerID, d.st.PeerID},
	})
	allowed = map[string][]string{"game": {a.st.PeerID, d.st.PeerID}, "chat": {b.st.PeerID, d.st.PeerID}}
	for key := range where {
		if strings.HasPrefix(key, "payment/") {
			delete(where, key) // nobody serves payment now
		}
	}
	moved = checkCounts("after c left", a, allowed)
	t.Logf("c left: %d actors moved with their counts; placement %v", moved, spread())
	if _, _, err := actorCall(ctx, client(a), "payment", "payment_0", 5*time.Second); !isCode(err, api.CodeNotServed) {
		t.Fatalf("payment after c left: %v, want %s", err, api.CodeNotServed)
	}

	// D is killed under load: the calls to its actors fail with typed
	// errors within their deadline, then succeed on the new owner.
	victims := map[string]bool{}
	for key, node := range where {
		if node == d.st.PeerID {
			victims[key] = true
		}
	}
	if len(victims) == 0 {
		t.Fatal("d owns no actor")
	}
	load := startActorLoad(t, []*api.Client{client(a), client(b)}, ids, where)
	load.waitCalls(t, 200)
	dLog := activationLog(t, d)
	killed := time.Now()
	load.mark(killed)
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	d.wait(t, 10*time.Second)
	waitRing(t, []*runNode{a, b}, map[string][]string{"game": {a.st.PeerID}, "chat": {b.st.PeerID}})
	detected := time.Now()
	// Until every victim answered on its new owner.
	testnet.Eventually(t, 30*time.Second, func() error {
		if missing := load.notRecovered(victims); len(missing) > 0 {
			return fmt.Errorf("%d of d's actors not yet answered by their new owner, such as %s", len(missing), missing[0])
		}
		return nil
	})
	rep := load.stop()
	t.Logf("kill -9 of d: detected after %v; %s", detected.Sub(killed).Round(time.Millisecond), rep)
	if len(rep.bad) > 0 {
		t.Fatalf("under load: %v", rep.bad)
	}
	if rep.failedAfterKill == 0 {
		t.Log("no call failed while d's death went unnoticed")
	}

	// Single activation: every node's log; c's actors ended by the time it
	// exited, d's at its kill.
	all := append(endOpen(cLog, cGone), endOpen(dLog, killed)...)
	all = append(all, activationLog(t, a)...)
	all = append(all, activationLog(t, b)...)
	check := actors.CheckSingleActivation(all, time.Now())
	t.Logf("single-activation checker: %s", check)
	for _, o := range check.Overlaps {
		t.Logf("overlap: %s", o)
	}
	if check.OverlapCount > 0 {
		t.Fatalf("an actor ran on two nodes at once: %v", check.Overlaps)
	}
}

// actorLoad runs one sequential caller per actor id through the given
// clients; every reply must be the previous count plus one, except after a
// kill (state lost: it starts again at 1).
type actorLoad struct {
	stopCh chan struct{}
	wg     sync.WaitGroup

	// mu guards the fields below.
	mu        sync.Mutex
	calls     int
	killed    time.Time
	after     map[string]bool // ids that succeeded after the kill was marked
	errs      map[string]int  // error code -> count, after the kill
	bad       []string
	failAfter int
	slowest   time.Duration // the slowest failure
	late      int           // failures later than the deadline plus 1 s
}

type loadReport struct {
	calls, failedAfterKill, late int
	errs                         map[string]int
	slowest                      time.Duration
	bad                          []string
}

func (r loadReport) String() string {
	return fmt.Sprintf("%d calls; after the kill %d failed (%v), the slowest failure after %v (deadline 2s; %d later than 3s), load %s",
		r.calls, r.failedAfterKill, r.errs, r.slowest.Round(time.Millisecond), r.late, loadavg())
}

const loadTimeout = 2 * time.Second

func startActorLoad(t *testing.T, clients []*api.Client, ids map[string][]string, where map[string]string) *actorLoad {
	l := &actorLoad{stopCh: make(chan struct{}), after: map[string]bool{}, errs: map[string]int{}}
	for capName, list := range ids {
		if capName == "payment" {
			continue
		}
		for i, id := range list {
			key := capName + "/" + id
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				last := -1
				for k := 0; ; k++ {
					select {
					case <-l.stopCh:
						return
					default:
					}
					c := clients[(i+k)%len(clients)]
					start := time.Now()
					// The node answers by loadTimeout; the test's own bound
					// is generous (a hang, not a slow machine, fails it).
					ctx, cancel := context.WithTimeout(context.Background(), loadTimeout+30*time.Second)
					_, n, err := actorCall(ctx, c, capName, id, loadTimeout)
					cancel()
					took := time.Since(start)
					l.mu.Lock()
					l.calls++
					afterKill := !l.killed.IsZero() && start.After(l.killed)
					switch {
					case err != nil:
						var ae *api.APIError
						switch {
						case !errors.As(err, &ae):
							l.bad = append(l.bad, fmt.Sprintf("%s: untyped error %v", key, err))
						case l.killed.IsZero():
							l.bad = append(l.bad, fmt.Sprintf("%s failed before the kill: %v", key, err))
						default:
							l.errs[ae.Code]++
							l.failAfter++
						}
						if took > loadTimeout+time.Second {
							// Measured, not asserted: a loaded machine
							// answers late.
							l.late++
						}
						l.slowest = max(l.slowest, took)
						last = -1 // it may or may not have run
					case last >= 0 && n != last+1 && !(n == 1 && !l.killed.IsZero()):
						l.bad = append(l.bad, fmt.Sprintf("%s: count %d after %d", key, n, last))
						last = n
					default:
						last = n
						if afterKill {
							l.after[key] = true
						}
					}
					l.mu.Unlock()
					if err != nil {
						time.Sleep(20 * time.Millisecond) // a failing caller retries, not spins
					}
				}
			}()
		}
	}
	t.Cleanup(func() { l.stop() })
	return l
}

func (l *actorLoad) waitCalls(t *testing.T, n int) {
	t.Helper()
	l.mu.Lock()
	target := l.calls + n
	l.mu.Unlock()
	testnet.Eventually(t, 30*time.Second, func() error {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.calls < target {
			return fmt.Errorf("%d calls, want %d", l.calls, target)
		}
		return nil
	})
}

func (l *actorLoad) mark(killed time.Time) {
	l.mu.Lock()
	l.killed = killed
	l.mu.Unlock()
}

func (l *actorLoad) notRecovered(victims map[string]bool) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for k := range victims {
		if !l.after[k] {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func (l *actorLoad) stop() loadReport {
	select {
	case <-l.stopCh:
	default:
		close(l.stopCh)
	}
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return loadReport{calls: l.calls, failedAfterKill: l.failAfter, errs: l.errs, slowest: l.slowest, late: l.late, bad: l.bad}
}
