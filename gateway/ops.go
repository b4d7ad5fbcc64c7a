package gateway

import (
	"cmp"
	"context"
	"embed"
	"encoding/json"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	wire "github.com/macula-io/macula/api"
	"github.com/macula-io/macula/mesh"
	"github.com/macula-io/macula/metrics"
	"github.com/macula-io/macula/pubsub"
	"github.com/macula-io/macula/registry"
	"github.com/macula-io/macula/rpc"
)

// The operators' routes (this file): the dashboard page and its assets,
// the metrics for Prometheus, the API's own description, the realm's
// picture, and the dashboard's data:
//
//	GET /                       the dashboard page (text/html; assets embedded, no network)
//	GET /ui/{file}              its assets (script, style)
//	GET /metrics                Prometheus text format (404 not_enabled without Config.Metrics)
//	GET /v1/openapi.json        the OpenAPI 3.1 document of the API
//	GET /v1/mesh                api.Mesh: members, links (direct|relayed, RTT), clock skews
//	GET /v1/dashboard           api.Dashboard; ?mesh=true adds the mesh
//	GET /v1/dashboard/stream    server-sent events "snapshot" (api.Dashboard) every ?interval=
//	                            (default 1s, 250ms to 1m), with the mesh in every third
//
// The page and its assets hold no data and need no authority; everything
// they show comes from the /v1 routes, which need the same as the rest of
// the API (the root command in a secure realm).

//go:embed dashboard
var dashboardFS embed.FS

// Dashboard stream bounds.
const (
	dashboardInterval    = time.Second
	dashboardMinInterval = 250 * time.Millisecond
	dashboardMaxInterval = time.Minute
	// meshEvery: the stream carries the mesh in every meshEvery-th
	// snapshot (asking every member is not free).
	meshEvery = 3
	// meshCacheFor: answers of GET /v1/mesh and the dashboard's mesh are
	// shared for this long, so that several pages do not multiply the
	// questions to the realm.
	meshCacheFor = 2 * time.Second
	// streamWriteTimeout cuts off a stream client that takes no snapshot
	// for this long.
	streamWriteTimeout = 30 * time.Second
)

// meshCache is the last mesh gathered, shared by the requests of one
// handler.
type meshCache struct {
	// mu guards the fields below, and serializes gathers.
	mu   sync.Mutex
	at   time.Time
	last *wire.Mesh
}

func (a *api) opsRoutes() {
	if a.n != nil {
		if err := mesh.Serve(a.n); err != nil {
			a.log.Warn("the node will not answer mesh questions", "err", err)
		}
	}
	a.handlePublic("GET /{$}", a.getDashboardPage)
	a.handlePublic("GET /ui/{file}", a.getAsset)
	a.handlePublic("GET /v1/openapi.json", a.getOpenAPI)
	a.handleRaw("GET /metrics", adminScope, a.getMetrics)
	a.handle("GET /v1/mesh", adminScope, a.getMesh)
	a.handle("GET /v1/dashboard", adminScope, a.getDashboard)
	a.handleRaw("GET /v1/dashboard/stream", adminScope, a.getDashboardStream)
}

// handlePublic registers a route that needs no authority in any realm: it
// must serve nothing about the node (the page, its assets, the API's
// description).
func (a *api) handlePublic(pattern string, f func(w http.ResponseWriter, r *http.Request) error) {
	a.routes = append(a.routes, pattern)
	a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if err := f(w, r); err != nil {
			a.writeError(w, r, err)
		}
	})
}

func (a *api) getDashboardPage(w http.ResponseWriter, r *http.Request) error {
	return serveAsset(w, "index.html")
}

func (a *api) getAsset(w http.ResponseWriter, r *http.Request) error {
	return serveAsset(w, r.PathValue("file"))
}

func serveAsset(w http.ResponseWriter, name string) error {
	b, err := fs.ReadFile(dashboardFS, "dashboard/"+name)
	if err != nil || strings.Contains(name, "/") {
		return newAPIError(http.StatusNotFound, wire.CodeNotFound, "no asset "+name)
	}
	h := w.Header()
	ct := mime.TypeByExtension(path.Ext(name))
	if ct == "" {
		ct = "application/octet-stream"
	}
	h.Set("Content-Type", ct)
	h.Set("Content-Length", strconv.Itoa(len(b)))
	// The page talks to this API only: no script, style or connection
	// from anywhere else, and no framing.
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	_, err = w.Write(b)
	return err
}

