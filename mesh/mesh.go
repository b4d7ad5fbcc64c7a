package mesh

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/macula-io/macula/node"
	"github.com/macula-io/macula/rpc"
)

// Procedure is the internal rpc procedure every node serves (Serve).
const Procedure = "/macula/mesh/1"

// Limits of a reply.
const (
	// Version is the reply format's version.
	Version = 1
	// MaxPeers bounds the peers of one reply (a node with more sends the
	// first MaxPeers, sorted by peer ID).
	MaxPeers = 1024
	// MaxReply bounds a reply's size, in bytes.
	MaxReply = 256 << 10
)

// ErrMalformed: a reply that is not what the wire format says.
var ErrMalformed = errors.New("mesh: malformed reply")

// Reply is what a node says about itself: the wire format of the package
// doc.
type Reply struct {
	V      int         `json:"v"`
	Name   string      `json:"name"`
	TimeNs int64       `json:"time_ns"`
	Peers  []ReplyPeer `json:"peers"`
}

// ReplyPeer is one connected peer in a Reply.
type ReplyPeer struct {
	ID    string `json:"id"`
	Name  string `json:"name,omitempty"`
	Path  string `json:"path"`
	RTTNs int64  `json:"rtt_ns"`
}

// Encode returns the reply's bytes.
func (r *Reply) Encode() []byte {
	b, _ := json.Marshal(r)
	return b
}

// Decode reads and checks a reply.
func Decode(b []byte) (*Reply, error) {
	if len(b) > MaxReply {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrMalformed, len(b), MaxReply)
	}
	var r Reply
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if r.V != Version {
		return nil, fmt.Errorf("%w: version %d, want %d", ErrMalformed, r.V, Version)
	}
	if len(r.Peers) > MaxPeers {
		return nil, fmt.Errorf("%w: %d peers, the limit is %d", ErrMalformed, len(r.Peers), MaxPeers)
	}
	for _, p := range r.Peers {
		if p.Path != "direct" && p.Path != "relayed" {
			return nil, fmt.Errorf("%w: path %q", ErrMalformed, p.Path)
		}
		if _, err := peer.Decode(p.ID); err != nil {
			return nil, fmt.Errorf("%w: peer %q: %v", ErrMalformed, p.ID, err)
		}
		if p.RTTNs < 0 {
			return nil, fmt.Errorf("%w: negative rtt", ErrMalformed)
		}
	}
	return &r, nil
}

// Self returns n's own Reply: its name, its clock, its connected peers.
func Self(n *node.Node) *Reply {
	r := &Reply{V: Version, Name: n.Name(), TimeNs: time.Now().UnixNano(), Peers: []ReplyPeer{}}
	for _, p := range n.Peers() {
		if len(r.Peers) == MaxPeers {
			break
		}
		path := p.Path
		if path != "relayed" {
			path = "direct"
		}
		r.Peers = append(r.Peers, ReplyPeer{ID: p.ID.String(), Name: p.Name, Path: path, RTTNs: int64(p.RTT)})
	}
	return r
}

// Serve makes n answer Procedure. It is safe to call more than once on a
// node (the later calls do nothing); the node stops serving it when it
// closes.
func Serve(n *node.Node) error {
	err := n.RPC().Handle(Procedure, func(context.Context, *rpc.Request) ([]byte, error) {
		return Self(n).Encode(), nil
	})
	if errors.Is(err, rpc.ErrAlreadyAdvertised) {
		return nil
	}
	return err
}

// Options bound Gather.
type Options struct {
	// Limit is the number of members asked (this node's peers first);
	// default 64.
	Limit int
	// Timeout bounds each answer; default 2s.
	Timeout time.Duration
}

// Node is one member of the realm in a Mesh.
type Node struct {
	ID   string `json:"peer_id"`
	Name string `json:"name,omitempty"`
	Self bool   `json:"self,omitempty"`
	// Capabilities and Clusters are the member's, from the membership.
	Capabilities []string `json:"capabilities,omitempty"`
	Clusters     []string `json:"clusters,omitempty"`
	// Asked: this node asked it for its links; Answered: it answered (its
	// links are in the picture); Error why it did not.
	Asked    bool   `json:"asked"`
	Answered bool   `json:"answered"`
	Error    string `json:"error,omitempty"`
	// SkewMS is its clock minus this node's, in milliseconds, within
	// ±SkewErrMS (half the round trip of the question); absent when it
	// did not answer.
	SkewMS    *float64 `json:"skew_ms,omitempty"`
	SkewErrMS float64  `json:"skew_err_ms,omitempty"`
}

// Link is a connection between two members, as one or both ends report
// it. A and B are peer IDs, A < B.
type Link struct {
	A     string  `json:"a"`
	B     string  `json:"b"`
	Path  string  `json:"path"`
	RTTMS float64 `json:"rtt_ms"`
}

