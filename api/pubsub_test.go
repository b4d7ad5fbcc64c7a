package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"testing"
)

// TestSubscribeEventBytes checks the decoding of both payload encodings.
func TestSubscribeEventBytes(t *testing.T) {
	raw := []byte{0, 1, 0xff}
	b64, _ := json.Marshal(base64.StdEncoding.EncodeToString(raw))
	for _, tc := range []struct {
		ev   SubscribeEvent
		want []byte
	}{
		{SubscribeEvent{Payload: json.RawMessage(`{"a": 1}`)}, []byte(`{"a": 1}`)},
		{SubscribeEvent{Payload: b64, PayloadEncoding: PayloadBase64}, raw},
	} {
		got, err := tc.ev.Bytes()
		if err != nil || !bytes.Equal(got, tc.want) {
			t.Errorf("Bytes(%s) = %q, %v; want %q", tc.ev.Payload, got, err, tc.want)
		}
	}
	if _, err := (&SubscribeEvent{Payload: json.RawMessage(`1`), PayloadEncoding: PayloadBase64}).Bytes(); err == nil {
		t.Errorf("a base64 payload that is not a string decodes")
	}
}
