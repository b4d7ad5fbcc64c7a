package registry

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
)

// Bad input gets a clear error and changes nothing.

func TestBadKeys(t *testing.T) {
	r := newRegistry(t, nil)
	p := spawn(t, r)
	long := strings.Repeat("a/", 200) + "a"
	for _, key := range []string{
		"", "/", "/a", "a//b", "a b", "a.b", "ä/b", "user/*", "user/>", "-a", "a/_b",
		strings.Repeat("x", 64), long, "a\x00b", "a\nb",
	} {
		for name, f := range map[string]func() error{
			"Register": func() error { return p.Register(key, nil) },
			"Join":     func() error { return p.Join(key, nil) },
			"Lookup":   func() error { _, err := r.Lookup(key); return err },
		} {
			err := f()
			if !errors.Is(err, ErrInvalidKey) {
				t.Errorf("%s(%q) = %v, want ErrInvalidKey", name, key, err)
				continue
			}
			if len(err.Error()) > 400 {
				t.Errorf("%s(%q): an error of %d bytes", name, key, len(err.Error()))
			}
		}
	}
	for _, q := range []string{"//", "a//", "a b/", "x/*/"} {
		if _, err := r.Members(q); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Members(%q) = %v", q, err)
		}
		if _, err := r.Monitor(q); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Monitor(%q) = %v", q, err)
		}
	}
	if st := r.Stats(); st.Names != 0 || st.Members != 0 || st.LocalEntries != 0 {
		t.Fatalf("bad keys changed something: %+v", st)
	}
	// The longest key that fits, and one byte more.
	max := MaxKeyLen(testRealm)
	ok := strings.Repeat("abcdefgh/", max/9)
	ok += strings.Repeat("z", max-len(ok))
	if err := p.Register(ok, nil); err != nil {
		t.Fatalf("a key of %d bytes: %v", len(ok), err)
	}
	if err := p.Register(ok+"z", nil); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("a key of %d bytes: %v", len(ok)+1, err)
	}
}

