package otlp

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/macula-io/macula/internal/testnet"
)

func TestMain(m *testing.M) { testnet.VerifyTestMain(m) }

func TestCheckEndpoint(t *testing.T) {
	for _, bad := range []string{"", "127.0.0.1:4318", "grpc://x:4317", "http://", "::"} {
		if err := CheckEndpoint(bad); !errors.Is(err, ErrConfig) {
			t.Errorf("CheckEndpoint(%q) = %v, want ErrConfig", bad, err)
		}
		if _, err := New(Config{Endpoint: bad}); !errors.Is(err, ErrConfig) {
			t.Errorf("New(%q) = %v, want ErrConfig", bad, err)
		}
	}
}

// TestExport: a span ended before Close reaches the collector's
// /v1/traces as OTLP protobuf, and Close stops the exporter's goroutines.
func TestExport(t *testing.T) {
	var posts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/v1/traces" && r.Header.Get("Content-Type") == "application/x-protobuf" && len(b) > 0 {
			posts.Add(1)
		}
	}))
	defer srv.Close()
	p, err := New(Config{Endpoint: srv.URL, Realm: "io.acme", Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	_, span := p.Tracer("test").Start(context.Background(), "work")
	span.End()
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if posts.Load() == 0 {
		t.Error("the collector got no export")
	}
}
