// Package otlp exports a node's spans to an OpenTelemetry collector over
// OTLP/HTTP (protobuf), for `macula-node run --otlp-endpoint URL`. A Go
// program that embeds a node can pass its own TracerProvider instead
// (node.Config.RPC.TracerProvider); without one no span is made at all.
package otlp

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Config names the collector and this node.
type Config struct {
	// Endpoint is the collector's OTLP/HTTP base URL, such as
	// http://127.0.0.1:4318 (spans go to its /v1/traces) or a full URL
	// ending in the path to post to.
	Endpoint string
	// Realm and Node are recorded on every span's resource
	// (macula.realm, macula.node; service.name is "macula-node").
	Realm, Node string
}

// ErrConfig wraps a bad Config.
var ErrConfig = errors.New("otlp: bad config")

// Provider is a TracerProvider that batches spans (a bounded queue of
// 2048: when the collector is slow, spans are dropped, never the calls)
// and posts them to the collector.
type Provider struct {
	*sdktrace.TracerProvider
}

// New checks cfg and returns a Provider. Nothing is sent until a span
// ends; a collector that is down costs the node nothing but dropped spans.
func New(cfg Config) (*Provider, error) {
	if err := CheckEndpoint(cfg.Endpoint); err != nil {
		return nil, err
	}
	u, _ := url.Parse(cfg.Endpoint)
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/traces"
	}
	exp := newExporter(u.String())
	res := resource.NewSchemaless(
		attribute.String("service.name", "macula-node"),
		attribute.String("macula.realm", cfg.Realm),
		attribute.String("macula.node", cfg.Node),
	)
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return &Provider{TracerProvider: tp}, nil
}

// CheckEndpoint says whether endpoint is a collector's URL that New takes.
func CheckEndpoint(endpoint string) error {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%w: endpoint %q: want an http or https URL such as http://127.0.0.1:4318", ErrConfig, endpoint)
	}
	return nil
}

// Close sends the spans still queued (within ctx) and stops the exporter.
func (p *Provider) Close(ctx context.Context) error {
	return p.Shutdown(ctx)
}
