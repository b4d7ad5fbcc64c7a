package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"testing"

	wire "github.com/macula-io/macula/api"
	"github.com/macula-io/macula/internal/testnet"
)

// openAPIPath turns a ServeMux pattern's path into the document's form:
// {key...} is {key}, and /{$} is /.
func openAPIPath(p string) string {
	p = strings.ReplaceAll(p, "...}", "}")
	return strings.TrimSuffix(p, "{$}")
}

// TestOpenAPIMatchesRoutes keeps gateway/openapi.json true: every route
// the handler serves is in the document, with its method, and everything
// the document lists is served. When you add a route, add it there (the
// failure says where and how); the schemas come from package api's types
// (openAPISchemas in openapi.go).
func TestOpenAPIMatchesRoutes(t *testing.T) {
	n := startNode(t, testRealm, "openapi")
	a := newAPI(n, nil, testnet.QuietLogger(), wire.APIAddrs{})
	served := map[string]bool{} // "get /v1/node"
	for _, r := range a.routes {
		method, p, ok := strings.Cut(r, " ")
		if !ok {
			t.Fatalf("route %q has no method: every route must name its method", r)
		}
		served[strings.ToLower(method)+" "+openAPIPath(p)] = true
	}
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPIPaths, &doc); err != nil {
		t.Fatalf("gateway/openapi.json is not JSON: %v", err)
	}
	documented := map[string]bool{}
	for p, ops := range doc.Paths {
		for m := range ops {
			documented[m+" "+p] = true
		}
	}
	var missing, stale []string
	for k := range served {
		if !documented[k] {
			missing = append(missing, k)
		}
	}
	for k := range documented {
		if !served[k] {
			stale = append(stale, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(stale)
	for _, k := range missing {
		m, p, _ := strings.Cut(k, " ")
		t.Errorf(`route %s %s is served but not in gateway/openapi.json: add to "paths" under %q the key %q, e.g.
    %q: {"summary": "...", "tags": ["..."], "operationId": "...",
      "parameters": [{"name": "...", "in": "path|query|header", "required": true, "schema": {"type": "string"}}],
      "responses": {"200": {"description": "success", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/YourType"}}}},
                    "default": {"description": "an error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}}}
  and add YourType{} (package api) to openAPISchemas in gateway/openapi.go (copy a neighbour's entry)`,
			strings.ToUpper(m), p, p, m, m)
	}
	for _, k := range stale {
		m, p, _ := strings.Cut(k, " ")
		t.Errorf("gateway/openapi.json lists %s %s, which the handler does not serve: remove \"paths\".%q.%q, or register the route",
			strings.ToUpper(m), p, p, m)
	}
}

// TestOpenAPIReferencesResolve: every $ref of the served document names a
// schema it has.
func TestOpenAPIReferencesResolve(t *testing.T) {
	b, err := openAPIDoc()
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OpenAPI    string `json:"openapi"`
		Components struct {
			Schemas map[string]json.RawMessage `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi = %q", doc.OpenAPI)
	}
	for _, m := range regexp.MustCompile(`"#/components/schemas/([A-Za-z0-9_]+)"`).FindAllStringSubmatch(string(b), -1) {
		if _, ok := doc.Components.Schemas[m[1]]; !ok {
			t.Errorf("$ref to schema %s, which the document lacks: add wire.%s{} to openAPISchemas in gateway/openapi.go", m[1], m[1])
		}
	}
	// A schema follows the Go type: a field of NodeInfo is in it.
	var ni struct {
		Properties map[string]json.RawMessage `json:"properties"`
		Required   []string                   `json:"required"`
	}
	if err := json.Unmarshal(doc.Components.Schemas["NodeInfo"], &ni); err != nil {
		t.Fatal(err)
	}
	if _, ok := ni.Properties["peer_id"]; !ok || len(ni.Required) == 0 {
		t.Errorf("NodeInfo schema = %s", doc.Components.Schemas["NodeInfo"])
	}
}

// TestOpenAPIServed: the node serves the document, without authority.
func TestOpenAPIServed(t *testing.T) {
	n := startNode(t, testRealm, "openapi-served")
	g := startGateway(t, n, nil)
	resp, err := plainClient(t).Get("http://" + g.Addr() + "/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var doc map[string]any
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || json.Unmarshal(b, &doc) != nil {
		t.Fatalf("GET /v1/openapi.json: %d %s %.200s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	if fmt.Sprint(doc["openapi"]) != "3.1.0" {
		t.Errorf("openapi = %v", doc["openapi"])
	}
}
