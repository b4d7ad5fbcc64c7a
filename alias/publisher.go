package alias

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	kb "github.com/libp2p/go-libp2p-kbucket"
	"github.com/libp2p/go-libp2p/core/routing"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/macula-io/macula/internal/backoff"
	"github.com/macula-io/macula/realm"
)

// Store is what aliases need of the realm's DHT; *dht.DHT is one.
type Store interface {
	PutValue(ctx context.Context, key string, value []byte) error
	GetValue(ctx context.Context, key string) ([]byte, error)
}

// ErrNoPeers: the question needs the realm, and the node has no peer in
// its routing table yet.
var ErrNoPeers = errors.New("no peers to ask")

// Resolve returns the realm's best record for alias, verified. An alias
// nobody published is ErrNotFound; with no peer to ask, ErrNoPeers.
func Resolve(ctx context.Context, s Store, alias string) (*Record, error) {
	raw, err := s.GetValue(ctx, Key(alias))
	switch {
	case err == nil:
	case len(raw) > 0 && ctx.Err() != nil:
		// Out of time, but a valid record was found: use it.
	case errors.Is(err, routing.ErrNotFound):
		return nil, fmt.Errorf("%w: no record for %s", ErrNotFound, alias)
	case errors.Is(err, kb.ErrLookupFailure):
		return nil, fmt.Errorf("%w: cannot resolve %s: %v", ErrNoPeers, alias, err)
	default:
		return nil, fmt.Errorf("resolving %s: %w", alias, err)
	}
	rec, err := Parse(raw)
	if err != nil {
		return nil, err
	}
	if err := rec.Verify(time.Now()); err != nil {
		return nil, err
	}
	return rec, nil
}

// PublisherConfig is what a Publisher publishes.
type PublisherConfig struct {
	// Alias is the node's alias, did:macula:<realm>.<name>. Required.
	Alias string
	// Key is the node's key, which signs the record. Required.
	Key ed25519.PrivateKey
	// TTL is how long a record stays valid; it is republished every TTL/4.
	TTL time.Duration
	// Addrs returns the node's addresses for the record (at most MaxAddrs
	// are kept).
	Addrs func() []ma.Multiaddr
	// Member returns, in a secure realm, the chain text by which the
	// authority granted the node its name ("" in an open realm). A secure
	// node without one does not publish: its record would not count.
	Member func() string
	// Secure says the realm is secure.
	Secure bool
	// Logger gets the publisher's log lines. Default: slog.Default().
	Logger *slog.Logger
}

// Publisher keeps a node's alias record in the realm's DHT (see the package
// doc). Wake it when the node gets a peer; Close stops it.
type Publisher struct {
	cfg   PublisherConfig // read-only after NewPublisher
	store Store
	log   *slog.Logger
	wake  chan struct{}

	ctx    context.Context // lifetime; cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewPublisher starts a publisher of cfg.Alias in s. It publishes on the
// first Wake.
func NewPublisher(s Store, cfg PublisherConfig) (*Publisher, error) {
	if cfg.Alias == "" || len(cfg.Key) != ed25519.PrivateKeySize || cfg.TTL <= 0 || cfg.Addrs == nil || cfg.Member == nil {
		return nil, errors.New("alias: PublisherConfig needs Alias, Key, TTL, Addrs and Member")
	}
	p := &Publisher{cfg: cfg, store: s, log: cfg.Logger, wake: make(chan struct{}, 1)}
	if p.log == nil {
		p.log = slog.Default()
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.wg.Add(1)
	go p.loop()
	return p, nil
}

// Wake says the node has a new peer: a record not published yet is tried
// at once.
func (p *Publisher) Wake() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Close stops the publisher and waits for it. Records already stored stay
// until they expire.
func (p *Publisher) Close() error {
	p.cancel()
	p.wg.Wait()
	return nil
}

// loop publishes the record when the node first has a peer, then every
// TTL/4, and again on a new peer while the last attempt failed.
func (p *Publisher) loop() {
	defer p.wg.Done()
	var bound time.Time
	ok, failures := false, 0
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			t.Stop()
			return
		case <-p.wake:
			if ok {
				continue
			}
		case <-t.C:
		}
		if p.cfg.Secure && p.cfg.Member() == "" {
			continue // not granted its name: a record would not count (the node logs it)
		}
		var err error
		bound, err = p.publish(bound)
		ok = err == nil
		if err != nil && p.ctx.Err() == nil {
			p.log.Debug("alias not published yet", "alias", p.cfg.Alias, "err", err)
		}
		wait := p.cfg.TTL / 4
		switch {
		case errors.Is(err, ErrTaken):
			wait = p.cfg.TTL / 4
		case !ok:
			failures++
			wait = backoff.Wait(time.Second, 30*time.Second, failures)
		default:
			failures = 0
		}
		t.Reset(wait)
	}
}

// publish signs and stores the node's record. It first asks the realm who
// holds the alias: another key's record means the alias is taken (refused
// and logged); an answer it cannot get (no peers yet) means try later,
// never a blind claim. It keeps the time of its first claim, so the binding
// stays the older one in any conflict, and checks after the write that the
// realm's best record is its own.
func (p *Publisher) publish(bound time.Time) (time.Time, error) {
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	self := realm.DIDKey(p.cfg.Key.Public().(ed25519.PublicKey))
	now := time.Now()
	if bound.IsZero() {
		held, err := p.holder(ctx)
		switch {
		case err == nil && held.DID != self:
			return bound, p.taken(held.DID)
		case err == nil:
			bound = held.Bound
		case errors.Is(err, routing.ErrNotFound):
			bound = now
		default:
			return bound, err
		}
	}
	rec := &Record{Alias: p.cfg.Alias, Seq: uint64(now.UnixNano()), Bound: bound, Expires: now.Add(p.cfg.TTL), Member: p.cfg.Member()}
	for _, a := range p.cfg.Addrs() {
		if len(rec.Addrs) < MaxAddrs {
			rec.Addrs = append(rec.Addrs, a.String())
		}
	}
	if err := rec.Sign(p.cfg.Key); err != nil {
		return bound, err
	}
	raw, err := json.Marshal(rec)
	if err != nil {
		return bound, err
	}
	if err := p.store.PutValue(ctx, Key(p.cfg.Alias), raw); err != nil {
		// kad-dht has no sentinel for a local record that Select prefers to
		// ours; for alias records that only happens when another key holds
		// an older claim, since our own records always rise in Seq.
		if strings.Contains(err.Error(), "can't replace a newer value") {
			return bound, p.taken("another key")
		}
		return bound, err
	}
	// kad-dht's PutValue ignores peers that refuse the record; ask again to
	// learn whether the realm took ours.
	if held, err := p.holder(ctx); err == nil && held.DID != self {
		return bound, p.taken(held.DID)
	}
	p.log.Debug("alias published", "alias", p.cfg.Alias)
	return bound, nil
}

// holder returns the realm's best record for the alias.
func (p *Publisher) holder(ctx context.Context) (*Record, error) {
	raw, err := p.store.GetValue(ctx, Key(p.cfg.Alias))
	if err != nil {
		return nil, err
	}
	return Parse(raw)
}

func (p *Publisher) taken(holder string) error {
	p.log.Error("alias is bound to another key; not publishing", "alias", p.cfg.Alias, "bound_to", holder)
	return fmt.Errorf("%w: %s is bound to %s", ErrTaken, p.cfg.Alias, holder)
}
