package node

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	kb "github.com/libp2p/go-libp2p-kbucket"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"

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
	Record *AliasRecord `json:"record,omitempty"`
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
		id, err := peerIDOf(pub)
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
		raw, err := n.dht.GetValue(ctx, AliasKey(did))
		switch {
		case err == nil:
		case len(raw) > 0 && ctx.Err() != nil:
			// Out of time, but a valid record was found: use it.
		case errors.Is(err, routing.ErrNotFound):
			return nil, fmt.Errorf("%w: no record for %s in realm %s", ErrNotFound, did, rr)
		case errors.Is(err, kb.ErrLookupFailure):
			return nil, fmt.Errorf("%w: cannot resolve %s: %v", ErrNoPeers, did, err)
		default:
			return nil, fmt.Errorf("resolving %s: %w", did, err)
		}
		rec, err := ParseAliasRecord(raw)
		if err != nil {
			return nil, err
		}
		if err := rec.Verify(time.Now()); err != nil {
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

func peerIDOf(pub ed25519.PublicKey) (peer.ID, error) {
	pk, err := crypto.UnmarshalEd25519PublicKey(pub)
	if err != nil {
		return "", err
	}
	return peer.IDFromPublicKey(pk)
}

func addrStrings(n *Node) []string {
	out := []string{}
	for _, a := range n.Addrs() {
		out = append(out, a.String())
	}
	return out
}

// aliasLoop publishes the node's alias record when the node first has a
// peer, then every AliasTTL/4, and again on a new peer while the last
// attempt failed.
func (n *Node) aliasLoop() {
	defer n.wg.Done()
	var bound time.Time
	ok, failures := false, 0
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			t.Stop()
			return
		case <-n.wake:
			if ok {
				continue
			}
		case <-t.C:
		}
		if n.sec.v != nil && n.memberChain() == "" {
			continue // not granted its name: a record would not count (logged at start)
		}
		var err error
		bound, err = n.publishAlias(bound)
		ok = err == nil
		if err != nil && n.ctx.Err() == nil {
			n.log.Debug("alias not published yet", "alias", n.alias, "err", err)
		}
		wait := n.cfg.AliasTTL / 4
		switch {
		case errors.Is(err, ErrAliasTaken):
			wait = n.cfg.AliasTTL / 4
		case !ok:
			failures++
			wait = backoff(time.Second, 30*time.Second, failures)
		default:
			failures = 0
		}
		t.Reset(wait)
	}
}

// publishAlias signs and stores the node's alias record. It first asks the
// realm who holds the alias: another key's record means the alias is taken
// (refused and logged); an answer it cannot get (no peers yet) means try
// later, never a blind claim. It keeps the time of its first claim, so the
// binding stays the older one in any conflict, and checks after the write
// that the realm's best record is its own.
func (n *Node) publishAlias(bound time.Time) (time.Time, error) {
	ctx, cancel := context.WithTimeout(n.ctx, 30*time.Second)
	defer cancel()
	now := time.Now()
	if bound.IsZero() {
		held, err := n.aliasHolder(ctx)
		switch {
		case err == nil && held.DID != n.did:
			return bound, n.aliasTaken(held.DID)
		case err == nil:
			bound = held.Bound
		case errors.Is(err, routing.ErrNotFound):
			bound = now
		default:
			return bound, err
		}
	}
	rec := &AliasRecord{Alias: n.alias, Seq: uint64(now.UnixNano()), Bound: bound, Expires: now.Add(n.cfg.AliasTTL), Member: n.memberChain()}
	for _, a := range n.host.Addrs() {
		if len(rec.Addrs) < maxAliasAddrs {
			rec.Addrs = append(rec.Addrs, a.String())
		}
	}
	if err := rec.sign(n.id.priv); err != nil {
		return bound, err
	}
	raw, err := json.Marshal(rec)
	if err != nil {
		return bound, err
	}
	if err := n.dht.PutValue(ctx, AliasKey(n.alias), raw); err != nil {
		// kad-dht has no sentinel for a local record that Select prefers to
		// ours; for alias records that only happens when another key holds
		// an older claim, since our own records always rise in Seq.
		if strings.Contains(err.Error(), "can't replace a newer value") {
			return bound, n.aliasTaken("another key")
		}
		return bound, err
	}
	// kad-dht's PutValue ignores peers that refuse the record; ask again to
	// learn whether the realm took ours.
	if held, err := n.aliasHolder(ctx); err == nil && held.DID != n.did {
		return bound, n.aliasTaken(held.DID)
	}
	n.log.Debug("alias published", "alias", n.alias)
	return bound, nil
}

// aliasHolder returns the realm's best record for this node's alias.
func (n *Node) aliasHolder(ctx context.Context) (*AliasRecord, error) {
	raw, err := n.dht.GetValue(ctx, AliasKey(n.alias))
	if err != nil {
		return nil, err
	}
	return ParseAliasRecord(raw)
}

func (n *Node) aliasTaken(holder string) error {
	n.log.Error("alias is bound to another key; not publishing", "alias", n.alias, "bound_to", holder)
	return fmt.Errorf("%w: %s is bound to %s", ErrAliasTaken, n.alias, holder)
}
