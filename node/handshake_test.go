package node

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/macula-io/macula/realm"
)

func TestParseHello(t *testing.T) {
	good, _ := json.Marshal(hello{Realm: "io.acme.orders", Name: "n1", Agent: Agent})
	cases := []struct {
		name string
		in   string
		want error
	}{
		{"good", string(good), nil},
		{"other realm", `{"realm":"io.other.realm","name":"n1"}`, ErrOtherRealm},
		{"bad name", `{"realm":"io.acme.orders","name":"N.1"}`, realm.ErrInvalid},
		{"no name", `{"realm":"io.acme.orders"}`, realm.ErrInvalid},
		{"not json", `hello`, nil},
	}
	for _, c := range cases {
		_, err := parseHello([]byte(c.in), "io.acme.orders")
		switch {
		case c.name == "good" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.name == "not json" && err == nil:
			t.Errorf("%s: accepted", c.name)
		case c.want != nil && !errors.Is(err, c.want):
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

// FuzzParseHello: a hello is accepted only for our realm with a valid name,
// and never with an agent string over 128 bytes.
func FuzzParseHello(f *testing.F) {
	good, _ := json.Marshal(hello{Realm: "io.acme.orders", Name: "n1", Agent: Agent})
	f.Add(good)
	f.Add([]byte(`{"realm":"io.acme.orders","name":"a","agent":"` + string(make([]byte, 200)) + `"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseHello(b, "io.acme.orders")
		if err != nil {
			return
		}
		if h.Realm != "io.acme.orders" || realm.ValidateNodeName(h.Name) != nil || len(h.Agent) > 128 {
			t.Fatalf("accepted %+v", h)
		}
	})
}
