package gateway

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"

	wire "github.com/macula-io/macula/api"
	"github.com/macula-io/macula/ucan"
)

// getRevocations lists the revocation records in force on the node, each
// in unpadded base64url; [] in an open realm.
func (a *api) getRevocations(_ *http.Request) (int, any, error) {
	recs := a.n.Revocations()
	out := make([]string, 0, len(recs))
	for _, r := range recs {
		out = append(out, base64.RawURLEncoding.EncodeToString(r))
	}
	return http.StatusOK, out, nil
}

// postRevocation puts a revocation record (ucan.Revoke) in force on the
// node, which passes it on to the realm. The body is the record, raw or
// as base64 text (either alphabet, padded or not).
func (a *api) postRevocation(r *http.Request) (int, any, error) {
	if !a.n.Secure() {
		return 0, nil, newAPIError(http.StatusConflict, wire.CodeOpenRealm,
			"the realm is open (no authority): there is nothing to revoke")
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return 0, nil, newAPIError(http.StatusRequestEntityTooLarge, wire.CodeTooLarge, fmt.Sprintf("body over %d bytes", MaxBodyBytes))
		}
		return 0, nil, badRequest("reading the record: %v", err)
	}
	rec := recordBytes(body)
	if len(rec) == 0 {
		return 0, nil, badRequest("the body is empty: send a revocation record (macula-node ucan revoke), raw or in base64")
	}
	err = a.n.Revoke(r.Context(), rec)
	switch {
	case err == nil:
		a.log.Info("revocation record accepted through the API", "remote", r.RemoteAddr)
		return http.StatusNoContent, nil, nil
	case errors.Is(err, ucan.ErrBusy):
		return 0, nil, newAPIError(http.StatusServiceUnavailable, wire.CodeUnavailable, ucan.Reason(err))
	case errors.Is(err, ucan.ErrUnauthorized):
		return 0, nil, badRequest("not a revocation record of this realm's authority: %s", ucan.Reason(err))
	}
	return 0, nil, err
}

// recordBytes returns the record in a body: its base64 text decoded, or
// the body as it is (a raw record is DAG-CBOR, whose first byte is never a
// base64 character, so the two cannot be confused).
func recordBytes(body []byte) []byte {
	text := string(bytes.TrimSpace(body))
	for _, enc := range []*base64.Encoding{base64.RawURLEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.StdEncoding} {
		if b, err := enc.DecodeString(text); err == nil {
			return b
		}
	}
	return body
}
