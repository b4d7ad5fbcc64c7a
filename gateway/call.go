package gateway

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/propagation"

	wire "github.com/macula-io/macula/api"
	"github.com/macula-io/macula/node"
	"github.com/macula-io/macula/realm"
	"github.com/macula-io/macula/rpc"
	"github.com/macula-io/macula/tracing"
)

// Limits of the call route.
const (
	// DefaultCallTimeout bounds a call that names no timeout.
	DefaultCallTimeout = 30 * time.Second
	// MaxCallTimeout caps the timeout of a call; a longer one counts as
	// this.
	MaxCallTimeout = 5 * time.Minute
	// DefaultMaxPayload is the payload limit of a call when the node's rpc
	// service does not say its own: rpc's default, 1 MiB.
	DefaultMaxPayload = 1 << 20
)

const callPattern = "POST /v1/call/{procedure}"

// maxPayloadOf returns the payload limit of n's rpc service. rpc does not
// export its Config; a service that says its limit (MaxPayload() int) is
// believed, else rpc's default is assumed. A smaller limit configured in
// rpc is still enforced by rpc.Call itself (ErrTooLarge, 413 as well).
func maxPayloadOf(n *node.Node) int {
	if n == nil {
		return DefaultMaxPayload
	}
	var r any = n.RPC()
	if mp, ok := r.(interface{ MaxPayload() int }); ok && mp.MaxPayload() > 0 {
		return mp.MaxPayload()
	}
	return DefaultMaxPayload
}

// codecOf maps a request's Content-Type to an rpc codec: JSON and CBOR by
// their media types, anything else (or nothing) is raw bytes.
func codecOf(contentType string) rpc.Codec {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return rpc.Raw
	}
	switch mt {
	case wire.ContentTypeJSON:
		return rpc.JSON
	case wire.ContentTypeCBOR:
		return rpc.CBOR
	}
	return rpc.Raw
}

// contentTypeOf is the media type of a codec.
func contentTypeOf(c rpc.Codec) string {
	switch c {
	case rpc.JSON:
		return wire.ContentTypeJSON
	case rpc.CBOR:
		return wire.ContentTypeCBOR
	}
	return wire.ContentTypeRaw
}

// checkProcedure refuses a name that is not a concrete procedure of the
// node's realm, before any other work.
func (a *api) checkProcedure(procedure string) error {
	if err := realm.ValidateProcedure(a.n.Realm(), procedure); err != nil {
		return newAPIError(http.StatusBadRequest, wire.CodeInvalidName, err.Error())
	}
	if len(procedure) > 255 { // the rpc wire's limit
		return newAPIError(http.StatusBadRequest, wire.CodeInvalidName,
			fmt.Sprintf("procedure %q is %d bytes; the limit is 255", procedure, len(procedure)))
	}
	return nil
}

// callTimeout reads the timeout of a call: see requestTimeout.
func callTimeout(r *http.Request) (time.Duration, error) {
	return requestTimeout(r, DefaultCallTimeout, MaxCallTimeout)
}

// requestTimeout reads a request's timeout from the Macula-Timeout header
// or the timeout query parameter: a positive Go duration, capped to max;
// def when neither is given.
func requestTimeout(r *http.Request, def, max time.Duration) (time.Duration, error) {
	s, from := r.Header.Get(wire.TimeoutHeader), "header "+wire.TimeoutHeader
	if s == "" {
		s, from = r.URL.Query().Get("timeout"), "timeout"
	}
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil || d <= 0 {
		return 0, badRequest("%s %q: want a positive duration such as 5s or 1500ms, at most %v", from, s, max)
	}
	return min(d, max), nil
}

// boolParam reads an optional boolean query parameter.
func boolParam(r *http.Request, name string) (bool, error) {
	q := r.URL.Query()
	if !q.Has(name) {
		return false, nil
	}
	b, err := strconv.ParseBool(q.Get(name))
	if err != nil {
		return false, badRequest("%s %q: want true or false", name, q.Get(name))
	}
	return b, nil
}

