package alias

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/macula-io/macula/peerdid"
	"github.com/macula-io/macula/realm"
)

// Namespace is the DHT namespace of alias records: the record of
// did:macula:io.acme.orders.n1 is stored under "/alias/did:macula:io.acme.orders.n1".
const Namespace = "alias"

const (
	// maxRecord bounds an alias record's encoding.
	maxRecord = 8 << 10
	// MaxAddrs bounds the addresses an alias record may list.
	MaxAddrs = 32
	// clockLeeway is how far in the future a record's times may be, for
	// clocks that disagree a little.
	clockLeeway = time.Minute
	// maxPinned bounds the alias bindings a node remembers.
	maxPinned = 65536
)

// Record binds a readable alias to a key. It is signed by that key, so
// whoever holds it can check the binding without trusting who served it.
type Record struct {
	Alias  string   `json:"alias"`
	DID    string   `json:"did"`
	PeerID string   `json:"peer_id"`
	Addrs  []string `json:"addrs"`
	// Seq orders records of the same key: the highest wins.
	Seq uint64 `json:"seq"`
	// Bound is when the key first claimed the alias (as the key says);
	// between two keys the earlier claim wins.
	Bound time.Time `json:"bound"`
	// Expires is when the record stops counting; the owner republishes
	// before that.
	Expires time.Time `json:"expires"`
	// Member, in a secure realm, is the chain by which the authority
	// granted DID membership with this alias's name (ucan.Chain.String);
	// without it the record does not count there.
	Member string `json:"member,omitempty"`
	Sig    []byte `json:"sig"`
}

// Key returns the DHT key of an alias's record.
func Key(alias string) string { return "/" + Namespace + "/" + alias }

// signingBytes is what the signature covers: every field but Sig, in a fixed
// order, with a domain prefix so the signature means nothing elsewhere.
func (r *Record) signingBytes() []byte {
	var b strings.Builder
	b.WriteString("macula-alias-v1\n")
	for _, f := range []string{r.Alias, r.DID, r.PeerID, strings.Join(r.Addrs, " "),
		strconv.FormatUint(r.Seq, 10), strconv.FormatInt(r.Bound.UnixNano(), 10),
		strconv.FormatInt(r.Expires.UnixNano(), 10)} {
		b.WriteString(f)
		b.WriteByte('\n')
	}
	if r.Member != "" { // absent from records of open realms, as before
		b.WriteString(r.Member)
		b.WriteByte('\n')
	}
	return []byte(b.String())
}

// Sign fills DID, PeerID and Sig from key.
func (r *Record) Sign(key ed25519.PrivateKey) error {
	pub := key.Public().(ed25519.PublicKey)
	r.DID = realm.DIDKey(pub)
	id, err := peerdid.ID(pub)
	if err != nil {
		return err
	}
	r.PeerID = id.String()
	r.Sig = ed25519.Sign(key, r.signingBytes())
	return nil
}

// Verify checks the record on its own: well formed, signed by the key its
// DID names, that key's peer ID, not expired at now.
func (r *Record) Verify(now time.Time) error {
	if _, _, err := realm.ParseAlias(r.Alias); err != nil {
		return fmt.Errorf("%w: %w", ErrBadRecord, err)
	}
	pub, err := realm.ParseDIDKey(r.DID)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadRecord, err)
	}
	id, err := peerdid.ID(pub)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadRecord, err)
	}
	if id.String() != r.PeerID {
		return fmt.Errorf("%w: peer_id %q is not the peer ID of %s", ErrBadRecord, r.PeerID, r.DID)
	}
	if len(r.Addrs) > MaxAddrs {
		return fmt.Errorf("%w: %d addresses, at most %d", ErrBadRecord, len(r.Addrs), MaxAddrs)
	}
	if !ed25519.Verify(pub, r.signingBytes(), r.Sig) {
		return fmt.Errorf("%w: signature does not match %s", ErrBadRecord, r.DID)
	}
	if !now.Before(r.Expires) {
		return fmt.Errorf("%w: expired at %s", ErrBadRecord, r.Expires.UTC().Format(time.RFC3339))
	}
	if r.Bound.After(now.Add(clockLeeway)) {
		return fmt.Errorf("%w: bound in the future (%s)", ErrBadRecord, r.Bound.UTC().Format(time.RFC3339))
	}
	return nil
}

// Parse decodes a record without verifying it.
func Parse(b []byte) (*Record, error) {
	if len(b) > maxRecord {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrBadRecord, len(b), maxRecord)
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRecord, err)
	}
	return &r, nil
}