func TestHugeMeta(t *testing.T) {
	r := newRegistry(t, func(c *Config) { c.MaxMetaSize = 100 })
	p := spawn(t, r)
	if err := p.Register("user/1", make([]byte, 101)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("huge meta: %v", err)
	}
	if err := p.Join("room/1", make([]byte, 101)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("huge meta: %v", err)
	}
	mustRegister(t, p, "user/1", "small")
	if err := p.Register("user/1", make([]byte, 101)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("huge meta on update: %v", err)
	}
	if e, _ := r.Lookup("user/1"); string(e.Meta) != "small" {
		t.Fatalf("a refused update changed the meta: %q", e.Meta)
	}
	if err := p.Register("user/2", make([]byte, 100)); err != nil {
		t.Fatalf("meta at the limit: %v", err)
	}
	if _, err := r.Dispatch(context.Background(), "user/1", make([]byte, DefaultMaxMessageSize+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("huge message: %v", err)
	}
}

func TestUnknownCluster(t *testing.T) {
	r := newRegistry(t, nil)
	p := spawn(t, r)
	for name, err := range map[string]error{
		"Register": p.Register("a/b", nil, InCluster("nope")),
		"Join":     p.Join("a/b", nil, InCluster("nope")),
		"Leave":    p.Leave("a/b", InCluster("nope")),
		"Lookup":   func() error { _, err := r.Lookup("a/b", InCluster("nope")); return err }(),
		"Members":  func() error { _, err := r.Members("a/b", InCluster("nope")); return err }(),
		"Monitor":  func() error { _, err := r.Monitor("", InCluster("nope")); return err }(),
		"Dispatch": func() error { _, err := r.Dispatch(context.Background(), "a/b", nil, InCluster("nope")); return err }(),
	} {
		if !errors.Is(err, ErrNotConnected) || !strings.Contains(err.Error(), "Connect") {
			t.Errorf("%s in an unknown cluster: %v", name, err)
		}
	}
	for _, bad := range []string{"Game", "a.b", "a/b", strings.Repeat("x", 64)} {
		if err := r.Connect(context.Background(), bad); !errors.Is(err, ErrInvalidCluster) {
			t.Errorf("Connect(%q) = %v", bad, err)
		}
		if _, err := r.Lookup("a/b", InCluster(bad)); !errors.Is(err, ErrInvalidCluster) {
			t.Errorf("Lookup in %q = %v", bad, err)
		}
	}
	if err := r.Connect(context.Background(), ""); !errors.Is(err, ErrInvalidCluster) {
		t.Errorf("Connect(\"\") = %v", err)
	}
	if len(r.Clusters()) != 0 {
		t.Fatalf("clusters %v", r.Clusters())
	}
}

func TestAfterClose(t *testing.T) {
	r := newRegistry(t, nil)
	p := spawn(t, r)
	mustRegister(t, p, "user/1", "")
	m := monitor(t, r, "")
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Close twice: %v", err)
	}
	// The process ended with the registry, and the monitor saw it go.
	<-p.Done()
	if b := next(t, m); b.Events[0].Reason != ReasonRegistryClosed {
		t.Fatalf("batch %v", b.Events)
	}
	if _, ok := <-m.C(); ok {
		t.Fatal("monitor open after Close")
	}
	ctx := context.Background()
	for name, err := range map[string]error{
		"Lookup":     func() error { _, err := r.Lookup("user/1"); return err }(),
		"Members":    func() error { _, err := r.Members("user/"); return err }(),
		"Names":      func() error { _, err := r.Names(""); return err }(),
		"Monitor":    func() error { _, err := r.Monitor(""); return err }(),
		"Spawn":      func() error { _, err := r.Spawn(ctx, ProcessConfig{}); return err }(),
		"Dispatch":   func() error { _, err := r.Dispatch(ctx, "user/1", nil); return err }(),
		"Send":       r.Send(ctx, p.Addr(), nil),
		"Connect":    r.Connect(ctx, "game"),
		"Disconnect": r.Disconnect(ctx, "game"),
		"Nodes":      func() error { _, err := r.Nodes(); return err }(),
	} {
		if !errors.Is(err, ErrClosed) || !errors.Is(err, net.ErrClosed) {
			t.Errorf("%s after Close: %v", name, err)
		}
	}
	if err := p.Register("user/2", nil); !errors.Is(err, ErrClosed) && !errors.Is(err, ErrProcessEnded) {
		t.Errorf("Register after Close: %v", err)
	}
}

func TestBadConfig(t *testing.T) {
	for name, cfg := range map[string]Config{
		"realm":   {},
		"meta":    {Realm: testRealm, MaxMetaSize: -1},
		"meta2":   {Realm: testRealm, MaxMetaSize: 1 << 20},
		"message": {Realm: testRealm, MaxMessageSize: 1 << 30},
		"queue":   {Realm: testRealm, PeerQueueBytes: 10},
		"ae":      {Realm: testRealm, AntiEntropy: 1},
		"level":   {Realm: testRealm, LogLevel: 9},
	} {
		if _, err := cfg.validate(); err == nil {
			t.Errorf("%s: accepted %+v", name, cfg)
		}
	}
	if _, err := New(nil, nil, Config{Realm: testRealm}); err == nil {
		t.Error("New without a host")
	}
}

func TestParseAddr(t *testing.T) {
	r := newRegistry(t, nil)
	p := spawn(t, r)
	a, err := ParseAddr(p.Addr().String())
	if err != nil || a != p.Addr() {
		t.Fatalf("round trip: %v, %v", a, err)
	}
	for _, s := range []string{"", "x", "x/1", p.Addr().Node.String() + "/0", p.Addr().Node.String() + "/-1", p.Addr().Node.String()} {
		if _, err := ParseAddr(s); !errors.Is(err, ErrBadAddr) {
			t.Errorf("ParseAddr(%q) = %v", s, err)
		}
	}
	if err := r.Send(context.Background(), Addr{}, nil); !errors.Is(err, ErrBadAddr) {
		t.Errorf("send to the zero address: %v", err)
	}
}