func (a *api) getMetrics(w http.ResponseWriter, r *http.Request) error {
	if a.metrics == nil || a.metrics.Gatherer() == nil {
		return newAPIError(http.StatusNotFound, wire.CodeNotEnabled, "this node keeps no metrics (gateway.Config.Metrics)")
	}
	promhttp.HandlerFor(a.metrics.Gatherer(), promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}).ServeHTTP(w, r)
	return nil
}

func (a *api) getMesh(r *http.Request) (int, any, error) {
	return http.StatusOK, a.mesh(r.Context()), nil
}

// mesh returns the realm's picture, gathered at most every meshCacheFor.
func (a *api) mesh(ctx context.Context) *wire.Mesh {
	c := &a.meshes
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last != nil && time.Since(c.at) < meshCacheFor {
		return c.last
	}
	m := mesh.Gather(ctx, a.n, mesh.Options{})
	out := &wire.Mesh{Time: m.Time, Nodes: make([]wire.MeshNode, 0, len(m.Nodes)), Links: make([]wire.MeshLink, 0, len(m.Links))}
	for _, n := range m.Nodes {
		out.Nodes = append(out.Nodes, wire.MeshNode{PeerID: n.ID, Name: n.Name, Self: n.Self, Capabilities: n.Capabilities,
			Clusters: n.Clusters, Asked: n.Asked, Answered: n.Answered, Error: n.Error, SkewMS: n.SkewMS, SkewErrMS: n.SkewErrMS})
	}
	for _, l := range m.Links {
		out.Links = append(out.Links, wire.MeshLink(l))
	}
	c.last, c.at = out, time.Now()
	return out
}

func (a *api) getDashboard(r *http.Request) (int, any, error) {
	withMesh := r.URL.Query().Get("mesh") == "true"
	return http.StatusOK, a.dashboard(r, withMesh), nil
}

// dashboard builds one snapshot.
func (a *api) dashboard(r *http.Request, withMesh bool) *wire.Dashboard {
	n := a.n
	d := &wire.Dashboard{Time: time.Now().UTC(), Relays: metrics.Relays(n.Host().Addrs())}
	_, v, _ := a.getNode(r)
	d.Node = v.(wire.NodeInfo)
	d.NAT = natInfoOf(n.NAT(), securityOf(n))
	_, v, _ = a.getPeers(r)
	d.Peers = v.([]wire.Peer)
	if d.Relays == nil {
		d.Relays = []string{}
	}
	if withMesh {
		d.Mesh = a.mesh(r.Context())
	}
	for _, b := range rpc.LatencyBuckets {
		d.LatencyBoundsMS = append(d.LatencyBoundsMS, float64(b)/1e6)
	}
	d.Procedures = a.procedureStats()
	ts := n.PubSub().TopicStats()
	slices.SortStableFunc(ts, func(x, y pubsub.TopicStats) int { return cmp.Compare(y.Published, x.Published) })
	for _, t := range ts[:min(len(ts), wire.DashboardListLimit)] {
		d.Topics = append(d.Topics, wire.TopicStats{Topic: t.Topic, Published: t.Published})
	}
	for _, p := range n.PubSub().PatternStats() {
		d.Patterns = append(d.Patterns, wire.PatternStats(p))
	}
	_, v, _ = a.getPubSubStats(r)
	d.PubSub = v.(wire.PubSubStats)
	if _, v, err := a.getDHTStats(r); err == nil {
		ds := v.(wire.DHTStats)
		d.DHT = &ds
	}
	if m := n.Members(); m != nil {
		st := memberStatsOf(m.Stats())
		d.Members = &st
	}
	if a.actors != nil {
		if _, v, err := a.getRing(r); err == nil {
			rg := v.(wire.Ring)
			d.Ring = &rg
		}
		st := a.actors.Stats()
		d.Actors = &wire.ActorStats{Active: st.Active, Queued: st.Queued, Kinds: st.Kinds, MovedOut: st.MovedOut, MovedIn: st.MovedIn,
			HandoffTimeouts: st.HandoffTimeouts, Conflicts: st.Conflicts, Redirects: st.Redirects}
	}
	if a.reg != nil {
		d.Registry = a.registrySummary()
	}
	if d.Procedures == nil {
		d.Procedures = []wire.ProcedureStats{}
	}
	if d.Topics == nil {
		d.Topics = []wire.TopicStats{}
	}
	if d.Patterns == nil {
		d.Patterns = []wire.PatternStats{}
	}
	return d
}

