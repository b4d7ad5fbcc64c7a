package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/macula-io/macula/api"
	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/pubsub"
	"github.com/macula-io/macula/realm"
)

// The realm and topics of the pub/sub end-to-end test.
const (
	psRealm       = "io.e2e.test"
	topicPlaced   = psRealm + ".orders.placed"
	topicCanceled = psRealm + ".orders.cancelled"
	topicEU       = psRealm + ".orders.eu.placed"
	topicBilling  = psRealm + ".billing.paid"
)

// subscriber is a macula-node subscribe --json process.
type subscriber struct {
	*proc
	pattern string
}

// startSubscriber runs macula-node subscribe PATTERN --json (plus extra)
// against n's API and waits until it says it is subscribed.
func startSubscriber(t *testing.T, n *runNode, pattern string, extra ...string) *subscriber {
	t.Helper()
	name := "subscribe " + pattern + " on " + n.name
	args := append([]string{"--api", n.st.API, "subscribe", pattern}, extra...)
	s := &subscriber{proc: startProc(t, name, nil, args...), pattern: pattern}
	// Until the subscriber says it subscribed.
	testnet.Eventually(t, 20*time.Second, func() error {
		if s.exited() {
			t.Fatalf("%s exited (%v): %s", name, s.err, s.stderr.String())
		}
		if got := s.stderr.String(); got != "macula-node: subscribed to "+pattern+"\n" {
			return fmt.Errorf("%s: stderr %q", name, got)
		}
		return nil
	})
	return s
}

// events parses the complete lines the subscriber printed so far.
func (s *subscriber) events(t *testing.T) []api.SubscribeEvent {
	t.Helper()
	out := s.stdout.String()
	out = out[:strings.LastIndexByte(out, '\n')+1]
	var evs []api.SubscribeEvent
	for line := range strings.Lines(out) {
		var ev api.SubscribeEvent
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("%s printed %q: %v", s.name, line, err)
		}
		evs = append(evs, ev)
	}
	return evs
}

