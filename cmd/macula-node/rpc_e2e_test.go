package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/macula-io/macula/api"
	"github.com/macula-io/macula/gateway"
	"github.com/macula-io/macula/internal/testnet"
)

// The procedures of the rpc end-to-end test.
const (
	rpcRealm    = "io.acme.orders"
	procGet     = rpcRealm + ".get_order" // on a and b; answers {"served_by":..., "id":...}
	procHang    = rpcRealm + ".hang"      // on a; answers when the call ends
	procSlow    = rpcRealm + ".slow"      // on b; answers when the call ends
	procInvalid = rpcRealm + ".invalid"   // on b; answers 422 with an API error body
	procNobody  = rpcRealm + ".nobody"    // nowhere
)

// orderHook is a webhook program on loopback serving the procedures of one
// node. An httptest.Server is a real HTTP server: the node reaches it
// through the loopback interface like any other program.
type orderHook struct {
	name    string
	srv     *httptest.Server
	served  atomic.Int64  // get_order answers
	waiting atomic.Int64  // requests of hang and slow still open
	quit    chan struct{} // closed when the test ends: hang and slow return
	grant   atomic.Value  // string: the Macula-Caller-Grant values of the last get_order
}

func startOrderHook(t *testing.T, name string) *orderHook {
	t.Helper()
	h := &orderHook{name: name, quit: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /get_order", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			ID int `json:"id"`
		}
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, `{"error":{"code":"bad_order","message":%q}}`, err.Error())
			return
		}
		h.served.Add(1)
		h.grant.Store(strings.Join(r.Header.Values(gateway.HeaderCallerGrant), "; "))
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"served_by":%q,"id":%d}`, h.name, in.ID)
	})
	wait := func(w http.ResponseWriter, r *http.Request) {
		h.waiting.Add(1)
		defer h.waiting.Add(-1)
		select {
		case <-r.Context().Done():
		case <-h.quit:
		}
	}
	mux.HandleFunc("POST /hang", wait)
	mux.HandleFunc("POST /slow", wait)
	mux.HandleFunc("POST /invalid", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnprocessableEntity)
		io.WriteString(w, `{"error":{"code":"invalid_order","message":"no such order"}}`)
	})
	h.srv = httptest.NewServer(mux)
	// Close waits for the requests in flight; those of a node still
	// running would wait for their call's deadline.
	t.Cleanup(func() {
		close(h.quit)
		h.srv.Close()
	})
	return h
}

func (h *orderHook) url(path string) string { return h.srv.URL + path }

// startAdvertiser runs macula-node advertise against n's API and waits for
// its "advertised" line.
func startAdvertiser(t *testing.T, n *runNode, procedure, url, lease string) *proc {
	t.Helper()
	name := "advertise " + procedure + " on " + n.name
	p := startProc(t, name, nil, "--api", n.st.API, "advertise", procedure, "--url", url, "--lease", lease)
	want := fmt.Sprintf("advertised %s -> %s (", procedure, url)
	// Until the advertiser says it advertised.
	testnet.Eventually(t, 20*time.Second, func() error {
		if p.exited() {
			t.Fatalf("%s exited (%v): %s", name, p.err, p.stderr.String())
		}
		if got := p.stdout.String(); !strings.HasPrefix(got, want) || !strings.HasSuffix(got, ")\n") {
			return fmt.Errorf("%s: stdout %q, want %q...", name, got, want)
		}
		return nil
	})
	return p
}

// apiClient is a client of n's API, closed when the test ends. Like the
// CLI, it runs as the node's user and, in a secure realm, acts as the node
// with its local credential unless given a Token.
func apiClient(t *testing.T, n *runNode) *api.Client {
	t.Helper()
	c := api.NewClient(n.st.API)
	c.Local = true
	t.Cleanup(func() { c.Close() })
	return c
}

// getOrder calls get_order and returns who served it.
func getOrder(ctx context.Context, c *api.Client, id int, timeout time.Duration) (string, error) {
	reply, err := c.Call(ctx, procGet, fmt.Appendf(nil, `{"id":%d}`, id), api.CallOptions{ContentType: api.ContentTypeJSON, Timeout: timeout})
	if err != nil {
		return "", err
	}
	var out struct {
		ServedBy string `json:"served_by"`
		ID       int    `json:"id"`
	}
	if err := json.Unmarshal(reply, &out); err != nil || out.ID != id || out.ServedBy == "" {
		return "", fmt.Errorf("reply %q to id %d (%v)", reply, id, err)
	}
	return out.ServedBy, nil
}

func apiCode(err error) string {
	var ae *api.APIError
	if errors.As(err, &ae) {
		return ae.Code
	}
	return ""
}

// callRecord is one call of the failover run.
type callRecord struct {
	start, end time.Time
	servedBy   string
	err        error
}

// TestRPCEndToEnd runs three macula-node run processes of one realm (c,
// then a and b joining through c) and two webhook programs, one for a and
// one for b, advertised through macula-node advertise processes. From c,
// through its API and through macula-node call:
//
//   - 1000 calls of a procedure advertised on a and b: all succeed and
//     both serve calls;
//   - not found, timeout, remote error: each its own exit code and API
//     error code, within the deadline plus 5s;
//   - bad input: a clear 4xx each, and c serves calls afterwards;
//   - a lease that is not renewed (its advertise process killed) withdraws
//     the procedure;
//   - a is killed (SIGKILL) in the middle of concurrent calls: see
//     checkFailover for what is asserted; calls waiting on a's webhook end
//     as "disconnected" (exit code 6);
//   - SIGTERM to an advertise process withdraws its procedure and exits 0.
func TestRPCEndToEnd(t *testing.T) {
	t.Parallel()
	start := time.Now()
	step := func(what string) { t.Logf("%-40s %v", what, time.Since(start).Round(time.Millisecond)) }

	c := startRunNode(t, rpcRealm, "c")
	c.waitReady(t)
	a := startRunNode(t, rpcRealm, "a", c.st.Addrs[0])
	b := startRunNode(t, rpcRealm, "b", c.st.Addrs[0])
	a.waitReady(t)
	b.waitReady(t)
	cc, ca, cb := apiClient(t, c), apiClient(t, a), apiClient(t, b)
	for _, n := range []struct {
		name string
		c    *api.Client
	}{{"a", ca}, {"b", cb}, {"c", cc}} {
		// Until the node sees 2 peers.
		testnet.Eventually(t, 20*time.Second, func() error {
			ps, err := n.c.Peers(context.Background())
			if err != nil || len(ps) != 2 {
				return fmt.Errorf("%s: %d peers, %v", n.name, len(ps), err)
			}
			return nil
		})
	}
	step("3 nodes up")

	ha, hb := startOrderHook(t, "a"), startOrderHook(t, "b")
	startAdvertiser(t, a, procGet, ha.url("/get_order"), "3s")
	startAdvertiser(t, a, procHang, ha.url("/hang"), "3s")
	advB := startAdvertiser(t, b, procGet, hb.url("/get_order"), "3s")
	startAdvertiser(t, b, procSlow, hb.url("/slow"), "3s")
	advInvalid := startAdvertiser(t, b, procInvalid, hb.url("/invalid"), "2s")
	step("5 procedures advertised")

	// c finds both providers (its first lookup may see only one; the
	// provider list is refreshed within rpc's ProviderTTL).
	seen := map[string]bool{}
	// Waiting for calls from c served by both a and b.
	testnet.Eventually(t, 30*time.Second, func() error {
		by, err := getOrder(context.Background(), cc, 0, 5*time.Second)
		if err != nil {
			return err
		}
		seen[by] = true
		if !seen["a"] || !seen["b"] {
			return fmt.Errorf("served by %v so far", seen)
		}
		return nil
	})
	step("c calls both")

	t.Run("1000 calls", func(t *testing.T) {
		const callers, per = 8, 125
		var mu sync.Mutex
		count := map[string]int{}
		var failed []error
		a0, b0 := ha.served.Load(), hb.served.Load()
		var wg sync.WaitGroup
		t0 := time.Now()
		for w := range callers {
			wg.Go(func() {
				for i := range per {
					by, err := getOrder(context.Background(), cc, w*per+i, 10*time.Second)
					mu.Lock()
					if err != nil {
						failed = append(failed, err)
					} else {
						count[by]++
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		d := time.Since(t0)
		t.Logf("%d calls from c through its HTTP API in %v (%.0f calls/s): served by a %d, by b %d (webhooks counted a %d, b %d)",
			callers*per, d.Round(time.Millisecond), float64(callers*per)/d.Seconds(), count["a"], count["b"],
			ha.served.Load()-a0, hb.served.Load()-b0)
		if len(failed) > 0 {
			t.Fatalf("%d calls failed, first: %v", len(failed), failed[0])
		}
		if count["a"]+count["b"] != callers*per || count["a"] < 100 || count["b"] < 100 {
			t.Errorf("served by a %d, b %d: want both to serve (round robin)", count["a"], count["b"])
		}
		if int(ha.served.Load()-a0) != count["a"] || int(hb.served.Load()-b0) != count["b"] {
			t.Errorf("the webhooks served a %d, b %d; the replies say a %d, b %d",
				ha.served.Load()-a0, hb.served.Load()-b0, count["a"], count["b"])
		}
	})
	step("1000 calls")

	t.Run("call command", func(t *testing.T) {
		for i := 1; i <= 3; i++ {
			r := runCmd(t, 30*time.Second, nil, "--api", c.st.API, "call", procGet, "--data", fmt.Sprintf(`{"id":%d}`, i), "--timeout", "5s")
			var out struct {
				ServedBy string `json:"served_by"`
				ID       int    `json:"id"`
			}
			if r.code != 0 || json.Unmarshal([]byte(r.stdout), &out) != nil || out.ID != i || (out.ServedBy != "a" && out.ServedBy != "b") || r.stderr != "" {
				t.Errorf("call %d: exit %d, stdout %q, stderr %q", i, r.code, r.stdout, r.stderr)
			}
			if !strings.Contains(r.stdout, "\n  \"served_by\": ") || !strings.HasSuffix(r.stdout, "}\n") {
				t.Errorf("call %d: reply not pretty-printed: %q", i, r.stdout)
			}
		}
		file := filepath.Join(t.TempDir(), "order.json")
		if err := os.WriteFile(file, []byte(`{"id": 9}`), 0o600); err != nil {
			t.Fatal(err)
		}
		r := runCmd(t, 30*time.Second, nil, "--api", c.st.API, "call", procGet, "--data-file", file, "--raw")
		if r.code != 0 || (r.stdout != `{"served_by":"a","id":9}` && r.stdout != `{"served_by":"b","id":9}`) {
			t.Errorf("call --data-file --raw: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
		r = runCmd(t, 30*time.Second, nil, "--api", c.st.API, "call", procGet, "--data", `{"id":`)
		if r.code != exitUsage || !strings.Contains(r.stderr, "not valid JSON") {
			t.Errorf("call with bad JSON: exit %d, stderr %q", r.code, r.stderr)
		}
	})
	step("call command")

	t.Run("errors", func(t *testing.T) {
		cases := []struct {
			name, proc string
			timeout    time.Duration
			exit       int
			code       string
			stderr     string // the whole line, or a part of it after "macula-node: "
		}{
			{"not found", procNobody, 5 * time.Second, exitNotFound, api.CodeNotFound, "no node of the realm advertises " + procNobody},
			{"timeout", procSlow, time.Second, exitTimeout, api.CodeTimeout, procSlow + ": no answer within 1s"},
			{"remote error", procInvalid, 5 * time.Second, exitRemote, api.CodeRemoteError, "remote error invalid_order: no such order"},
		}
		for _, k := range cases {
			t.Run(k.name, func(t *testing.T) {
				t0 := time.Now()
				r := runCmd(t, 30*time.Second, nil, "--api", c.st.API, "call", k.proc, "--data", `{"id":1}`, "--timeout", k.timeout.String())
				d := time.Since(t0)
				if r.code != k.exit || r.stderr != "macula-node: "+k.stderr+"\n" || r.stdout != "" {
					t.Errorf("macula-node call %s: exit %d, stderr %q, stdout %q; want exit %d, stderr %q",
						k.proc, r.code, r.stderr, r.stdout, k.exit, "macula-node: "+k.stderr)
				}
				if d > k.timeout+5*time.Second {
					t.Errorf("macula-node call %s took %v; the deadline is %v", k.proc, d, k.timeout)
				}
				t0 = time.Now()
				_, err := cc.Call(context.Background(), k.proc, []byte(`{"id":1}`), api.CallOptions{ContentType: api.ContentTypeJSON, Timeout: k.timeout})
				d2 := time.Since(t0)
				if apiCode(err) != k.code {
					t.Errorf("API call of %s: %v, want code %s", k.proc, err, k.code)
				}
				if d2 > k.timeout+5*time.Second {
					t.Errorf("API call of %s took %v; the deadline is %v", k.proc, d2, k.timeout)
				}
				var ae *api.APIError
				if k.code == api.CodeRemoteError && (!errors.As(err, &ae) || ae.Remote == nil || ae.Remote.Code != "invalid_order" || ae.Remote.Message != "no such order") {
					t.Errorf("remote error detail: %+v", err)
				}
				t.Logf("%s: CLI %v, API %v", k.name, d.Round(time.Millisecond), d2.Round(time.Millisecond))
			})
		}
	})
	step("not found, timeout, remote error")

	t.Run("bad input", func(t *testing.T) {
		ctx := context.Background()
		check := func(what string, err error, status int, code string) {
			t.Helper()
			var ae *api.APIError
			if !errors.As(err, &ae) || ae.Status != status || ae.Code != code || ae.Message == "" {
				t.Errorf("%s: %v, want %d %s", what, err, status, code)
			}
			if _, err := getOrder(ctx, cc, 1, 5*time.Second); err != nil {
				t.Errorf("a call after %s: %v", what, err)
			}
		}
		_, err := cc.Call(ctx, "io.other.realm.get_order", nil, api.CallOptions{})
		check("a procedure of another realm", err, 400, api.CodeInvalidName)
		_, err = cc.Call(ctx, rpcRealm+".*", nil, api.CallOptions{})
		check("a wildcard procedure", err, 400, api.CodeInvalidName)
		_, err = cc.Call(ctx, rpcRealm+".>", nil, api.CallOptions{})
		check("a wildcard procedure", err, 400, api.CodeInvalidName)
		_, err = cc.Call(ctx, procGet, make([]byte, gateway.DefaultMaxPayload+1), api.CallOptions{})
		check("a payload over the limit", err, 413, api.CodeTooLarge)
		for _, bad := range []string{"soon", "-5s", "0"} {
			_, err = rawCall(c.st.API, procGet, bad)
			check("timeout "+bad, err, 400, api.CodeBadRequest)
		}
		// Off loopback, without the operator's --webhook-allow: a target
		// the node may not be aimed at.
		for _, u := range []string{"http://10.1.2.3:8080/x", "http://192.0.2.1/x"} {
			err = cc.Advertise(ctx, rpcRealm+".elsewhere", u, 0)
			check("webhook "+u, err, 403, api.CodeUnauthorized)
			if err == nil || !strings.Contains(err.Error(), "webhook allow-list") {
				t.Errorf("webhook %s: %v", u, err)
			}
		}
		r := runCmd(t, 30*time.Second, nil, "--api", c.st.API, "advertise", rpcRealm+".elsewhere", "--url", "http://192.0.2.1/x")
		if r.code != exitUnauthorized || !strings.Contains(r.stderr, "webhook allow-list") || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("advertise off loopback: exit %d, stderr %q", r.code, r.stderr)
		}
		r = runCmd(t, 30*time.Second, nil, "--api", c.st.API, "call", "io.other.realm.get_order")
		if r.code != exitError || !strings.Contains(r.stderr, "outside the realm") {
			t.Errorf("call outside the realm: exit %d, stderr %q", r.code, r.stderr)
		}
	})
	step("bad input")

	t.Run("lease runs out", func(t *testing.T) {
		if err := advInvalid.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		// Waiting for procInvalid withdrawn after its advertiser died.
		testnet.Eventually(t, 10*time.Second, func() error {
			ads, err := cb.Advertised(context.Background())
			if err != nil {
				return err
			}
			if slices.ContainsFunc(ads, func(ad api.Advertisement) bool { return ad.Procedure == procInvalid }) {
				return errors.New("still advertised")
			}
			return nil
		})
		t.Logf("withdrawn %v after its advertise process was killed (lease 2s)", time.Since(t0).Round(time.Millisecond))
	})
	step("lease")

	t.Run("kill a provider", func(t *testing.T) {
		checkFailover(t, a, cc, c.st.API, ha)
	})
	step("kill a")

	t.Run("advertise stops cleanly", func(t *testing.T) {
		if code := advB.stop(t, syscall.SIGTERM, 10*time.Second); code != 0 {
			t.Errorf("advertise exited %d after SIGTERM; stderr %q", code, advB.stderr.String())
		}
		ads, err := cb.Advertised(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(ads, func(ad api.Advertisement) bool { return ad.Procedure == procGet }) {
			t.Errorf("%s still advertised on b after its advertise process stopped: %+v", procGet, ads)
		}
	})
	step("done")
}

// rawCall posts an empty call with the given Macula-Timeout header.
func rawCall(addr, procedure, timeout string) ([]byte, error) {
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/call/"+procedure, nil)
	req.Header.Set(api.TimeoutHeader, timeout)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 == 2 {
		return body, nil
	}
	var eb api.ErrorBody
	if err := json.Unmarshal(body, &eb); err != nil {
		return nil, fmt.Errorf("HTTP %d %q", resp.StatusCode, body)
	}
	return nil, &api.APIError{Status: resp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message}
}

// checkFailover kills node a (SIGKILL) while 8 callers on c call get_order
// (served by a and b) in a loop, and while two calls wait on a's hang
// webhook (one through macula-node call, one through the API). It asserts:
//
//   - every call that failed failed as "disconnected", naming a's peer ID:
//     it was sent to a, and lost with a;
//   - each caller lost at most one call (failures <= callers): the calls
//     that fail are the ones outstanding on a when its loss is detected,
//     and a leaves the choice at once;
//   - every call that started after the first failure succeeded, served by
//     b; and 100 more calls afterwards, all served by b;
//   - the failures came within the calls' deadline (60s) plus 5s of the kill;
//   - the two calls waiting on a's webhook end "disconnected" (exit code 6,
//     API code disconnected), within their deadline (60s) plus 5s.
func checkFailover(t *testing.T, a *runNode, cc *api.Client, apiAddr string, ha *orderHook) {
	const (
		callers     = 8
		per         = 150
		callTimeout = 60 * time.Second
	)
	// Two calls that wait on a's webhook until a dies.
	hangCLI := startProc(t, "call "+procHang, nil, "--api", apiAddr, "call", procHang, "--timeout", callTimeout.String())
	hangAPI := make(chan error, 1)
	go func() {
		_, err := cc.Call(context.Background(), procHang, nil, api.CallOptions{Timeout: callTimeout})
		hangAPI <- err
	}()
	// Waiting for two calls waiting on a's webhook.
	testnet.Eventually(t, 15*time.Second, func() error {
		if n := ha.waiting.Load(); n != 2 {
			return fmt.Errorf("%d waiting", n)
		}
		return nil
	})

	var (
		done     atomic.Int64 // calls finished
		inflight atomic.Int64 // calls started and not finished
		mu       sync.Mutex
		records  = make([][]callRecord, callers)
		wg       sync.WaitGroup
	)
	for w := range callers {
		wg.Go(func() {
			for i := range per {
				inflight.Add(1)
				rec := callRecord{start: time.Now()}
				rec.servedBy, rec.err = getOrder(context.Background(), cc, 10000+w*per+i, callTimeout)
				rec.end = time.Now()
				inflight.Add(-1)
				done.Add(1)
				mu.Lock()
				records[w] = append(records[w], rec)
				mu.Unlock()
			}
		})
	}
	// Waiting for 300 calls before the kill.
	testnet.Eventually(t, 30*time.Second, func() error {
		if n := done.Load(); n < 300 {
			return fmt.Errorf("%d done", n)
		}
		return nil
	})
	inflightAtKill, doneAtKill := inflight.Load(), done.Load()
	killed := time.Now()
	if err := a.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	a.wait(t, 10*time.Second)
	waited := make(chan struct{})
	go func() { wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(callTimeout + 30*time.Second):
		t.Fatalf("the callers still run %v after the kill", time.Since(killed))
	}

	// What happened, call by call.
	var failures []callRecord
	var firstFailure, lastFailure time.Time
	for _, rs := range records {
		for _, r := range rs {
			if r.err == nil {
				continue
			}
			failures = append(failures, r)
			if firstFailure.IsZero() || r.end.Before(firstFailure) {
				firstFailure = r.end
			}
			if r.end.After(lastFailure) {
				lastFailure = r.end
			}
		}
	}
	servedAfter := map[string]int{}
	var wrong []string
	for _, rs := range records {
		lost := 0
		for _, r := range rs {
			if r.err != nil {
				lost++
				if apiCode(r.err) != api.CodeDisconnected || !strings.Contains(r.err.Error(), a.st.PeerID) {
					wrong = append(wrong, fmt.Sprintf("failed otherwise than disconnected from a: %v", r.err))
				}
				if r.end.Before(killed) {
					wrong = append(wrong, fmt.Sprintf("failed before the kill: %v", r.err))
				}
				if r.end.Sub(killed) > callTimeout+5*time.Second {
					wrong = append(wrong, fmt.Sprintf("failed %v after the kill: %v", r.end.Sub(killed), r.err))
				}
				continue
			}
			if !firstFailure.IsZero() && r.start.After(firstFailure) {
				servedAfter[r.servedBy]++
				if r.servedBy != "b" {
					wrong = append(wrong, fmt.Sprintf("a call started %v after the first failure was served by %s", r.start.Sub(firstFailure), r.servedBy))
				}
			}
		}
		if lost > 1 {
			wrong = append(wrong, fmt.Sprintf("one caller lost %d calls", lost))
		}
	}
	detect := time.Duration(0)
	if !firstFailure.IsZero() {
		detect = firstFailure.Sub(killed)
	}
	t.Logf("killed a after %d calls with %d in flight; %d of %d calls failed, between %v and %v after the kill; %d calls started after the first failure, served by %v",
		doneAtKill, inflightAtKill, len(failures), callers*per, detect.Round(time.Millisecond),
		lastFailure.Sub(killed).Round(time.Millisecond), servedAfter["a"]+servedAfter["b"], servedAfter)
	if len(failures) > callers {
		t.Errorf("%d calls failed; at most %d (one per caller) were outstanding on a", len(failures), callers)
	}
	for _, w := range wrong[:min(len(wrong), 10)] {
		t.Error(w)
	}
	for i := range 100 {
		by, err := getOrder(context.Background(), cc, 20000+i, 10*time.Second)
		if err != nil || by != "b" {
			t.Fatalf("call %d after the run: served by %q, %v; want b", i, by, err)
		}
	}

	// The calls that waited on a's webhook.
	code := hangCLI.wait(t, callTimeout+10*time.Second)
	if code != exitDisconnected || !strings.HasPrefix(hangCLI.stderr.String(), "macula-node: "+procHang+": disconnected") {
		t.Errorf("macula-node call %s when a died: exit %d, stderr %q; want %d", procHang, code, hangCLI.stderr.String(), exitDisconnected)
	}
	select {
	case err := <-hangAPI:
		if apiCode(err) != api.CodeDisconnected {
			t.Errorf("API call of %s when a died: %v, want disconnected", procHang, err)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("the API call of %s still waits", procHang)
	}
	t.Logf("calls waiting on a's webhook ended %v after the kill", time.Since(killed).Round(time.Millisecond))
	if d := time.Since(killed); d > callTimeout+5*time.Second {
		t.Errorf("the calls waiting on a ended %v after the kill; their deadline was %v", d, callTimeout)
	}
}
