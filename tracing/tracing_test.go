package tracing

import (
	"bytes"
	"context"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

func sample(t testing.TB, state string) trace.SpanContext {
	ts, err := trace.ParseTraceState(state)
	if err != nil {
		t.Fatal(err)
	}
	return trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
		SpanID:  trace.SpanID{1, 2, 3, 4, 5, 6, 7, 8}, TraceFlags: trace.FlagsSampled, TraceState: ts, Remote: true,
	})
}

func TestRoundTrip(t *testing.T) {
	for _, state := range []string{"", "vendor=abc,other=1"} {
		sc := sample(t, state)
		b := Append([]byte("x"), sc)
		got, rest, err := Parse(append(b[1:], "payload"...))
		if err != nil {
			t.Fatal(err)
		}
		if !got.Equal(sc) || string(rest) != "payload" {
			t.Errorf("round trip of %v: %v, rest %q", sc, got, rest)
		}
	}
	if FromContext(context.Background()) != nil {
		t.Error("a context without a span has a trace context")
	}
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), sample(t, ""))
	if b := FromContext(ctx); len(b) != Len {
		t.Errorf("FromContext: %d bytes, want %d", len(b), Len)
	}
}

func TestParseRefuses(t *testing.T) {
	good := Append(nil, sample(t, "a=b"))
	for name, b := range map[string][]byte{
		"short":     good[:Len-1],
		"version":   append([]byte{1}, good[1:]...),
		"zero ids":  make([]byte, Len),
		"state cut": good[:len(good)-1],
		"bad state": append(append(bytes.Clone(good[:Len-2]), 0, 3), "A=B"...),
	} {
		if _, _, err := Parse(b); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(Append(nil, sample(f, "")))
	f.Add(Append(nil, sample(f, "vendor=abc")))
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, b []byte) {
		sc, rest, err := Parse(b)
		if err != nil {
			return
		}
		if !sc.IsValid() || len(rest) > len(b)-Len {
			t.Fatalf("Parse(%x) = %v, rest %d", b, sc, len(rest))
		}
		again, _, err := Parse(Append(nil, sc))
		if err != nil || !again.Equal(sc) {
			t.Fatalf("re-parse of %v: %v, %v", sc, again, err)
		}
	})
}
