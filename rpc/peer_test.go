package rpc

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/ucan"
)

func TestCallPeerInternal(t *testing.T) {
	a, b := newNode(t, nil), newNode(t, nil)
	testnet.Connect(t, b.h, a.h)
	if err := a.rpc.Handle("/test/echo", func(_ context.Context, req *Request) ([]byte, error) {
		if req.Verdict == nil || req.Caller.PeerID != b.h.ID() {
			return nil, Errorf("bad", "verdict %v caller %s", req.Verdict, req.Caller.PeerID)
		}
		return append([]byte("a:"), req.Payload...), nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := a.rpc.Handle("/test/echo", echo); !errors.Is(err, ErrAlreadyAdvertised) {
		t.Fatalf("second Handle = %v", err)
	}
	for _, bad := range []string{"io.acme.orders.x", "", "noslash"} {
		if err := a.rpc.Handle(bad, echo); err == nil {
			t.Fatalf("Handle(%q) accepted", bad)
		}
	}
	for _, p := range a.rpc.Advertised() {
		if p == "/test/echo" {
			t.Fatal("an internal procedure is listed as advertised")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := b.rpc.CallPeer(ctx, a.h.ID(), "/test/echo", []byte("hi"))
	if err != nil || string(got) != "a:hi" {
		t.Fatalf("CallPeer = %q, %v", got, err)
	}
	// Not served there: "not advertised", sent.
	_, err = b.rpc.CallPeer(ctx, a.h.ID(), "/test/other", nil)
	var re *RemoteError
	if !errors.As(err, &re) || re.Code != CodeNotAdvertised {
		t.Fatalf("CallPeer of an unserved name = %v", err)
	}
	// A realm procedure is not reachable this way.
	if _, err := b.rpc.CallPeer(ctx, a.h.ID(), "io.acme.orders.get", nil); err == nil {
		t.Fatal("CallPeer accepted a realm procedure")
	}
	// Itself: the handler runs here.
	if err := b.rpc.Handle("/test/self", echo); err != nil {
		t.Fatal(err)
	}
	if got, err := b.rpc.CallPeer(ctx, b.h.ID(), "/test/self", []byte("me")); err != nil || string(got) != "me" {
		t.Fatalf("CallPeer to itself = %q, %v", got, err)
	}
	// A peer that cannot be reached: not sent.
	stranger := newNode(t, nil)
	sid := stranger.h.ID()
	stranger.close()
	_, err = b.rpc.CallPeer(ctx, sid, "/test/echo", nil, WithTimeout(2*time.Second))
	if !errors.Is(err, ErrUnreachable) || !errors.Is(err, ErrDisconnected) {
		t.Fatalf("CallPeer to a closed node = %v, want ErrUnreachable", err)
	}
	a.rpc.Unhandle("/test/echo")
	_, err = b.rpc.CallPeer(ctx, a.h.ID(), "/test/echo", nil)
	if !errors.As(err, &re) || re.Code != CodeNotAdvertised {
		t.Fatalf("CallPeer after Unhandle = %v", err)
	}
}

// TestCallPeerSecureRealm: internal procedures are not checked against
// ucan.Call or ucan.Advertise; the handler gets the caller's verdict and
// decides.
func TestCallPeerSecureRealm(t *testing.T) {
	auth := newAuthority(t)
	// Neither may call or advertise anything the internal name could
	// match; b may publish, which the handler looks for.
	a, at := secureNode(t, auth, nil, string(ucan.Publish), "io.acme.orders.a")
	b, bt := secureNode(t, auth, nil, string(ucan.Publish), "io.acme.orders.b")
	testnet.Connect(t, b.h, a.h)
	at.Set(b.h.ID(), auth.may(t, b.h.ID(), ucan.Publish, "io.acme.orders.b"))
	bt.Set(a.h.ID(), auth.may(t, a.h.ID(), ucan.Publish, "io.acme.orders.a"))
	seenCh := make(chan peer.ID, 1)
	if err := a.rpc.Handle("/test/who", func(_ context.Context, req *Request) ([]byte, error) {
		seenCh <- req.Caller.PeerID
		if err := ucan.Check(req.Verdict, ucan.Publish, "io.acme.orders.b"); err != nil {
			return nil, Errorf(CodeUnauthorized, "%v", err)
		}
		return []byte("ok"), nil
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := b.rpc.CallPeer(ctx, a.h.ID(), "/test/who", nil)
	if err != nil || string(got) != "ok" {
		t.Fatalf("CallPeer in a secure realm = %q, %v", got, err)
	}
	if seen := <-seenCh; seen != b.h.ID() {
		t.Fatalf("the handler saw caller %s, want %s", seen, b.h.ID())
	}
}
