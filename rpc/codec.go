package rpc

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// Codec tags a payload's encoding. It travels with every request and
// response, so a handler knows what it got and answers in kind.
type Codec uint8

const (
	// Raw is opaque bytes.
	Raw Codec = 0
	// JSON is RFC 8259 JSON.
	JSON Codec = 1
	// CBOR is RFC 8949 CBOR: compact, binary, and read by every language.
	CBOR Codec = 2
)

func (c Codec) String() string {
	switch c {
	case Raw:
		return "raw"
	case JSON:
		return "json"
	case CBOR:
		return "cbor"
	}
	return fmt.Sprintf("codec(%d)", uint8(c))
}

// ParseCodec returns the codec with the given name (raw, json, cbor).
func ParseCodec(s string) (Codec, error) {
	switch s {
	case "raw", "":
		return Raw, nil
	case "json":
		return JSON, nil
	case "cbor":
		return CBOR, nil
	}
	return Raw, fmt.Errorf("rpc: unknown codec %q: want raw, json or cbor", s)
}

// Marshal encodes v in the codec. Raw takes []byte or string.
func (c Codec) Marshal(v any) ([]byte, error) {
	switch c {
	case JSON:
		return json.Marshal(v)
	case CBOR:
		return cbor.Marshal(v)
	case Raw:
		switch b := v.(type) {
		case []byte:
			return b, nil
		case string:
			return []byte(b), nil
		}
		return nil, fmt.Errorf("rpc: raw codec takes []byte or string, not %T", v)
	}
	return nil, fmt.Errorf("rpc: unknown codec %d", c)
}

// Unmarshal decodes b into v. Raw needs a *[]byte or *string.
func (c Codec) Unmarshal(b []byte, v any) error {
	switch c {
	case JSON:
		return json.Unmarshal(b, v)
	case CBOR:
		return cbor.Unmarshal(b, v)
	case Raw:
		switch p := v.(type) {
		case *[]byte:
			*p = append((*p)[:0], b...)
			return nil
		case *string:
			*p = string(b)
			return nil
		}
		return fmt.Errorf("rpc: raw codec decodes into *[]byte or *string, not %T", v)
	}
	return fmt.Errorf("rpc: unknown codec %d", c)
}

// CallValue calls procedure with in encoded in codec and decodes the answer
// into out (unless out is nil).
func (r *RPC) CallValue(ctx context.Context, codec Codec, procedure string, in, out any, opts ...CallOption) error {
	payload, err := codec.Marshal(in)
	if err != nil {
		return fmt.Errorf("rpc: encoding the request: %w", err)
	}
	reply, err := r.Call(ctx, procedure, payload, append(opts, WithCodec(codec))...)
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if err := codec.Unmarshal(reply, out); err != nil {
		return fmt.Errorf("rpc: decoding the reply of %s: %w", procedure, err)
	}
	return nil
}

// CallJSON calls procedure with in as JSON and decodes the JSON reply into out.
func (r *RPC) CallJSON(ctx context.Context, procedure string, in, out any, opts ...CallOption) error {
	return r.CallValue(ctx, JSON, procedure, in, out, opts...)
}

// CallCBOR calls procedure with in as CBOR and decodes the CBOR reply into out.
func (r *RPC) CallCBOR(ctx context.Context, procedure string, in, out any, opts ...CallOption) error {
	return r.CallValue(ctx, CBOR, procedure, in, out, opts...)
}

// Typed turns a function of Go values into a Handler. The request is decoded
// with its own codec (JSON or CBOR; Raw is read as JSON), and the answer is
// encoded in the same codec. A request that does not decode gets a remote
// error with code bad_request.
func Typed[In, Out any](f func(ctx context.Context, req *Request, in In) (Out, error)) Handler {
	return func(ctx context.Context, req *Request) ([]byte, error) {
		codec := req.Codec
		if codec == Raw {
			codec = JSON
		}
		var in In
		if len(req.Payload) > 0 {
			if err := codec.Unmarshal(req.Payload, &in); err != nil {
				return nil, &RemoteError{Code: CodeBadRequest, Message: fmt.Sprintf("decoding %s request: %v", codec, err)}
			}
		}
		out, err := f(ctx, req, in)
		if err != nil {
			return nil, err
		}
		return codec.Marshal(out)
	}
}
