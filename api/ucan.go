package api

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
)

// Revoke hands a revocation record (ucan.Revoke, signed by the realm
// authority) to the node, which enforces it at once and passes it on to the
// realm. An open realm answers CodeOpenRealm; a record that is not the
// authority's, CodeBadRequest.
func (c *Client) Revoke(ctx context.Context, record []byte) error {
	h := http.Header{"Content-Type": {ContentTypeRaw}, "Accept": {"application/json"}}
	_, err := c.doRaw(ctx, adminScope, http.MethodPost, "/v1/ucan/revocations", nil, h, record)
	return err
}

// Revocations returns the revocation records in force on the node (none in
// an open realm).
func (c *Client) Revocations(ctx context.Context) ([][]byte, error) {
	var texts []string
	if err := c.do(ctx, adminScope, http.MethodGet, "/v1/ucan/revocations", nil, nil, &texts); err != nil {
		return nil, err
	}
	out := make([][]byte, 0, len(texts))
	for _, t := range texts {
		b, err := base64.RawURLEncoding.DecodeString(t)
		if err != nil {
			return nil, fmt.Errorf("api: GET /v1/ucan/revocations: a record that is not base64url: %w", err)
		}
		out = append(out, b)
	}
	return out, nil
}
