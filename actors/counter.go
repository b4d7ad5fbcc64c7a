package actors

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
)

// CounterKind is the name macula-node gives NewCounter's kind (dev, and run
// --demo-actors).
const CounterKind = "counter"

// NewCounter makes a counter, a small actor kind for trying actors (macula-node
// dev serves it) and for tests. A call "get" answers the count; any other
// call adds one and answers the new count; a cast "reset" sets it to zero
// and any other cast adds one. Messages may be JSON strings ("\"get\"").
// The init argument {"start": N} starts the count at N. It implements
// Snapshotter, so its count survives moves. Answers are JSON:
// {"id":"player_1","count":3}.
func NewCounter(id string) Actor { return &counterActor{id: id} }

type counterActor struct {
	id string
	n  int64
}

func (c *counterActor) Init(_ context.Context, arg []byte) error {
	if len(arg) == 0 {
		return nil
	}
	var a struct {
		Start *int64 `json:"start"`
	}
	if err := json.Unmarshal(arg, &a); err != nil || a.Start == nil {
		return errors.New(`counter: the init argument is {"start": N}`)
	}
	c.n = *a.Start
	return nil
}

func (c *counterActor) HandleCall(_ context.Context, msg []byte) ([]byte, error) {
	if word(msg) != "get" {
		c.n++
	}
	return c.answer(), nil
}

func (c *counterActor) HandleCast(_ context.Context, msg []byte) {
	if word(msg) == "reset" {
		c.n = 0
		return
	}
	c.n++
}

func (c *counterActor) answer() []byte {
	b := append([]byte(`{"id":`), strconv.Quote(c.id)...)
	b = append(b, `,"count":`...)
	b = strconv.AppendInt(b, c.n, 10)
	return append(b, '}')
}

func (c *counterActor) Snapshot(context.Context) ([]byte, error) {
	return binary.BigEndian.AppendUint64(nil, uint64(c.n)), nil
}

func (c *counterActor) Restore(_ context.Context, b []byte) error {
	if len(b) != 8 {
		return errors.New("counter: bad snapshot")
	}
	c.n = int64(binary.BigEndian.Uint64(b))
	return nil
}

// word is msg without surrounding space and JSON string quotes.
func word(msg []byte) string {
	s := strings.TrimSpace(string(msg))
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
	}
	return s
}
