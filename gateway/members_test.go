package gateway

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	wire "github.com/macula-io/macula/api"
	"github.com/macula-io/macula/internal/testnet"
	"github.com/macula-io/macula/member"
)

func TestMembersAPI(t *testing.T) {
	a := startNode(t, testRealm, "a")
	b := startNode(t, testRealm, "b", a)
	ga := startGateway(t, a, nil)
	for i, proto := range []string{"http", "http3"} {
		t.Run(proto, func(t *testing.T) {
			c := clientFor(t, ga, proto)
			var ms *wire.Members
			testnet.Eventually(t, 10*time.Second, func() error {
				var err error
				if ms, err = c.RealmMembers(ctxFor(t, 5*time.Second), wire.MembersQuery{}); err != nil {
					return err
				}
				if len(ms.Members) != 2 {
					return fmt.Errorf("members = %+v", ms.Members)
				}
				return nil
			})
			for _, m := range ms.Members {
				if m.Self != (m.PeerID == a.ID().String()) || m.DID == "" || m.Capabilities == nil || m.Clusters == nil {
					t.Errorf("member = %+v", m)
				}
			}
			caps := []string{"game", fmt.Sprintf("chat%d", i)}
			self, err := c.SetCapabilities(ctxFor(t, 5*time.Second), caps)
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(caps)
			if !self.Self || self.Name != "a" || !slices.Equal(self.Capabilities, caps) {
				t.Fatalf("after PUT: %+v", self)
			}
			testnet.Eventually(t, 10*time.Second, func() error {
				if got := b.Members().WithCapability(caps[0]); len(got) != 1 || got[0].ID != a.ID() {
					return fmt.Errorf("b sees %s on %v", caps[0], got)
				}
				return nil
			})
			only, err := c.RealmMembers(ctxFor(t, 5*time.Second), wire.MembersQuery{Capability: "game"})
			if err != nil || len(only.Members) != 1 || only.Members[0].PeerID != a.ID().String() {
				t.Fatalf("members serving game: %+v, %v", only, err)
			}
			if none, err := c.RealmMembers(ctxFor(t, 5*time.Second), wire.MembersQuery{Cluster: "eu"}); err != nil || len(none.Members) != 0 {
				t.Fatalf("members in eu: %+v, %v", none, err)
			}
			st, err := c.MemberStats(ctxFor(t, 5*time.Second))
			if err != nil || st.Members != 2 {
				t.Fatalf("stats: %+v, %v", st, err)
			}
			_, err = c.SetCapabilities(ctxFor(t, 5*time.Second), []string{"Not a name"})
			wantAPIError(t, err, http.StatusBadRequest, wire.CodeInvalidName)
			_, err = c.RealmMembers(ctxFor(t, 5*time.Second), wire.MembersQuery{Capability: "a.b"})
			wantAPIError(t, err, http.StatusBadRequest, wire.CodeInvalidName)
			err = c.raw(ctxFor(t, 5*time.Second), "PUT", "/v1/capabilities", nil, []byte(`{"caps":["x"]}`))
			wantAPIError(t, err, http.StatusBadRequest, wire.CodeBadRequest)
			if got := a.Members().Self().Capabilities; !slices.Equal(got, caps) {
				t.Fatalf("a bad request changed the capabilities: %v", got)
			}
		})
	}
}

// TestMembersAPISecure: a node of a secure realm cannot claim through the
// API a capability it holds no serve grant for, even asked by its own user;
// a request from off loopback without a token is not served.
func TestMembersAPISecure(t *testing.T) {
	s := startSecure(t)
	wantError(t, request(s.h, "PUT", "/v1/capabilities", `{"capabilities":["game"]}`, loopbackAddr, s.local()), 403, wire.CodeUnauthorized, "/macula/serve")
	if got := s.n.Members().Self().Capabilities; len(got) != 0 {
		t.Fatalf("capabilities after a refusal: %v", got)
	}
	if w := request(s.h, "GET", "/v1/members", "", loopbackAddr, s.local()); w.Code != 200 {
		t.Fatalf("GET /v1/members: %d %s", w.Code, w.Body)
	}
	wantError(t, request(s.h, "GET", "/v1/members", "", remoteAddr, ""), 401, wire.CodeUnauthenticated)
}

func TestMemberWireJSON(t *testing.T) {
	st := filled[member.Stats](t)
	sameJSON(t, "member stats", st, memberStatsOf(st))
}
