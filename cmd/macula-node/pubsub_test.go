package main

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/macula-io/macula/api"
)

// cannedStream is an event stream as GET /v1/subscribe sends it: three
// messages (JSON, binary, text) around a drop report.
const cannedStream = `: subscribed to io.acme.orders.*

event: message
data: {"topic":"io.acme.orders.placed","payload":{"id": 1},"publisher":"did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK","time":"2026-01-02T15:04:05.123456789Z","seq":1}

:

event: dropped
data: {"dropped":5,"total":5}

event: message
data: {"topic":"io.acme.orders.raw","payload":"AAH/","payload_encoding":"base64","publisher":"did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK","time":"2026-01-02T15:04:06Z","seq":7}

event: future
data: {"ignored":true}

event: message
data: {"topic":"io.acme.orders.note","payload":"aGVsbG8gd29ybGQ=","payload_encoding":"base64","publisher":"did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK","time":"2026-01-02T15:04:07Z","seq":8}

`

// TestSubscribeOutput runs macula-node subscribe against a fake node API
// that sends cannedStream and ends it: the text and JSON lines, the drop
// report on stderr, --count, and the exit code when the node ends the
// stream.
func TestSubscribeOutput(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/subscribe" || r.URL.Query().Get("pattern") != "io.acme.orders.*" {
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":{"code":"not_found","message":"no route"}}`)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, cannedStream)
	}))
	t.Cleanup(srv.Close)
	api := strings.TrimPrefix(srv.URL, "http://")
	local := func(s string) string {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm.Local().Format("2006-01-02T15:04:05.000Z07:00")
	}
	wantText := strings.Join([]string{
		local("2026-01-02T15:04:05.123456789Z") + ` io.acme.orders.placed z6Mk...ta2doK {"id": 1}`,
		local("2026-01-02T15:04:06Z") + ` io.acme.orders.raw z6Mk...ta2doK base64:AAH/`,
		local("2026-01-02T15:04:07Z") + ` io.acme.orders.note z6Mk...ta2doK "hello world"`,
	}, "\n") + "\n"
	subscribed := "macula-node: subscribed to io.acme.orders.*\n"
	dropped := "macula-node: the node dropped 5 message(s) of io.acme.orders.*, not read fast enough (5 in all)\n"
	ended := "macula-node: the node at " + api + " ended the subscription (is it stopping?)\n"

	r := runCmd(t, 30*time.Second, nil, "--api", api, "subscribe", "io.acme.orders.*")
	if r.code != exitError || r.stdout != wantText || r.stderr != subscribed+dropped+ended {
		t.Errorf("text: exit %d\nstdout %q\nwant   %q\nstderr %q", r.code, r.stdout, wantText, r.stderr)
	}

	r = runCmd(t, 30*time.Second, nil, "--api", api, "subscribe", "io.acme.orders.*", "--json", "--count", "2")
	wantJSON := `{"topic":"io.acme.orders.placed","payload":{"id":1},"publisher":"did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK","time":"2026-01-02T15:04:05.123456789Z","seq":1}` + "\n" +
		`{"topic":"io.acme.orders.raw","payload":"AAH/","payload_encoding":"base64","publisher":"did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK","time":"2026-01-02T15:04:06Z","seq":7}` + "\n"
	if r.code != 0 || r.stdout != wantJSON || r.stderr != subscribed+dropped {
		t.Errorf("--json --count 2: exit %d\nstdout %q\nwant   %q\nstderr %q", r.code, r.stdout, wantJSON, r.stderr)
	}

	r = runCmd(t, 30*time.Second, nil, "--api", api, "subscribe", "io.acme.other.*")
	if r.code != exitError || r.stderr != "macula-node: no route\n" || r.stdout != "" {
		t.Errorf("an error answer: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

// TestPayloadText: text is quoted on one line, line breaks and tabs
// included (a text payload that ends in a newline was shown as base64);
// anything else is base64.
func TestPayloadText(t *testing.T) {
	for in, want := range map[string]string{
		"hello world":     `"hello world"`,
		"hello\n":         `"hello\n"`,
		"a\tb\r\nc":       `"a\tb\r\nc"`,
		"":                `""`,
		"caf\u00e9":       `"café"`,
		"\x00\x01\xff":    "base64:AAH/",
		"bell\a":          "base64:YmVsbAc=",
		"not utf-8 \xc3(": "base64:bm90IHV0Zi04IMMo",
	} {
		ev := &api.SubscribeEvent{PayloadEncoding: api.PayloadBase64}
		ev.Payload, _ = json.Marshal(base64.StdEncoding.EncodeToString([]byte(in)))
		if got := payloadText(ev); got != want {
			t.Errorf("payloadText(%q) = %s, want %s", in, got, want)
		}
	}
}

// TestPublishWaitFlag runs macula-node publish against a fake node API:
// --wait asks the node to wait (?wait=true) within the --timeout it passes
// on, a no_room answer exits 4 with the node's message, and without --wait
// the request asks for nothing of the kind.
func TestPublishWaitFlag(t *testing.T) {
	t.Parallel()
	type request struct{ wait, timeout string }
	got := make(chan request, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/publish/io.acme.orders.placed" {
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":{"code":"not_found","message":"no route"}}`)
			return
		}
		got <- request{r.URL.Query().Get("wait"), r.Header.Get(api.TimeoutHeader)}
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Query().Get("wait") == "" {
			w.WriteHeader(http.StatusAccepted)
			io.WriteString(w, `{"topic":"io.acme.orders.placed"}`)
			return
		}
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"error":{"code":"no_room","message":"io.acme.orders.placed: the queues of 1 of 3 subscribers stayed full for 5s; the message was queued for the other 2","partial":{"queued":2,"missed":1}}}`)
	}))
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")

	r := runCmd(t, 30*time.Second, nil, "--api", addr, "publish", "io.acme.orders.placed", "--data", "1")
	if req := <-got; r.code != 0 || r.stdout != "published 1 bytes to io.acme.orders.placed\n" || req.wait != "" {
		t.Errorf("without --wait: exit %d, stdout %q, stderr %q, request %+v", r.code, r.stdout, r.stderr, req)
	}
	r = runCmd(t, 30*time.Second, nil, "--api", addr, "publish", "io.acme.orders.placed", "--data", "1", "--wait", "--timeout", "10s")
	want := "macula-node: io.acme.orders.placed: the queues of 1 of 3 subscribers stayed full for 5s; the message was queued for the other 2\n"
	req := <-got
	if r.code != exitTimeout || r.stderr != want || req.wait != "true" || req.timeout == "" {
		t.Errorf("--wait: exit %d, stderr %q (want %q), request %+v", r.code, r.stderr, want, req)
	}
	t.Logf("--wait --timeout 10s sent %s: %s", api.TimeoutHeader, req.timeout)
}

// TestSubscribeBackpressureFlag runs macula-node subscribe against a fake
// node API: --backpressure asks for ?backpressure=true, and without it the
// request asks for nothing of the kind.
func TestSubscribeBackpressureFlag(t *testing.T) {
	t.Parallel()
	got := make(chan url.Values, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.URL.Query()
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, cannedStream)
	}))
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")

	for _, tc := range []struct {
		flags []string
		want  string
	}{
		{nil, ""},
		{[]string{"--backpressure"}, "true"},
	} {
		args := append([]string{"--api", addr, "subscribe", "io.acme.orders.*", "--count", "1"}, tc.flags...)
		r := runCmd(t, 30*time.Second, nil, args...)
		q := <-got
		if r.code != 0 || q.Get("pattern") != "io.acme.orders.*" || q.Get("backpressure") != tc.want || q.Has("backpressure") != (tc.want != "") {
			t.Errorf("subscribe %v: exit %d, stderr %q, query %v; want backpressure %q", tc.flags, r.code, r.stderr, q, tc.want)
		}
	}
}
