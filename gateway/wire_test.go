package gateway

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"reflect"
	"testing"
	"time"

	wire "github.com/macula-io/macula/api"
	"github.com/macula-io/macula/dht"
	"github.com/macula-io/macula/nat"
	"github.com/macula-io/macula/node"
	"github.com/macula-io/macula/pubsub"
)

// fill sets every field of the value v points to, recursively, to a value
// that is not the zero one (distinct per field), so that a field a
// conversion forgets shows in the JSON.
func fill(t *testing.T, v reflect.Value, seed *int) {
	t.Helper()
	*seed++
	n := *seed
	switch v.Type() {
	case reflect.TypeFor[time.Time]():
		v.Set(reflect.ValueOf(time.Date(2026, 1, 2, 3, 4, 5, n, time.UTC)))
		return
	case reflect.TypeFor[netip.Addr]():
		v.Set(reflect.ValueOf(netip.AddrFrom4([4]byte{192, 0, 2, byte(n)})))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString("s" + string(rune('a'+n%26)))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64, reflect.Int32:
		v.SetInt(int64(n))
	case reflect.Uint, reflect.Uint64, reflect.Uint32, reflect.Uint16, reflect.Uint8:
		v.SetUint(uint64(n))
	case reflect.Float64:
		v.SetFloat(float64(n) + 0.5)
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(t, v.Elem(), seed)
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		for i := range 2 {
			fill(t, v.Index(i), seed)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if !v.Type().Field(i).IsExported() {
				t.Fatalf("%s.%s: unexported field", v.Type(), v.Type().Field(i).Name)
			}
			fill(t, v.Field(i), seed)
		}
	default:
		t.Fatalf("fill: %s of kind %s", v.Type(), v.Kind())
	}
}

func filled[T any](t *testing.T) T {
	var v T
	seed := 0
	fill(t, reflect.ValueOf(&v).Elem(), &seed)
	return v
}

func sameJSON(t *testing.T, what string, want, got any) {
	t.Helper()
	w, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	g, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(w, g) {
		t.Errorf("%s: the API's JSON differs from the service's\nservice %s\napi     %s", what, w, g)
	}
}

// TestWireJSON checks that the API's bodies, converted from the services'
// values, are the JSON that the services' own types give (the API served
// those before package api): every field kept, with its name and its
// omission rules, for full values and for zero ones.
func TestWireJSON(t *testing.T) {
	res := filled[node.Resolution](t)
	sameJSON(t, "resolution", res, resolutionOf(&res))
	sameJSON(t, "resolution without record", node.Resolution{Addrs: []string{}}, resolutionOf(&node.Resolution{}))

	st := filled[dht.Stats](t)
	sameJSON(t, "dht stats", st, dhtStatsOf(st))

	ps := filled[pubsub.Stats](t)
	sameJSON(t, "pubsub stats", ps, pubsubStatsOf(ps))

	// NATInfo was nat.Info with the realm's security beside its fields.
	type natInfo struct {
		nat.Info
		Security string `json:"security"`
	}
	for _, i := range []nat.Info{filled[nat.Info](t), {}} {
		sameJSON(t, "nat info", natInfo{Info: i, Security: wire.SecuritySecure}, natInfoOf(i, wire.SecuritySecure))
	}
}
