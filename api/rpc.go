package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// Media types of the rpc codecs: a call's Content-Type picks its codec, and
// the reply comes in the same one.
const (
	ContentTypeJSON = "application/json"
	ContentTypeCBOR = "application/cbor"
	ContentTypeRaw  = "application/octet-stream"
)

// TimeoutHeader carries the timeout of a call, an actor message or a
// waiting publish, a Go duration; the query parameter timeout does the
// same, and the header wins.
const TimeoutHeader = "Macula-Timeout"

// RemoteDetail is the error a procedure's handler answered a call with
// (an rpc.RemoteError), in the body of a 422 remote_error answer.
type RemoteDetail struct {
	// Code is the handler's code, such as "invalid_order".
	Code    string `json:"code"`
	Message string `json:"message"`
	// Data is the handler's optional detail. It is the JSON value itself
	// when the call's codec is JSON and the detail is valid JSON
	// (DataEncoding "json"); otherwise a JSON string holding the bytes in
	// standard base64 (DataEncoding "base64"). Absent when there is none.
	Data         json.RawMessage `json:"data,omitempty"`
	DataEncoding string          `json:"data_encoding,omitempty"`
}

// Encodings of RemoteDetail.Data.
const (
	DataJSON   = "json"
	DataBase64 = "base64"
)

// Bytes returns the detail as the handler sent it: the JSON text, or the
// decoded base64. It is nil when there is none.
func (d *RemoteDetail) Bytes() ([]byte, error) {
	switch {
	case d == nil || len(d.Data) == 0:
		return nil, nil
	case d.DataEncoding == DataBase64:
		var s string
		if err := json.Unmarshal(d.Data, &s); err != nil {
			return nil, fmt.Errorf("remote error data: %w", err)
		}
		return base64.StdEncoding.DecodeString(s)
	}
	return []byte(d.Data), nil
}

// AdvertiseRequest is the body of POST /v1/advertise/{procedure}.
type AdvertiseRequest struct {
	// URL is the webhook each call is POSTed to, http or https, on
	// loopback unless the gateway allows others.
	URL string `json:"url"`
	// Timeout bounds one webhook request, as a Go duration ("30s"); the
	// call's own deadline bounds it too. "" or "0s": the call's deadline
	// alone.
	Timeout string `json:"timeout,omitempty"`
	// Lease is how long the advertisement lasts unless renewed by the same
	// request again ("15s", at least gateway.MinLease). "" or "0s": until
	// unadvertised or the gateway stops.
	Lease string `json:"lease,omitempty"`
}

// Advertisement is a procedure advertised on the node, in the answers of
// the /v1/advertise routes. URL and the fields after it are set only for a
// procedure advertised through the API with a webhook.
type Advertisement struct {
	Procedure string `json:"procedure"`
	URL       string `json:"url,omitempty"`
	// Timeout and Lease are Go durations; absent when there is none.
	Timeout string `json:"timeout,omitempty"`
	Lease   string `json:"lease,omitempty"`
	// Expires is when the lease ends unless renewed.
	Expires *time.Time `json:"expires,omitempty"`
	// Announced is true once the procedure's DHT announcement is done,
	// false while it is pending (no peer yet, or it failed; the node
	// retries it). The node's connected peers know the procedure at once
	// either way, from their links.
	Announced bool `json:"announced"`
}

// CallOptions tune one Call.
type CallOptions struct {
	// Timeout bounds the call on the node (the Macula-Timeout header),
	// capped there (5 minutes by default). 0: a tenth inside ctx's deadline
	// if it has one, else the node's default call timeout (30s).
	Timeout time.Duration
	// ContentType is the payload's media type, which picks its codec:
	// application/json, application/cbor, anything else raw bytes. The
	// reply comes in the same codec. "": raw bytes.
	ContentType string
	// Idempotent lets the node retry the call on another provider when the
	// connection is lost after it was sent (it may then run twice).
	Idempotent bool
}

// Call calls procedure through the node with payload and returns the
// reply. A failed call is an *APIError whose Code says why: CodeNotFound,
// CodeTimeout, CodeDisconnected, CodeRemoteError (with Remote set),
// CodeUnauthorized, CodeInvalidName, CodeTooLarge.
func (c *Client) Call(ctx context.Context, procedure string, payload []byte, opts CallOptions) ([]byte, error) {
	path := "/v1/call/" + url.PathEscape(procedure)
	var q url.Values
	if opts.Idempotent {
		q = url.Values{"idempotent": {"true"}}
	}
	h := http.Header{}
	if opts.ContentType != "" {
		h.Set("Content-Type", opts.ContentType)
	} else {
		h.Set("Content-Type", ContentTypeRaw)
	}
	setTimeout(ctx, h, opts.Timeout)
	return c.doRaw(ctx, scope{cmd: CommandCall, res: procedure}, http.MethodPost, path, q, h, payload)
}

// Advertise advertises procedure on the node, served by POSTing each call
// to the webhook url (see package gateway for the webhook's contract).
// With a lease, the advertisement ends unless Advertise is called again
// with the same url within the lease; 0 means no lease. Calling it again
// with the same url renews it; another url is a CodeConflict error.
func (c *Client) Advertise(ctx context.Context, procedure, url string, lease time.Duration) error {
	_, err := c.AdvertiseWebhook(ctx, procedure, AdvertiseRequest{URL: url, Lease: durationString(lease)})
	return err
}

// AdvertiseWebhook is Advertise with every field of the request; it
// returns the advertisement as the node holds it.
func (c *Client) AdvertiseWebhook(ctx context.Context, procedure string, req AdvertiseRequest) (*Advertisement, error) {
	var out Advertisement
	if err := c.do(ctx, scope{cmd: CommandAdvertise, res: procedure}, http.MethodPost, "/v1/advertise/"+url.PathEscape(procedure), nil, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Unadvertise withdraws a procedure advertised through the API.
func (c *Client) Unadvertise(ctx context.Context, procedure string) error {
	return c.do(ctx, scope{cmd: CommandAdvertise, res: procedure}, http.MethodDelete, "/v1/advertise/"+url.PathEscape(procedure), nil, nil, nil)
}

// Advertised returns the procedures advertised on the node, with the
// webhook of those advertised through the API.
func (c *Client) Advertised(ctx context.Context) ([]Advertisement, error) {
	var out []Advertisement
	if err := c.do(ctx, adminScope, http.MethodGet, "/v1/advertise", nil, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}
