package rpc

import (
	"encoding/binary"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel/trace"

	"github.com/macula-io/macula/tracing"
)

// Frame types (append only).
const (
	frameRequest  uint8 = 1
	frameResponse uint8 = 2
	frameCancel   uint8 = 3
	// frameAdsSet carries the sender's advertised procedures, replacing
	// what it said before on the stream; frameAdsAdd carries more of the
	// same list, when it did not fit one frame (ads.go).
	frameAdsSet uint8 = 4
	frameAdsAdd uint8 = 5
)

const wireVersion = 1

// wireVersionTrace is the version of a request frame that carries a trace
// context (package tracing) after the procedure; allowed only on streams
// of ProtocolTrace. Every other frame stays at wireVersion.
const wireVersionTrace = 2

// Request flags.
const (
	flagIdempotent uint8 = 1 << 0
)

const (
	statusOK    uint8 = 0
	statusError uint8 = 1
)

// Header room a frame needs beyond its payload: the fixed fields, a
// procedure name (at most 255 bytes), an error code and message.
const frameOverhead = 8 + 8 + 1 + 1 + 1 + 255 + 1 + 255 + 2 + 65535

var errMalformed = errors.New("rpc: malformed frame")

type request struct {
	id        uint64
	timeout   int64 // ns left when sent; 0 none
	flags     uint8
	codec     Codec
	procedure string
	// trace is the binary trace context of a version 2 frame, sc what it
	// says; nil and zero in version 1.
	trace   []byte
	sc      trace.SpanContext
	payload []byte
}

// appendRequest appends a request body: of version 2 when r carries a
// trace context, else of version 1.
func appendRequest(dst []byte, r *request) []byte {
	dst = binary.BigEndian.AppendUint64(dst, r.id)
	dst = binary.BigEndian.AppendUint64(dst, uint64(r.timeout))
	dst = append(dst, r.flags, uint8(r.codec), uint8(len(r.procedure)))
	dst = append(dst, r.procedure...)
	dst = append(dst, r.trace...)
	return append(dst, r.payload...)
}

// parseRequestVersion decodes a request body of the frame version v. The
// payload aliases b; the trace context (version 2) is checked.
func parseRequestVersion(b []byte, v uint8) (request, error) {
	r, err := parseRequest(b)
	if err != nil || v != wireVersionTrace {
		return r, err
	}
	sc, rest, err := tracing.Parse(r.payload)
	if err != nil {
		return r, fmt.Errorf("%w: %v", errMalformed, err)
	}
	r.trace, r.payload = r.payload[:len(r.payload)-len(rest)], rest
	r.sc = sc
	return r, nil
}

// parseRequest decodes a request body of version 1. The payload aliases b.
func parseRequest(b []byte) (request, error) {
	var r request
	if len(b) < 19 {
		return r, fmt.Errorf("%w: request of %d bytes", errMalformed, len(b))
	}
	r.id = binary.BigEndian.Uint64(b)
	r.timeout = int64(binary.BigEndian.Uint64(b[8:]))
	r.flags, r.codec = b[16], Codec(b[17])
	n := int(b[18])
	if len(b) < 19+n {
		return r, fmt.Errorf("%w: procedure name cut short", errMalformed)
	}
	r.procedure = string(b[19 : 19+n])
	r.payload = b[19+n:]
	return r, nil
}

type response struct {
	id      uint64
	status  uint8
	codec   Codec
	payload []byte       // status ok
	err     *RemoteError // status error
}

func appendResponse(dst []byte, r *response) []byte {
	dst = binary.BigEndian.AppendUint64(dst, r.id)
	dst = append(dst, r.status, uint8(r.codec))
	if r.status == statusOK {
		return append(dst, r.payload...)
	}
	code, msg := r.err.Code, r.err.Message
	if len(code) > 255 {
		code = code[:255]
	}
	if len(msg) > 65535 {
		msg = msg[:65535]
	}
	dst = append(dst, uint8(len(code)))
	dst = append(dst, code...)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(msg)))
	dst = append(dst, msg...)
	return append(dst, r.err.Data...)
}

// parseResponse decodes a response body. Payload and Data alias b.
func parseResponse(b []byte) (response, error) {
	var r response
	if len(b) < 10 {
		return r, fmt.Errorf("%w: response of %d bytes", errMalformed, len(b))
	}
	r.id = binary.BigEndian.Uint64(b)
	r.status, r.codec = b[8], Codec(b[9])
	b = b[10:]
	switch r.status {
	case statusOK:
		r.payload = b
		return r, nil
	case statusError:
		if len(b) < 1 || len(b) < 1+int(b[0])+2 {
			return r, fmt.Errorf("%w: error code cut short", errMalformed)
		}
		n := int(b[0])
		code := string(b[1 : 1+n])
		b = b[1+n:]
		m := int(binary.BigEndian.Uint16(b))
		if len(b) < 2+m {
			return r, fmt.Errorf("%w: error message cut short", errMalformed)
		}
		r.err = &RemoteError{Code: code, Message: string(b[2 : 2+m]), Data: b[2+m:]}
		return r, nil
	}
	return r, fmt.Errorf("%w: status %d", errMalformed, r.status)
}

func appendCancel(dst []byte, id uint64) []byte { return binary.BigEndian.AppendUint64(dst, id) }

func parseCancel(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("%w: cancel of %d bytes", errMalformed, len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}

// appendProcedures appends procedures as (length uint8 | name) until the
// body would pass max bytes, and returns the ones left over.
func appendProcedures(dst []byte, procs []string, max int) ([]byte, []string) {
	size := 0
	for i, p := range procs {
		if size+1+len(p) > max {
			return dst, procs[i:]
		}
		size += 1 + len(p)
		dst = append(dst, uint8(len(p)))
		dst = append(dst, p...)
	}
	return dst, nil
}

// parseProcedures decodes a list of procedures. Their names are checked by
// the caller.
func parseProcedures(b []byte) ([]string, error) {
	var out []string
	for len(b) > 0 {
		n := int(b[0])
		if n == 0 || len(b) < 1+n {
			return nil, fmt.Errorf("%w: procedure list cut short", errMalformed)
		}
		out = append(out, string(b[1:1+n]))
		b = b[1+n:]
	}
	return out, nil
}
