package gateway

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	wire "github.com/macula-io/macula/api"
)

// openAPIPaths is the hand-kept part of the OpenAPI document: info,
// security schemes and every route under paths. TestOpenAPIMatchesRoutes
// checks it against the handler's routes, both ways; its failure says
// what to add.
//
//go:embed openapi.json
var openAPIPaths []byte

// openAPISchemas are the api types the document's schemas are made from,
// by name; a $ref to #/components/schemas/NAME needs NAME here (the test
// checks). Types they contain are added with them.
var openAPISchemas = []any{
	wire.NodeInfo{}, wire.Peer{}, wire.Resolution{}, wire.DHTStats{}, wire.LookupResult{}, wire.ProvideResult{},
	wire.NATInfo{}, wire.LogLevel{}, wire.Advertisement{}, wire.AdvertiseRequest{}, wire.PublishResult{},
	wire.SubscribeEvent{}, wire.SubscribeDropped{}, wire.PubSubStats{}, wire.ErrorBody{}, wire.ActorList{},
	wire.ActivationLog{}, wire.Ring{}, wire.RegistryInfo{}, wire.RegistryLogLevel{}, wire.RegistryEntry{},
	wire.RegistryMember{}, wire.RegisterRequest{}, wire.DispatchResult{}, wire.ProcessRequest{}, wire.ProcessInfo{},
	wire.RegistryBatch{}, wire.ProcessMessage{}, wire.Mesh{}, wire.Dashboard{},
	wire.Members{}, wire.Member{}, wire.MemberStats{}, wire.Capabilities{},
}

var openAPIDoc = sync.OnceValues(buildOpenAPI)

// buildOpenAPI merges the schemas of openAPISchemas into openAPIPaths.
func buildOpenAPI() ([]byte, error) {
	var doc map[string]any
	if err := json.Unmarshal(openAPIPaths, &doc); err != nil {
		return nil, fmt.Errorf("openapi.json: %w", err)
	}
	comps, _ := doc["components"].(map[string]any)
	if comps == nil {
		comps = map[string]any{}
		doc["components"] = comps
	}
	sg := schemaGen{schemas: map[string]any{}}
	for _, v := range openAPISchemas {
		sg.ref(reflect.TypeOf(v))
	}
	comps["schemas"] = sg.schemas
	return json.MarshalIndent(doc, "", " ")
}

func (a *api) getOpenAPI(w http.ResponseWriter, _ *http.Request) error {
	b, err := openAPIDoc()
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	_, err = w.Write(b)
	return err
}

// schemaGen makes JSON schemas from Go types the way encoding/json
// encodes them.
type schemaGen struct{ schemas map[string]any }

var (
	timeType     = reflect.TypeOf(time.Time{})
	durationType = reflect.TypeOf(time.Duration(0))
	addrType     = reflect.TypeOf(netip.Addr{})
	rawType      = reflect.TypeOf(json.RawMessage{})
)

// ref returns the schema of t, as a $ref for a named struct of package
// api (whose schema it adds under its name).
func (g *schemaGen) ref(t reflect.Type) map[string]any {
	if t.Kind() == reflect.Pointer {
		return g.ref(t.Elem())
	}
	if t.Kind() == reflect.Struct && t.PkgPath() == reflect.TypeOf(wire.NodeInfo{}).PkgPath() && t.Name() != "" {
		if _, ok := g.schemas[t.Name()]; !ok {
			g.schemas[t.Name()] = map[string]any{} // before recursing: types may refer to themselves
			g.schemas[t.Name()] = g.object(t)
		}
		return map[string]any{"$ref": "#/components/schemas/" + t.Name()}
	}
	return g.schema(t)
}

func (g *schemaGen) schema(t reflect.Type) map[string]any {
	switch t {
	case timeType:
		return map[string]any{"type": "string", "format": "date-time"}
	case durationType:
		return map[string]any{"type": "integer", "description": "nanoseconds"}
	case addrType:
		return map[string]any{"type": "string", "description": "an IP address"}
	case rawType:
		return map[string]any{"description": "any JSON value"}
	}
	switch t.Kind() {
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return map[string]any{"type": "string", "format": "byte"}
		}
		return map[string]any{"type": "array", "items": g.ref(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": g.ref(t.Elem())}
	case reflect.Pointer:
		return g.ref(t.Elem())
	case reflect.Struct:
		return g.object(t)
	case reflect.Interface:
		return map[string]any{"description": "any JSON value"}
	}
	return map[string]any{}
}

// object is a struct's schema: its JSON fields, embedded structs' fields
// included; fields without omitempty/omitzero and not pointers are
// required.
func (g *schemaGen) object(t reflect.Type) map[string]any {
	props := map[string]any{}
	var required []string
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			if tag == "-" || (!f.IsExported() && !f.Anonymous) {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
				walk(f.Type)
				continue
			}
			if name == "" {
				name = f.Name
			}
			props[name] = g.ref(f.Type)
			optional := strings.Contains(opts, "omitempty") || strings.Contains(opts, "omitzero") || f.Type.Kind() == reflect.Pointer
			if !optional {
				required = append(required, name)
			}
		}
	}
	walk(t)
	s := map[string]any{"type": "object", "properties": props}
	if len(required) > 0 {
		s["required"] = required
	}
	return s
}