// postCall calls a procedure with the request body as its payload and
// answers with the reply, in the codec of the request.
func (a *api) postCall(w http.ResponseWriter, r *http.Request) error {
	procedure := r.PathValue("procedure")
	if err := a.checkProcedure(procedure); err != nil {
		return err
	}
	timeout, err := callTimeout(r)
	if err != nil {
		return err
	}
	idempotent, err := boolParam(r, "idempotent")
	if err != nil {
		return err
	}
	codec := codecOf(r.Header.Get("Content-Type"))
	payload, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return newAPIError(http.StatusRequestEntityTooLarge, wire.CodeTooLarge,
				fmt.Sprintf("payload over the limit of %d bytes", a.maxPayload))
		}
		return badRequest("reading the payload: %v", err)
	}
	release, err := a.admit("calls")
	if err != nil {
		return err
	}
	defer release()
	opts := []rpc.CallOption{rpc.WithTimeout(timeout), rpc.WithCodec(codec)}
	if idempotent {
		opts = append(opts, rpc.Idempotent())
	}
	// A traceparent header continues the program's trace through the call.
	ctx := tracing.Propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	reply, err := a.n.RPC().Call(ctx, procedure, payload, opts...)
	if err != nil {
		return callError(procedure, timeout, codec, err)
	}
	// The callee answers in the codec of the request (rpc's rule).
	w.Header().Set("Content-Type", contentTypeOf(codec))
	w.Header().Set("Content-Length", strconv.Itoa(len(reply)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(reply)
	return nil
}

// callError turns the error of rpc.Call into an API error with a message
// that names the procedure; classify picks the status of those it leaves.
func callError(procedure string, timeout time.Duration, codec rpc.Codec, err error) error {
	var re *rpc.RemoteError
	switch {
	case errors.Is(err, realm.ErrInvalid):
		return newAPIError(http.StatusBadRequest, wire.CodeInvalidName, err.Error())
	case errors.Is(err, rpc.ErrUnauthorized):
		return newAPIError(http.StatusForbidden, wire.CodeUnauthorized, fmt.Sprintf("%s: %s", procedure, trimRPC(err)))
	case errors.As(err, &re) && re.Code == rpc.CodeOverloaded:
		return newAPIError(http.StatusServiceUnavailable, wire.CodeOverloaded, fmt.Sprintf("%s: %s", procedure, trimRPC(re)))
	case errors.As(err, &re):
		return &apiError{status: http.StatusUnprocessableEntity, code: wire.CodeRemoteError, message: trimRPC(re), remote: remoteDetail(re, codec)}
	case errors.Is(err, rpc.ErrNotFound):
		return newAPIError(http.StatusNotFound, wire.CodeNotFound, fmt.Sprintf("no node of the realm advertises %s", procedure))
	case errors.Is(err, rpc.ErrTimeout):
		return newAPIError(http.StatusGatewayTimeout, wire.CodeTimeout, fmt.Sprintf("%s: no answer within %v", procedure, timeout))
	case errors.Is(err, rpc.ErrDisconnected):
		return newAPIError(http.StatusBadGateway, wire.CodeDisconnected, fmt.Sprintf("%s: %s", procedure, trimRPC(err)))
	case errors.Is(err, rpc.ErrTooLarge):
		return newAPIError(http.StatusRequestEntityTooLarge, wire.CodeTooLarge, trimRPC(err))
	}
	return err
}

// trimRPC is an error's text without the "rpc: " of its package.
func trimRPC(err error) string { return strings.TrimPrefix(err.Error(), "rpc: ") }

// remoteDetail is a handler's error as the API shows it: its data as a
// JSON value when the call spoke JSON and the data is JSON, else base64.
func remoteDetail(re *rpc.RemoteError, codec rpc.Codec) *wire.RemoteDetail {
	d := &wire.RemoteDetail{Code: re.Code, Message: re.Message}
	if len(re.Data) == 0 {
		return d
	}
	if codec == rpc.JSON && json.Valid(re.Data) {
		d.Data, d.DataEncoding = json.RawMessage(re.Data), wire.DataJSON
		return d
	}
	b, _ := json.Marshal(base64.StdEncoding.EncodeToString(re.Data))
	d.Data, d.DataEncoding = b, wire.DataBase64
	return d
}