// procedureStats merges the metrics' rows with the procedures advertised
// here (which may not have been called yet).
func (a *api) procedureStats() []wire.ProcedureStats {
	adv := a.n.RPC().Advertised()
	rows := map[string]*wire.ProcedureStats{}
	if a.metrics != nil {
		for _, p := range a.metrics.Procedures() {
			rows[p.Procedure] = &wire.ProcedureStats{Procedure: p.Procedure, Calls: p.Calls, Served: p.Served,
				CallLatency:   wire.Histogram{Counts: p.CallBuckets, SumMS: float64(p.CallSum) / 1e6},
				ServedLatency: wire.Histogram{Counts: p.ServedBuckets, SumMS: float64(p.ServedSum) / 1e6}}
		}
	}
	for _, name := range adv {
		if rows[name] == nil {
			rows[name] = &wire.ProcedureStats{Procedure: name, Calls: map[string]uint64{}, Served: map[string]uint64{},
				CallLatency: wire.Histogram{Counts: []uint64{}}, ServedLatency: wire.Histogram{Counts: []uint64{}}}
		}
		rows[name].Advertised = true
	}
	out := make([]wire.ProcedureStats, 0, len(rows))
	for _, p := range rows {
		out = append(out, *p)
	}
	slices.SortFunc(out, func(x, y wire.ProcedureStats) int { return strings.Compare(x.Procedure, y.Procedure) })
	return out
}

// registrySummary lists the first names and groups of every cluster.
func (a *api) registrySummary() *wire.RegistrySummary {
	st, _ := json.Marshal(a.reg.Stats())
	s := &wire.RegistrySummary{Names: []wire.RegistryName{}, Groups: []wire.RegistryGroup{}, Stats: st}
	for _, c := range append([]string{""}, a.reg.Clusters()...) {
		names, _ := a.reg.Names("", registry.InCluster(c))
		for _, e := range names {
			if len(s.Names) == wire.DashboardListLimit {
				s.Truncated = true
				break
			}
			s.Names = append(s.Names, wire.RegistryName{Key: e.Key, Cluster: c, Node: e.Addr.Node.String()})
		}
		groups, _ := a.reg.Groups("", registry.InCluster(c))
		for _, g := range groups {
			if len(s.Groups) == wire.DashboardListLimit {
				s.Truncated = true
				break
			}
			s.Groups = append(s.Groups, wire.RegistryGroup{Key: g.Key, Cluster: c, Members: g.Members})
		}
	}
	return s
}

// getDashboardStream sends a snapshot every interval until the client goes
// away or the gateway closes.
func (a *api) getDashboardStream(w http.ResponseWriter, r *http.Request) error {
	interval := dashboardInterval
	if s := r.URL.Query().Get("interval"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return badRequest("interval %q: want a Go duration such as 1s", s)
		}
		interval = min(max(d, dashboardMinInterval), dashboardMaxInterval)
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for i := 0; ; i++ {
		snap := a.dashboard(r, i%meshEvery == 0)
		b, _ := json.Marshal(snap)
		_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		buf := make([]byte, 0, len(b)+32)
		buf = append(buf, "event: snapshot\ndata: "...)
		buf = append(append(buf, b...), "\n\n"...)
		if _, err := w.Write(buf); err != nil {
			return nil
		}
		if err := rc.Flush(); err != nil {
			return nil
		}
		select {
		case <-r.Context().Done():
			return nil
		case <-tick.C:
		}
	}
}