// pubsubStats runs macula-node pubsub stats --json against n.
func pubsubStats(t *testing.T, n *runNode) pubsub.Stats {
	t.Helper()
	var st pubsub.Stats
	if err := cliJSON(t, n.st.API, &st, "pubsub", "stats"); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestPubSubEndToEnd runs five macula-node run processes of one realm: a
// publisher P, which the others join through, and four subscriber nodes,
// each with a macula-node subscribe --json process:
//
//	s1  io.e2e.test.orders.placed   (an exact topic)
//	s2  io.e2e.test.orders.*
//	s3  io.e2e.test.>
//	n   io.e2e.test.audit.*         (matches nothing published)
//
// Once P has learnt the four nodes' interest and s1, s2 and s3 get its
// warm-up messages, P publishes 200 messages over four topics through its
// API (the last through macula-node publish). It asserts that each
// subscriber prints exactly the messages its pattern matches (realm.Match),
// in publish order, that each subscriber node received exactly the frames
// its subscriber printed, and that n's node received no message frame at
// all. Then bad input through the API and the CLI gets a clear error each,
// and P serves on. Last, s2's node is killed (SIGKILL) and restarted in its
// data directory: a new subscriber there receives again.
func TestPubSubEndToEnd(t *testing.T) {
	t.Parallel()
	start := time.Now()
	step := func(what string) { t.Logf("%-40s %v", what, time.Since(start).Round(time.Millisecond)) }

	p := startRunNode(t, psRealm, "p")
	p.waitReady(t)
	boot := p.st.Addrs[0]
	nodes := map[string]*runNode{}
	for _, name := range []string{"s1", "s2", "s3", "n"} {
		nodes[name] = startRunNode(t, psRealm, name, boot)
	}
	for _, n := range nodes {
		n.waitReady(t)
	}
	cp := apiClient(t, p)
	// Until p sees the 4 others.
	testnet.Eventually(t, 20*time.Second, func() error {
		ps, err := cp.Peers(context.Background())
		if err != nil || len(ps) != 4 {
			return fmt.Errorf("%d peers, %v", len(ps), err)
		}
		return nil
	})
	step("5 nodes up")

	patterns := map[string]string{
		"s1": topicPlaced,
		"s2": psRealm + ".orders.*",
		"s3": psRealm + ".>",
		"n":  psRealm + ".audit.*",
	}
	subs := map[string]*subscriber{}
	for name, pat := range patterns {
		subs[name] = startSubscriber(t, nodes[name], pat, "--json")
	}
	// Until p learns the interest of the 4 subscriber nodes.
	testnet.Eventually(t, 20*time.Second, func() error {
		st, err := cp.PubSubStats(context.Background())
		if err != nil || st.InterestedPeers != 4 {
			return fmt.Errorf("%+v, %v", st, err)
		}
		return nil
	})
	// Interest known is not yet a link to send on: publish warm-ups until
	// each matching subscriber printed one.
	const warmup = `{"warmup":true}`
	// Until warm-up messages reach s1, s2 and s3.
	testnet.Eventually(t, 20*time.Second, func() error {
		if err := cp.Publish(context.Background(), topicPlaced, []byte(warmup), api.ContentTypeJSON); err != nil {
			return err
		}
		for _, name := range []string{"s1", "s2", "s3"} {
			if len(subs[name].events(t)) == 0 {
				return fmt.Errorf("nothing on %s yet", name)
			}
		}
		return nil
	})
	step("subscribers routed")

	// 200 messages over four topics, in an order that mixes them.
	topics := []string{topicPlaced, topicCanceled, topicEU, topicBilling}
	type sent struct {
		topic   string
		payload string
	}
	var published []sent
	for i := range 200 {
		m := sent{topics[(i*7+i/5)%len(topics)], fmt.Sprintf(`{"i":%d}`, i)}
		published = append(published, m)
		if i == 199 {
			break // through the CLI below
		}
		if err := cp.Publish(context.Background(), m.topic, []byte(m.payload), api.ContentTypeJSON); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	last := published[199]
	r := runCmd(t, 30*time.Second, nil, "--api", p.st.API, "publish", last.topic, "--data", last.payload)
	if r.code != 0 || r.stdout != fmt.Sprintf("published %d bytes to %s\n", len(last.payload), last.topic) || r.stderr != "" {
		t.Fatalf("macula-node publish: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	// Delivery is in order per publisher: once the end marker is there,
	// everything published before it is.
	const end = `{"end":true}`
	if err := cp.Publish(context.Background(), topicPlaced, []byte(end), api.ContentTypeJSON); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"s1", "s2", "s3"} {
		// Until the subscriber gets the end marker.
		testnet.Eventually(t, 20*time.Second, func() error {
			evs := subs[name].events(t)
			if len(evs) == 0 || string(evs[len(evs)-1].Payload) != end {
				return fmt.Errorf("%s: %d events, none the end marker yet", name, len(evs))
			}
			return nil
		})
	}
	step("200 messages delivered")

	for _, name := range []string{"s1", "s2", "s3"} {
		s := subs[name]
		var want []sent
		for _, m := range published {
			if realm.Match(s.pattern, m.topic) {
				want = append(want, m)
			}
		}
		evs := s.events(t)
		// Warm-ups, then exactly the matching messages, then the marker.
		i := 0
		for i < len(evs) && string(evs[i].Payload) == warmup {
			i++
		}
		got := evs[i : len(evs)-1]
		var lastSeq uint64
		bad := 0
		for j, ev := range got {
			if j >= len(want) || ev.Topic != want[j].topic || string(ev.Payload) != want[j].payload {
				if bad++; bad <= 5 {
					t.Errorf("%s: event %d is %s %s, want %v", name, j, ev.Topic, ev.Payload, want[min(j, len(want)-1)])
				}
			}
			if ev.Publisher != p.st.DID || ev.Seq <= lastSeq || ev.PayloadEncoding != "" {
				t.Errorf("%s: event %d from %s, seq %d after %d, encoding %q", name, j, ev.Publisher, ev.Seq, lastSeq, ev.PayloadEncoding)
			}
			lastSeq = ev.Seq
		}
		if len(got) != len(want) {
			t.Errorf("%s (%s): %d messages, want %d", name, s.pattern, len(got), len(want))
		}
		// The node received a frame for each message it printed, no more.
		if st := pubsubStats(t, nodes[name]); st.FramesReceived != uint64(len(evs)) || st.Subscriptions != 1 || st.DroppedLocal != 0 {
			t.Errorf("%s: stats %+v; its subscriber printed %d messages", name, st, len(evs))
		}
		t.Logf("%s (%s): %d warm-ups, %d of the 200 messages, in order", name, s.pattern, i, len(got))
	}
	if st := pubsubStats(t, nodes["n"]); st.FramesReceived != 0 || st.Subscriptions != 1 {
		t.Errorf("n, subscribed to %s, received message frames: %+v", patterns["n"], st)
	}
	if out := subs["n"].stdout.String(); out != "" {
		t.Errorf("n's subscriber printed %q", out)
	}
	st := pubsubStats(t, p)
	t.Logf("p: %+v", st)
	step("checked")

	t.Run("bad input", func(t *testing.T) {
		ctx := context.Background()
		check := func(what string, err error, status int, code string) {
			t.Helper()
			var ae *api.APIError
			if !errors.As(err, &ae) || ae.Status != status || ae.Code != code || ae.Message == "" {
				t.Errorf("%s: %v, want %d %s", what, err, status, code)
			}
		}
		check("a wildcard topic", cp.Publish(ctx, psRealm+".orders.*", []byte(`{}`), api.ContentTypeJSON), 400, api.CodeInvalidName)
		check("a topic of another realm", cp.Publish(ctx, "io.other.realm.x", []byte(`{}`), api.ContentTypeJSON), 400, api.CodeInvalidName)
		check("a payload over the limit", cp.Publish(ctx, topicPlaced, make([]byte, pubsub.DefaultMaxMessageSize+1), ""), 413, api.CodeTooLarge)
		check("a payload that is not JSON", cp.Publish(ctx, topicPlaced, []byte(`{`), api.ContentTypeJSON), 400, api.CodeBadRequest)
		_, err := cp.Subscribe(ctx, "io.other.>")
		check("a pattern of another realm", err, 400, api.CodeInvalidName)

		big := filepath.Join(t.TempDir(), "big")
		if err := os.WriteFile(big, bytes.Repeat([]byte{'x'}, pubsub.DefaultMaxMessageSize+1), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, k := range []struct {
			name string
			args []string
			code int
			want string // a part of the one error line
		}{
			{"wildcard topic", []string{"publish", psRealm + ".orders.*", "--data", `{}`}, exitError, "wildcards are not allowed"},
			{"topic outside the realm", []string{"publish", "io.other.realm.x", "--data", `{}`}, exitError, "outside the realm"},
			{"the realm itself", []string{"publish", psRealm, "--data", `{}`}, exitError, "the realm itself"},
			{"payload over the limit", []string{"publish", topicPlaced, "--data-file", big, "--raw"}, exitError, "over the limit"},
			{"invalid JSON", []string{"publish", topicPlaced, "--data", `{"id":`}, exitUsage, "not valid JSON"},
			{"--data and --data-file", []string{"publish", topicPlaced, "--data", `{}`, "--data-file", big}, exitUsage, "not both"},
			{"pattern outside the realm", []string{"subscribe", "io.other.>"}, exitError, "outside the realm"},
			{"malformed pattern", []string{"subscribe", psRealm + ".>.x"}, exitError, "invalid name"},
			{"negative count", []string{"subscribe", topicPlaced, "--count", "-1"}, exitUsage, "--count"},
		} {
			r := runCmd(t, 30*time.Second, nil, append([]string{"--api", p.st.API}, k.args...)...)
			if r.code != k.code || !strings.HasPrefix(r.stderr, "macula-node: ") || !strings.Contains(r.stderr, k.want) ||
				strings.Count(r.stderr, "\n") != 1 || r.stdout != "" {
				t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit %d and one line with %q", k.name, r.code, r.stdout, r.stderr, k.code, k.want)
			}
		}

		// P serves on: a raw payload through the CLI, with --json, and a
		// text subscriber on s1 with --count 1 prints the next message of
		// its topic and exits 0.
		var res api.PublishResult
		if err := cliJSON(t, p.st.API, &res, "publish", topicBilling, "--data", "not JSON", "--raw"); err != nil || res.Topic != topicBilling {
			t.Errorf("publish --raw --json: %+v, %v", res, err)
		}
		one := startSubscriber(t, nodes["s1"], topicPlaced, "--count", "1")
		line := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d) ` + regexp.QuoteMeta(topicPlaced) +
			` z6Mk\.\.\.\S{6} \{"still":"serving"\}\n$`)
		if err := cp.Publish(ctx, topicPlaced, []byte(`{"still":"serving"}`), api.ContentTypeJSON); err != nil {
			t.Fatal(err)
		}
		if code := one.wait(t, 20*time.Second); code != 0 || !line.MatchString(one.stdout.String()) {
			t.Errorf("subscribe --count 1: exit %d, stdout %q, stderr %q", code, one.stdout.String(), one.stderr.String())
		}
	})
	step("bad input")

	t.Run("restart a subscriber node", func(t *testing.T) {
		s2, old := nodes["s2"], subs["s2"]
		if err := s2.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		s2.wait(t, 10*time.Second)
		killed := time.Now()
		// Its subscriber sees the stream break: one error line, exit 1.
		if code := old.wait(t, 15*time.Second); code != exitError {
			t.Errorf("the subscriber of the killed node exited %d, want %d; stderr %q", code, exitError, old.stderr.String())
		}
		if lines := strings.Split(strings.TrimSuffix(old.stderr.String(), "\n"), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[1], "macula-node: ") {
			t.Errorf("the subscriber of the killed node said %q", old.stderr.String())
		}

		again := startRunNodeIn(t, s2.dir, psRealm, "s2", boot)
		again.waitReady(t)
		if again.st.PeerID != s2.st.PeerID {
			t.Fatalf("restarted s2 is %s, was %s", again.st.PeerID, s2.st.PeerID)
		}
		sub := startSubscriber(t, again, patterns["s2"], "--json")
		restarted := time.Now()
		k := 0
		// Until the restarted s2 receives again.
		testnet.Eventually(t, 30*time.Second, func() error {
			k++
			if err := cp.Publish(context.Background(), topicCanceled, fmt.Appendf(nil, `{"again":%d}`, k), api.ContentTypeJSON); err != nil {
				return err
			}
			evs := sub.events(t)
			if len(evs) == 0 {
				return errors.New("nothing yet")
			}
			if ev := evs[0]; ev.Topic != topicCanceled || ev.Publisher != p.st.DID || !strings.HasPrefix(string(ev.Payload), `{"again":`) {
				t.Fatalf("the restarted s2 got %+v", ev)
			}
			return nil
		})
		t.Logf("the restarted s2 receives %v after its subscriber started, %v after the kill (%d probes)",
			time.Since(restarted).Round(time.Millisecond), time.Since(killed).Round(time.Millisecond), k)
	})
	step("restart")

	// Ctrl-C ends a subscriber with exit 0.
	for _, name := range []string{"s1", "n"} {
		if code := subs[name].stop(t, syscall.SIGINT, 10*time.Second); code != 0 {
			t.Errorf("subscribe on %s exited %d after SIGINT; stderr %q", name, code, subs[name].stderr.String())
		}
	}
	// Waiting for s1's node to drop the subscription.
	testnet.Eventually(t, 10*time.Second, func() error {
		if st := pubsubStats(t, nodes["s1"]); st.Subscriptions != 0 {
			return fmt.Errorf("%d subscriptions", st.Subscriptions)
		}
		return nil
	})
	if slices.ContainsFunc(subs["s1"].events(t), func(ev api.SubscribeEvent) bool { return ev.Topic != topicPlaced }) {
		t.Errorf("s1 printed a message of another topic")
	}
	step("done")
}
