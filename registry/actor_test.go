package registry

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/macula-io/macula/actors"
)

func TestActorProcess(t *testing.T) {
	r := newRegistry(t, nil)
	sys, err := actors.New(actors.Config{Logger: quietLogger()}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	if err := sys.Register("game", actors.CounterKind, actors.NewCounter); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p, err := r.SpawnActor(ctx, sys, actors.Request{Capability: "game", Kind: actors.CounterKind, ID: "scores"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	mustRegister(t, p, "game/scores", "")
	mustJoin(t, p, "counters", "")
	// A dispatch to the name and one to the group: two casts, each adds one.
	if n, err := r.Dispatch(ctx, "game/scores", []byte(`"add"`)); err != nil || n != 1 {
		t.Fatalf("dispatch: %d, %v", n, err)
	}
	if _, err := r.Dispatch(ctx, "counters", []byte(`"add"`)); err != nil {
		t.Fatal(err)
	}
	eventually(t, wait, "the casts to reach the actor", func() bool {
		_, reply, err := sys.Call(ctx, actors.Request{Capability: "game", Kind: actors.CounterKind, ID: "scores", Payload: []byte(`"get"`)})
		var got struct{ Count int }
		return err == nil && json.Unmarshal(reply, &got) == nil && got.Count == 2
	})
	if _, err := r.SpawnActor(ctx, sys, actors.Request{Kind: "x"}); err == nil {
		t.Fatal("an incomplete request was accepted")
	}
}
