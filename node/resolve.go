package node

import (
	"context"
	"fmt"
	"strings"

	"github.com/macula-io/macula/alias"
	"github.com/macula-io/macula/peerdid"
	"github.com/macula-io/macula/realm"
)

// Resolution is what a DID resolves to.
type Resolution struct {
	// DID is the did:key; Alias the did:macula alias, if known.
	DID    string   `json:"did"`
	Alias  string   `json:"alias,omitempty"`
	PeerID string   `json:"peer_id"`
	Addrs  []string `json:"addrs"`
	// Record is the signed alias record the answer came from, if any; its
	// signature has been checked.
	Record *alias.Record `json:"record,omitempty"`
}

// Resolve resolves a did:key (to its peer ID and known addresses) or an
// alias did:macula:<realm>.<name> of this node's realm (through its signed
// record in the DHT). An alias of another realm is ErrOtherRealm; an alias
// nobody published is ErrNotFound.
func (n *Node) Resolve(ctx context.Context, did string) (*Resolution, error) {
	switch {
	case strings.HasPrefix(did, "did:key:"):
		pub, err := realm.ParseDIDKey(did)
		if err != nil {
			return nil, err
		}
		id, err := peerdid.ID(pub)
		if err != nil {
			return nil, err
		}
		r := &Resolution{DID: did, PeerID: id.String(), Addrs: []string{}}
		if id == n.ID() {
			r.Alias = n.alias
		}
		for _, a := range n.host.Peerstore().Addrs(id) {
			r.Addrs = append(r.Addrs, a.String())
		}
		if id == n.ID() {
			r.Addrs = addrStrings(n)
		}
		return r, nil
	case strings.HasPrefix(did, "did:macula:"):
		rr, _, err := realm.ParseAlias(did)
		if err != nil {
			return nil, err
		}
		if rr != n.cfg.Realm {
			return nil, fmt.Errorf("%w: %s is of realm %q; this node is in %q", ErrOtherRealm, did, rr, n.cfg.Realm)
		}
		if did == n.alias {
			return &Resolution{DID: n.did, Alias: n.alias, PeerID: n.ID().String(), Addrs: addrStrings(n)}, nil
		}
		rec, err := alias.Resolve(ctx, n.dht, did)
		if err != nil {
			return nil, err
		}
		addrs := rec.Addrs
		if addrs == nil {
			addrs = []string{}
		}
		return &Resolution{DID: rec.DID, Alias: rec.Alias, PeerID: rec.PeerID, Addrs: addrs, Record: rec}, nil
	}
	return nil, fmt.Errorf("%w: %q: want did:key:... or did:macula:<realm>.<name>", realm.ErrInvalidDID, did)
}

func addrStrings(n *Node) []string {
	out := []string{}
	for _, a := range n.Addrs() {
		out = append(out, a.String())
	}
	return out
}