// Validator is the DHT validator of the alias namespace (a
// record.Validator for kad-dht). Besides checking each record alone, it remembers the first key seen for each alias
// (trust on first use) and refuses records of the same alias by another key,
// until the remembered binding expires.
type Validator struct {
	realm string
	// self is this node's own alias: never pinned, so that the node learns
	// from the realm, not from its own record, whether the alias is free.
	self   string
	log    *slog.Logger
	now    func() time.Time
	member func(r *Record) error

	// mu guards pinned.
	mu     sync.Mutex
	pinned map[string]pin // by alias
}

type pin struct {
	did     string
	expires time.Time
}

// NewValidator returns the validator of realm's alias records for the node
// whose own alias is self. member, in a secure realm, checks that a
// record's Member chain grants its DID membership with its alias's name
// (nil: an open realm, no check). A nil log is slog.Default().
func NewValidator(realmName, self string, member func(*Record) error, log *slog.Logger) *Validator {
	if log == nil {
		log = slog.Default()
	}
	return &Validator{realm: realmName, self: self, member: member, log: log, now: time.Now, pinned: make(map[string]pin)}
}

// Validate implements record.Validator.
func (v *Validator) Validate(key string, value []byte) error {
	r, err := v.check(key, value)
	if err != nil {
		return err
	}
	return v.pin(r)
}

func (v *Validator) check(key string, value []byte) (*Record, error) {
	r, err := Parse(value)
	if err != nil {
		return nil, err
	}
	if key != Key(r.Alias) {
		return nil, fmt.Errorf("%w: record for %q stored under %q", ErrBadRecord, r.Alias, key)
	}
	rr, _, err := realm.ParseAlias(r.Alias)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRecord, err)
	}
	if rr != v.realm {
		return nil, fmt.Errorf("%w: alias %s is of realm %q, not %q", ErrBadRecord, r.Alias, rr, v.realm)
	}
	if err := r.Verify(v.now()); err != nil {
		return nil, err
	}
	if v.member != nil {
		if err := v.member(r); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func (v *Validator) pin(r *Record) error {
	if r.Alias == v.self {
		return nil
	}
	now := v.now()
	v.mu.Lock()
	defer v.mu.Unlock()
	if p, ok := v.pinned[r.Alias]; ok && now.Before(p.expires) {
		if p.did != r.DID {
			v.log.Warn("refused alias claim by another key", "alias", r.Alias, "bound_to", p.did, "claimed_by", r.DID)
			return fmt.Errorf("%w: %s is bound to %s, refused claim by %s", ErrTaken, r.Alias, p.did, r.DID)
		}
		if r.Expires.After(p.expires) {
			v.pinned[r.Alias] = pin{did: r.DID, expires: r.Expires}
		}
		return nil
	}
	if len(v.pinned) >= maxPinned {
		for a, p := range v.pinned {
			if !now.Before(p.expires) {
				delete(v.pinned, a)
			}
		}
		if len(v.pinned) >= maxPinned {
			// Full of live bindings: check signatures but remember no more.
			return nil
		}
	}
	v.pinned[r.Alias] = pin{did: r.DID, expires: r.Expires}
	return nil
}

// BoundTo returns the DID an alias is bound to, as far as this node knows
// (a record it checked, not expired); ok is false when it knows none. The
// node's own alias is never pinned, so it is never known here.
func (v *Validator) BoundTo(alias string) (did string, ok bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	p, ok := v.pinned[alias]
	if !ok || !v.now().Before(p.expires) {
		return "", false
	}
	return p.did, true
}

// Select implements record.Validator: among records of one key the highest
// Seq wins; between keys the earliest claim (Bound) wins, then the smaller
// DID, so that every node picks the same one.
func (v *Validator) Select(key string, vals [][]byte) (int, error) {
	best := -1
	var br *Record
	for i, val := range vals {
		r, err := v.check(key, val)
		if err != nil {
			continue
		}
		if best < 0 || better(r, br) {
			best, br = i, r
		}
	}
	if best < 0 {
		return 0, fmt.Errorf("%w: no valid record among %d", ErrBadRecord, len(vals))
	}
	return best, nil
}

func better(a, b *Record) bool {
	if a.DID == b.DID {
		return a.Seq > b.Seq
	}
	if !a.Bound.Equal(b.Bound) {
		return a.Bound.Before(b.Bound)
	}
	return a.DID < b.DID
}
