package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/macula-io/macula/actors"
	wire "github.com/macula-io/macula/api"
	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/ucan"
)

// counter counts its calls; "fail" answers an actor error, "crash" panics.
type counter struct{ n int }

func (c *counter) HandleCall(_ context.Context, msg []byte) ([]byte, error) {
	switch string(msg) {
	case "fail":
		return nil, &actors.ActorError{Code: "nope", Message: "not today"}
	case "crash":
		panic("boom")
	}
	c.n++
	return []byte(strconv.Itoa(c.n)), nil
}

func (c *counter) HandleCast(context.Context, []byte) { c.n++ }

func TestActorRoutes(t *testing.T) {
	n := startNode(t, testRealm, "a")
	sys, err := actors.New(actors.Config{Logger: testnet.QuietLogger()}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sys.Close() })
	if err := sys.Register("game", "counter", func(string) actors.Actor { return &counter{} }); err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, n, func(c *Config) { c.Actors = sys })
	c := wire.NewClient(g.Addr())
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	ref, reply, err := c.ActorCall(ctx, "game", "counter", "player/1", nil, wire.ActorOptions{InitArg: []byte(`{"level":10}`)})
	if err != nil || string(reply) != "1" || ref.Incarnation == 0 || ref.ID != "player/1" {
		t.Fatalf("ActorCall = %+v %q %v", ref, reply, err)
	}
	if err := c.ActorCast(ctx, "game", "counter", "player/1", nil, wire.ActorOptions{}); err != nil {
		t.Fatal(err)
	}
	ref2, reply, err := c.ActorCall(ctx, "game", "counter", "player/1", nil, wire.ActorOptions{})
	if err != nil || string(reply) != "3" || ref2 != ref {
		t.Fatalf("after a cast: %+v %q %v", ref2, reply, err)
	}
	list, err := c.Actors(ctx, 0)
	if err != nil || len(list.Actors) != 1 || list.Actors[0].ID != "player/1" || list.Stats.Active != 1 {
		t.Fatalf("Actors = %+v, %v", list, err)
	}
	r, err := c.Ring(ctx, true)
	if err != nil || len(r.Capabilities) != 1 || r.Capabilities[0].Capability != "game" || len(r.Capabilities[0].Owners) != 4096 ||
		r.Capabilities[0].Nodes[0].Shards != 4096 {
		t.Fatalf("Ring = %+v, %v", r, err)
	}
	lg, err := c.ActivationLog(ctx)
	if err != nil || len(lg.Records) != 1 || !lg.Records[0].Started {
		t.Fatalf("ActivationLog = %+v, %v", lg, err)
	}

	for _, tc := range []struct {
		capability, kind, id, msg string
		status                    int
		code                      string
	}{
		{"video", "counter", "x", "", http.StatusNotFound, wire.CodeNotServed},
		{"game", "wallet", "x", "", http.StatusNotFound, wire.CodeUnknownKind},
		{"Game", "counter", "x", "", http.StatusBadRequest, wire.CodeInvalidName},
		{"game", "counter", "y", "fail", http.StatusUnprocessableEntity, wire.CodeRemoteError},
		{"game", "counter", "y", "crash", http.StatusUnprocessableEntity, wire.CodeActorCrashed},
	} {
		_, _, err := c.ActorCall(ctx, tc.capability, tc.kind, tc.id, []byte(tc.msg), wire.ActorOptions{})
		var ae *wire.APIError
		if !errors.As(err, &ae) || ae.Status != tc.status || ae.Code != tc.code {
			t.Fatalf("%+v: %v, want %d %s", tc, err, tc.status, tc.code)
		}
		if tc.code == wire.CodeRemoteError && (ae.Remote == nil || ae.Remote.Code != "nope") {
			t.Fatalf("actor error detail: %+v", ae.Remote)
		}
	}
}

func TestActorRoutesNotEnabled(t *testing.T) {
	n := startNode(t, testRealm, "a")
	g := startGateway(t, n, nil)
	c := wire.NewClient(g.Addr())
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _, err := c.ActorCall(ctx, "game", "counter", "x", nil, wire.ActorOptions{})
	var ae *wire.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusNotFound || ae.Code != wire.CodeNotEnabled {
		t.Fatalf("no actor system: %v", err)
	}
	if _, err := c.Ring(ctx, false); !errors.As(err, &ae) || ae.Code != wire.CodeNotEnabled {
		t.Fatalf("ring without actors: %v", err)
	}
}

// TestActorRoutesSecure: in a secure realm a program's bearer invocation of
// /macula/actor on <realm>.<capability>.<kind> is what an actor route
// needs; another kind's is refused.
func TestActorRoutesSecure(t *testing.T) {
	s := startSecure(t)
	ctx := ctxFor(t, 10*time.Second)
	// The node may also serve game and call its actors.
	if err := s.n.SetChains(ctx, []ucan.Chain{
		s.grant(s.did, ucan.Member, "", time.Hour),
		s.grant(s.did, ucan.Serve, ucan.ServeResource(testRealm, "game"), time.Hour),
		s.grant(s.did, ucan.Actor, testRealm+".game.*", time.Hour),
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.n.Members().SetCapabilities(ctx, []string{"game"}); err != nil {
		t.Fatal(err)
	}
	sys, err := actors.New(actors.Config{Realm: testRealm, Access: s.n.Access(), Logger: testnet.QuietLogger()}, s.n.Members(), s.n.RPC(), s.n.Events())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sys.Close() })
	if err := sys.Register("game", "counter", func(string) actors.Actor { return &counter{} }); err != nil {
		t.Fatal(err)
	}
	a := newAPI(s.n, nil, testnet.QuietLogger(), wire.APIAddrs{})
	a.actors = sys
	res := actors.ActorResource(testRealm, "game", "counter")
	ok := s.program(ucan.Actor, res, time.Hour)
	other := s.program(ucan.Actor, actors.ActorResource(testRealm, "game", "wallet"), time.Hour)
	target := "/v1/actors/game/counter/p1"
	testnet.Eventually(t, 10*time.Second, func() error {
		w := request(a, "POST", target, "", remoteAddr, ok.token(t, s.did, ucan.Actor, res))
		if w.Code != http.StatusOK {
			return fmt.Errorf("granted call: %d %s", w.Code, w.Body)
		}
		return nil
	})
	if w := request(a, "POST", target, "", remoteAddr, other.token(t, s.did, ucan.Actor, res)); w.Code != http.StatusForbidden {
		t.Fatalf("another kind's grant: %d %s", w.Code, w.Body)
	}
	if w := request(a, "POST", target, "", remoteAddr, ""); w.Code != http.StatusUnauthorized {
		t.Fatalf("no token off loopback: %d %s", w.Code, w.Body)
	}
	if w := request(a, "POST", target, "", loopbackAddr, wire.LocalScheme+" "+a.cred); w.Code != http.StatusOK {
		t.Fatalf("the node itself: %d %s", w.Code, w.Body)
	}
}