// Mesh is the picture of the realm.
type Mesh struct {
	Time  time.Time `json:"time"`
	Nodes []Node    `json:"nodes"`
	Links []Link    `json:"links"`
}

// Gather asks the realm's members for their links and merges what they
// say. It returns when every member asked has answered or timed out.
func Gather(ctx context.Context, n *node.Node, o Options) Mesh {
	if o.Limit <= 0 {
		o.Limit = 64
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	self := n.ID()
	nodes := map[string]*Node{self.String(): {ID: self.String(), Name: n.Name(), Self: true, Asked: true, Answered: true}}
	var order []peer.ID // who to ask: peers first, then the other members
	for _, p := range n.Peers() {
		nodes[p.ID.String()] = &Node{ID: p.ID.String(), Name: p.Name}
		order = append(order, p.ID)
	}
	if mem := n.Members(); mem != nil {
		for _, m := range mem.List() {
			id := m.ID.String()
			nd := nodes[id]
			if nd == nil {
				nd = &Node{ID: id}
				nodes[id] = nd
				order = append(order, m.ID)
			}
			if nd.Name == "" {
				nd.Name = m.Name
			}
			nd.Capabilities, nd.Clusters = m.Capabilities, m.Clusters
		}
	}
	if len(order) > o.Limit {
		order = order[:o.Limit]
	}

	links := map[[2]string]*Link{}
	addLink := func(a, b, path string, rtt time.Duration) {
		if a > b {
			a, b = b, a
		}
		k := [2]string{a, b}
		l := links[k]
		if l == nil {
			l = &Link{A: a, B: b, Path: path}
			links[k] = l
		}
		if path == "direct" {
			l.Path = "direct" // one end sees a direct connection: it is direct
		}
		if ms := float64(rtt) / 1e6; ms > 0 && (l.RTTMS == 0 || ms < l.RTTMS) {
			l.RTTMS = ms
		}
	}
	for _, p := range Self(n).Peers {
		addLink(self.String(), p.ID, p.Path, time.Duration(p.RTTNs))
	}

	type answer struct {
		id     peer.ID
		r      *Reply
		t0, t1 time.Time
		err    error
	}
	answers := make([]answer, len(order))
	var wg sync.WaitGroup
	for i, p := range order {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := answer{id: p, t0: time.Now()}
			b, err := n.RPC().CallPeer(ctx, p, Procedure, nil, rpc.WithTimeout(o.Timeout))
			a.t1 = time.Now()
			if err == nil {
				a.r, err = Decode(b)
			}
			a.err = err
			answers[i] = a
		}()
	}
	wg.Wait()
	for _, a := range answers {
		nd := nodes[a.id.String()]
		nd.Asked = true
		if a.err != nil {
			nd.Error = shortError(a.err)
			continue
		}
		nd.Answered = true
		if nd.Name == "" {
			nd.Name = a.r.Name
		}
		mid := a.t0.Add(a.t1.Sub(a.t0) / 2)
		skew := float64(a.r.TimeNs-mid.UnixNano()) / 1e6
		nd.SkewMS, nd.SkewErrMS = &skew, float64(a.t1.Sub(a.t0))/2e6
		for _, p := range a.r.Peers {
			if _, ok := nodes[p.ID]; !ok {
				continue // not a member this node knows: left, or beyond its view
			}
			addLink(a.id.String(), p.ID, p.Path, time.Duration(p.RTTNs))
		}
	}

	m := Mesh{Time: time.Now().UTC(), Nodes: make([]Node, 0, len(nodes)), Links: make([]Link, 0, len(links))}
	for _, nd := range nodes {
		m.Nodes = append(m.Nodes, *nd)
	}
	slices.SortFunc(m.Nodes, func(a, b Node) int { return strings.Compare(a.ID, b.ID) })
	for _, l := range links {
		m.Links = append(m.Links, *l)
	}
	slices.SortFunc(m.Links, func(a, b Link) int {
		if c := strings.Compare(a.A, b.A); c != 0 {
			return c
		}
		return strings.Compare(a.B, b.B)
	})
	return m
}

// shortError is an error's text for a person: the rpc package's sentinels
// by name.
func shortError(err error) string {
	switch {
	case errors.Is(err, rpc.ErrTimeout):
		return "no answer in time"
	case errors.Is(err, rpc.ErrUnreachable):
		return "not connected"
	case errors.Is(err, ErrMalformed):
		return err.Error()
	}
	var re *rpc.RemoteError
	if errors.As(err, &re) && re.Code == rpc.CodeNotAdvertised {
		return "does not answer mesh questions (an older node?)"
	}
	return err.Error()
}
