package api

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestTokenScopes checks what each request asks its token for, and that the
// token goes into the Authorization header.
func TestTokenScopes(t *testing.T) {
	var mu sync.Mutex
	var auth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auth = r.Header.Get("Authorization")
		mu.Unlock()
		switch {
		case r.URL.Path == "/v1/subscribe":
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(http.StatusOK)
		case r.Method == http.MethodGet && r.URL.Path == "/v1/advertise":
			io.WriteString(w, "[]")
		default:
			io.WriteString(w, "{}")
		}
	}))
	defer srv.Close()
	c := NewClient(srv.URL)
	defer c.Close()
	var got TokenRequest
	c.Token = func(_ context.Context, req TokenRequest) (string, error) {
		got = req
		return "tok-" + req.Command, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const proc, topic = "io.acme.orders.place", "io.acme.orders.placed"
	for _, tc := range []struct {
		name string
		do   func() error
		want TokenRequest
	}{
		{"node", func() error { _, err := c.Node(ctx); return err },
			TokenRequest{Method: "GET", Path: "/v1/node", Command: CommandAll}},
		{"call", func() error { _, err := c.Call(ctx, proc, nil, CallOptions{}); return err },
			TokenRequest{Method: "POST", Path: "/v1/call/" + proc, Command: CommandCall, Resource: proc}},
		{"publish", func() error { return c.Publish(ctx, topic, nil, "") },
			TokenRequest{Method: "POST", Path: "/v1/publish/" + topic, Command: CommandPublish, Resource: topic}},
		{"advertise", func() error { return c.Advertise(ctx, proc, "http://127.0.0.1:1/x", 0) },
			TokenRequest{Method: "POST", Path: "/v1/advertise/" + proc, Command: CommandAdvertise, Resource: proc}},
		{"unadvertise", func() error { return c.Unadvertise(ctx, proc) },
			TokenRequest{Method: "DELETE", Path: "/v1/advertise/" + proc, Command: CommandAdvertise, Resource: proc}},
		{"advertised", func() error { _, err := c.Advertised(ctx); return err },
			TokenRequest{Method: "GET", Path: "/v1/advertise", Command: CommandAll}},
		{"subscribe", func() error {
			s, err := c.Subscribe(ctx, "io.acme.orders.*")
			if err == nil {
				s.Close()
			}
			return err
		}, TokenRequest{Method: "GET", Path: "/v1/subscribe", Command: CommandSubscribe, Resource: "io.acme.orders.*"}},
		{"dht stats", func() error { _, err := c.DHTStats(ctx); return err },
			TokenRequest{Method: "GET", Path: "/v1/dht/stats", Command: CommandAll}},
	} {
		got = TokenRequest{}
		if err := tc.do(); err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if got != tc.want {
			t.Errorf("%s: token asked for %+v, want %+v", tc.name, got, tc.want)
		}
		mu.Lock()
		if want := "Bearer tok-" + tc.want.Command; auth != want {
			t.Errorf("%s: Authorization %q, want %q", tc.name, auth, want)
		}
		mu.Unlock()
	}

	// A token function's error fails the request before it is sent.
	c.Token = func(context.Context, TokenRequest) (string, error) { return "", errors.New("no key") }
	if _, err := c.Node(ctx); err == nil || !strings.Contains(err.Error(), "no key") {
		t.Errorf("Node with a failing token function: %v", err)
	}
}

// TestErrorAnswers checks how error answers become *APIError: an API error
// body keeps its code, anything else becomes http_<status> with its first
// line; the two codes of the sentinels match them.
func TestErrorAnswers(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/node":
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":{"code":"unauthenticated","message":"send a token"}}`)
		case "/v1/peers":
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, `{"error":{"code":"unauthorized","message":"not yours"}}`)
		default:
			w.WriteHeader(http.StatusBadGateway)
			io.WriteString(w, "proxy says no\nmore detail")
		}
	}))
	defer srv.Close()
	c := NewClient(srv.URL)
	defer c.Close()
	ctx := context.Background()
	_, err := c.Node(ctx)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 401 || ae.Code != CodeUnauthenticated || ae.Message != "send a token" ||
		!errors.Is(err, ErrUnauthenticated) || errors.Is(err, ErrUnauthorized) {
		t.Errorf("401: %v", err)
	}
	if _, err := c.Peers(ctx); !errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrUnauthenticated) {
		t.Errorf("403: %v", err)
	}
	_, err = c.DHTStats(ctx)
	if !errors.As(err, &ae) || ae.Code != "http_502" || ae.Message != "proxy says no" {
		t.Errorf("502 from a proxy: %v", err)
	}
}
