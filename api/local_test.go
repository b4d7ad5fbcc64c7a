package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestLocalChallenge(t *testing.T) {
	for _, c := range []struct {
		values []string
		want   string
	}{
		{[]string{`Bearer realm="macula"`, `Macula-Local realm="macula", file="/a/b/api-credential"`}, "/a/b/api-credential"},
		{[]string{`macula-local file="/x", realm="macula"`}, "/x"},
		{[]string{`Bearer realm="macula"`}, ""},
		{[]string{`Macula-Local realm="macula"`}, ""},
		{nil, ""},
	} {
		h := http.Header{}
		for _, v := range c.values {
			h.Add("WWW-Authenticate", v)
		}
		if got := localChallenge(h); got != c.want {
			t.Errorf("localChallenge(%q) = %q, want %q", c.values, got, c.want)
		}
	}
}

// A client with Local reads the credential file a 401 names (when it is
// for the client's address), sends the request again with it, body
// included, and keeps it; without Local, or for a bearer token, it does not.
func TestClientFindsCredential(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, CredentialFile)
	var mu sync.Mutex
	var seen []string // Authorization, body
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization")+"|"+string(b))
		mu.Unlock()
		if r.Header.Get("Authorization") != LocalScheme+" s3cret" {
			w.Header().Add("WWW-Authenticate", `Bearer realm="macula"`)
			w.Header().Add("WWW-Authenticate", fmt.Sprintf(`%s realm="macula", file=%q`, LocalScheme, path))
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":{"code":"unauthenticated","message":"who are you"}}`)
			return
		}
		io.WriteString(w, "pong")
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	write := func(api string) {
		b, _ := json.Marshal(LocalCredential{API: api, Credential: "s3cret"})
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	call := func(c *Client) error {
		_, err := c.Call(ctx, "io.acme.ping", []byte("body"), CallOptions{})
		return err
	}
	reset := func() []string {
		mu.Lock()
		defer mu.Unlock()
		s := seen
		seen = nil
		return s
	}

	write(addr)
	c := NewClient(srv.URL)
	defer c.Close()
	if err := call(c); !errorsIsUnauthenticated(err) {
		t.Fatalf("without Local: %v", err)
	}
	reset()
	c.Local = true
	if err := call(c); err != nil {
		t.Fatalf("with Local: %v", err)
	}
	if got := reset(); len(got) != 2 || got[0] != "|body" || got[1] != LocalScheme+" s3cret|body" {
		t.Fatalf("requests %q", got)
	}
	if err := call(c); err != nil {
		t.Fatal(err)
	}
	if got := reset(); len(got) != 1 {
		t.Fatalf("the credential is not kept: %q", got)
	}

	// A file for another address: not sent.
	write("127.0.0.1:1")
	c2 := NewClient(srv.URL)
	defer c2.Close()
	c2.Local = true
	if err := call(c2); !errorsIsUnauthenticated(err) {
		t.Fatalf("a credential for another address: %v", err)
	}
	if got := reset(); len(got) != 1 || got[0] != "|body" {
		t.Fatalf("requests %q", got)
	}

	// A bearer token refused stays refused: the credential does not
	// replace it.
	write(addr)
	c3 := NewClient(srv.URL)
	defer c3.Close()
	c3.Local = true
	c3.Token = func(context.Context, TokenRequest) (string, error) { return "tok", nil }
	if err := call(c3); !errorsIsUnauthenticated(err) {
		t.Fatalf("a refused token: %v", err)
	}
	if got := reset(); len(got) != 1 {
		t.Fatalf("requests %q", got)
	}
}

func errorsIsUnauthenticated(err error) bool { return errors.Is(err, ErrUnauthenticated) }
