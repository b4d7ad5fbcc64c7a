package otlp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	collpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

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

// collector is a test's OTLP/HTTP collector: it decodes every post as
// the collector protocol's ExportTraceServiceRequest (the package the node
// no longer links) and answers with the statuses queued in answers first.
type collector struct {
	srv     *httptest.Server
	mu      sync.Mutex
	reqs    []*collpb.ExportTraceServiceRequest
	posts   int
	answers []int
}

func newCollector(t *testing.T, answers ...int) *collector {
	c := &collector{answers: answers}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		c.mu.Lock()
		defer c.mu.Unlock()
		c.posts++
		if len(c.answers) > 0 {
			code := c.answers[0]
			c.answers = c.answers[1:]
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(code)
			return
		}
		var req collpb.ExportTraceServiceRequest
		if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
			t.Errorf("post to %s as %q", r.URL.Path, r.Header.Get("Content-Type"))
		} else if err := proto.Unmarshal(b, &req); err != nil {
			t.Errorf("the post is no ExportTraceServiceRequest: %v", err)
		} else {
			c.reqs = append(c.reqs, &req)
		}
		out, _ := proto.Marshal(&collpb.ExportTraceServiceResponse{})
		_, _ = w.Write(out)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

// TestExport: spans ended before Close reach the collector's /v1/traces as
// an OTLP protobuf request that the collector protocol's own types decode,
// with every field the node sets: resource, scope, ids, parent, kind,
// status (whose numbers differ between OpenTelemetry and OTLP), attributes
// of each type, events and links; and Close stops the exporter's goroutines.
func TestExport(t *testing.T) {
	c := newCollector(t)
	p, err := New(Config{Endpoint: c.srv.URL, Realm: "io.acme", Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	tr := p.Tracer("macula/rpc", trace.WithInstrumentationVersion("v1"))
	ctx, parent := tr.Start(context.Background(), "call", trace.WithSpanKind(trace.SpanKindClient))
	_, child := tr.Start(ctx, "work", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithLinks(trace.Link{SpanContext: parent.SpanContext(), Attributes: []attribute.KeyValue{attribute.Int("n", 1)}}))
	child.SetAttributes(attribute.String("s", "x"), attribute.Int64("i", -7), attribute.Bool("b", true),
		attribute.Float64("f", 1.5), attribute.StringSlice("ss", []string{"a", "b"}), attribute.Int64Slice("is", []int64{1, 2}))
	child.AddEvent("retry", trace.WithAttributes(attribute.Int("attempt", 2)))
	child.SetStatus(codes.Error, "boom")
	child.End()
	parent.SetStatus(codes.Ok, "")
	parent.End()
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	spans := map[string]*tracepb.Span{}
	for _, req := range c.reqs {
		for _, rs := range req.ResourceSpans {
			res := attrs(rs.Resource.Attributes)
			if res["service.name"] != "macula-node" || res["macula.realm"] != "io.acme" || res["macula.node"] != "n1" {
				t.Errorf("resource %v", res)
			}
			for _, ss := range rs.ScopeSpans {
				if ss.Scope.GetName() != "macula/rpc" || ss.Scope.GetVersion() != "v1" {
					t.Errorf("scope %v", ss.Scope)
				}
				for _, s := range ss.Spans {
					spans[s.Name] = s
				}
			}
		}
	}
	call, work := spans["call"], spans["work"]
	if call == nil || work == nil {
		t.Fatalf("the collector got spans %v, want call and work", spans)
	}
	pid, wid := parent.SpanContext().SpanID(), child.SpanContext().SpanID()
	tid := parent.SpanContext().TraceID()
	if !bytes.Equal(work.TraceId, tid[:]) || !bytes.Equal(work.SpanId, wid[:]) || !bytes.Equal(work.ParentSpanId, pid[:]) ||
		!bytes.Equal(call.SpanId, pid[:]) || call.ParentSpanId != nil {
		t.Errorf("ids: work %x/%x parent %x, call %x parent %x", work.TraceId, work.SpanId, work.ParentSpanId, call.SpanId, call.ParentSpanId)
	}
	if work.Kind != tracepb.Span_SPAN_KIND_SERVER || call.Kind != tracepb.Span_SPAN_KIND_CLIENT {
		t.Errorf("kinds %v %v", work.Kind, call.Kind)
	}
	if work.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR || work.Status.GetMessage() != "boom" ||
		call.Status.GetCode() != tracepb.Status_STATUS_CODE_OK {
		t.Errorf("statuses %v %v", work.Status, call.Status)
	}
	if work.StartTimeUnixNano == 0 || work.EndTimeUnixNano < work.StartTimeUnixNano || work.Flags&0xff != 1 {
		t.Errorf("times %d-%d, flags %x", work.StartTimeUnixNano, work.EndTimeUnixNano, work.Flags)
	}
	got := attrs(work.Attributes)
	want := map[string]string{"s": "x", "i": "-7", "b": "true", "f": "1.5", "ss": "[a b]", "is": "[1 2]"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("attributes %v, want %v", got, want)
	}
	if len(work.Events) != 1 || work.Events[0].Name != "retry" || attrs(work.Events[0].Attributes)["attempt"] != "2" {
		t.Errorf("events %v", work.Events)
	}
	if len(work.Links) != 1 || !bytes.Equal(work.Links[0].SpanId, pid[:]) || attrs(work.Links[0].Attributes)["n"] != "1" {
		t.Errorf("links %v", work.Links)
	}
}

// attrs renders OTLP attributes as strings, arrays as [a b].
func attrs(kvs []*commonpb.KeyValue) map[string]string {
	out := map[string]string{}
	var str func(v *commonpb.AnyValue) string
	str = func(v *commonpb.AnyValue) string {
		switch x := v.Value.(type) {
		case *commonpb.AnyValue_StringValue:
			return x.StringValue
		case *commonpb.AnyValue_IntValue:
			return fmt.Sprint(x.IntValue)
		case *commonpb.AnyValue_BoolValue:
			return fmt.Sprint(x.BoolValue)
		case *commonpb.AnyValue_DoubleValue:
			return fmt.Sprint(x.DoubleValue)
		case *commonpb.AnyValue_ArrayValue:
			var parts []string
			for _, e := range x.ArrayValue.Values {
				parts = append(parts, str(e))
			}
			return "[" + strings.Join(parts, " ") + "]"
		}
		return fmt.Sprintf("%T", v.Value)
	}
	for _, kv := range kvs {
		out[kv.Key] = str(kv.Value)
	}
	return out
}

// TestExportRetriesBusyCollector: a collector that answers 503 (busy) gets
// the same spans again after its Retry-After; one that refuses them (400)
// is not asked again, and the export says why.
func TestExportRetriesBusyCollector(t *testing.T) {
	busy := newCollector(t, http.StatusServiceUnavailable)
	p, err := New(Config{Endpoint: busy.srv.URL, Realm: "io.acme", Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	_, span := p.Tracer("test").Start(context.Background(), "work")
	span.End()
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	busy.mu.Lock()
	if busy.posts != 2 || len(busy.reqs) != 1 {
		t.Errorf("busy collector: %d posts, %d taken; want 2, 1", busy.posts, len(busy.reqs))
	}
	busy.mu.Unlock()

	refusing := newCollector(t, http.StatusBadRequest)
	e := newExporter(refusing.srv.URL + "/v1/traces")
	defer e.Shutdown(context.Background())
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(recorder{}))
	_, s := tp.Tracer("test").Start(context.Background(), "work")
	s.End()
	ro := s.(sdktrace.ReadOnlySpan)
	err = e.ExportSpans(context.Background(), []sdktrace.ReadOnlySpan{ro})
	if err == nil || !strings.Contains(err.Error(), "400") {
		t.Errorf("export to a refusing collector: %v, want its 400", err)
	}
	refusing.mu.Lock()
	if refusing.posts != 1 {
		t.Errorf("refusing collector: %d posts, want 1", refusing.posts)
	}
	refusing.mu.Unlock()
	_ = tp.Shutdown(context.Background())
}

// recorder is a SpanExporter that drops what it gets: the test only needs
// ended spans to hand to the exporter under test.
type recorder struct{}

func (recorder) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (recorder) Shutdown(context.Context) error                             { return nil }
