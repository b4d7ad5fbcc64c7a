package gateway

import (
	"context"
	"errors"
	"net/http"

	wire "github.com/macula-io/macula/api"
	"github.com/macula-io/macula/member"
	"github.com/macula-io/macula/peerdid"
)

// memberRoutes serves the realm's membership: who is in it with which
// capabilities, and this node's own capabilities.
func (a *api) memberRoutes() {
	a.handle("GET /v1/members", adminScope, a.getMembers)
	a.handle("GET /v1/members/stats", adminScope, a.getMemberStats)
	a.handle("PUT /v1/capabilities", adminScope, a.putCapabilities)
}

func realmMemberOf(m member.Member, self bool) wire.Member {
	out := wire.Member{
		PeerID: m.ID.String(), DID: peerdid.Of(m.ID), Name: m.Name,
		Capabilities: m.Capabilities, Clusters: m.Clusters, Incarnation: m.Incarnation, Self: self,
	}
	if out.Capabilities == nil {
		out.Capabilities = []string{}
	}
	if out.Clusters == nil {
		out.Clusters = []string{}
	}
	return out
}

func (a *api) getMembers(r *http.Request) (int, any, error) {
	ms := a.n.Members()
	q := r.URL.Query()
	capName, cluster := q.Get("capability"), q.Get("cluster")
	for _, v := range []string{capName, cluster} {
		if v != "" {
			if err := member.ValidateName(v); err != nil {
				return 0, nil, err
			}
		}
	}
	version := ms.Version()
	self := ms.Self().ID
	out := wire.Members{Version: version, Members: []wire.Member{}}
	for _, m := range ms.List() {
		if (capName != "" && !m.HasCapability(capName)) || (cluster != "" && !m.InCluster(cluster)) {
			continue
		}
		out.Members = append(out.Members, realmMemberOf(m, m.ID == self))
	}
	return http.StatusOK, out, nil
}

func (a *api) getMemberStats(_ *http.Request) (int, any, error) {
	return http.StatusOK, memberStatsOf(a.n.Members().Stats()), nil
}

// memberStatsOf is a conversion: a field added to member.Stats alone
// stops this from compiling.
func memberStatsOf(s member.Stats) wire.MemberStats { return wire.MemberStats(s) }

func (a *api) putCapabilities(r *http.Request) (int, any, error) {
	var body wire.Capabilities
	if err := decodeBody(r, &body, `{"capabilities":["game","chat"]}`); err != nil {
		return 0, nil, err
	}
	ms := a.n.Members()
	before := ms.Self().Capabilities
	if err := ms.SetCapabilities(context.WithoutCancel(r.Context()), body.Capabilities); err != nil {
		if errors.Is(err, member.ErrUnauthorized) {
			return 0, nil, newAPIError(http.StatusForbidden, wire.CodeUnauthorized, err.Error())
		}
		return 0, nil, err
	}
	self := ms.Self()
	a.log.Info("capabilities changed through the API", "from", before, "to", self.Capabilities)
	return http.StatusOK, realmMemberOf(self, true), nil
}
