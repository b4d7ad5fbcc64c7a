package dht

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	dsq "github.com/ipfs/go-datastore/query"
	dssync "github.com/ipfs/go-datastore/sync"
	kad "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p-kad-dht/amino"
	pb "github.com/libp2p/go-libp2p-kad-dht/pb"
	"github.com/libp2p/go-libp2p-kad-dht/records"
	record "github.com/libp2p/go-libp2p-record"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/multiformats/go-multihash"

	"github.com/macula-io/macula/internal/closed"
)

// Mode says whether the node answers DHT queries.
type Mode string

const (
	// ModeServer answers queries and stores records: for reachable nodes.
	ModeServer Mode = "server"
	// ModeClient only asks: for nodes behind NAT that others cannot dial.
	ModeClient Mode = "client"
	// ModeAuto switches between the two on the host's reachability.
	ModeAuto Mode = "auto"
)

// Errors returned by the DHT.
var (
	// ErrInvalidKey: an empty key, or one over MaxKeyLen.
	ErrInvalidKey = errors.New("dht: invalid key")
	// ErrClosed: the DHT was closed. It matches net.ErrClosed.
	ErrClosed = closed.Error("dht")
)

// MaxKeyLen bounds a key's length in bytes.
const MaxKeyLen = 512

// Config tunes the DHT. The zero value works except for Realm.
type Config struct {
	// Realm is the realm whose DHT this is; it becomes the protocol prefix
	// /macula/<realm>. Required.
	Realm string
	// Mode is server, client or auto. Default: server.
	Mode Mode
	// Validators are the value-record namespaces this DHT accepts, by
	// namespace ("alias" for records under "/alias/..."). Default: none.
	Validators map[string]record.Validator
	// ReprovideInterval is how often provided keys are announced again.
	// Default: 12 hours (kad-dht keeps provider records for 48).
	ReprovideInterval time.Duration
	// MaxTrackedKeys bounds how many provider keys stored for other peers
	// are counted in Stats. Default: 100000.
	MaxTrackedKeys int
	// Logger gets the DHT's own log lines. Default: slog.Default().
	Logger *slog.Logger
}

// Stats is a snapshot of the DHT's state.
type Stats struct {
	// Mode is the mode the DHT runs in now.
	Mode Mode `json:"mode"`
	// Nodes is the number of peers in the routing table.
	Nodes int `json:"nodes"`
	// Buckets is the number of non-empty k-buckets.
	Buckets int `json:"buckets"`
	// ProviderKeys is the number of keys this node holds provider records
	// for (its own and other peers'); ValueRecords the value records it stores.
	ProviderKeys int `json:"provider_keys"`
	ValueRecords int `json:"value_records"`
	// StoredKeys is ProviderKeys + ValueRecords.
	StoredKeys int `json:"stored_keys"`
	// Providing is the number of keys this node itself provides.
	Providing int `json:"providing"`
}

// DHT is a realm's Kademlia DHT on one host.
type DHT struct {
	kad    *kad.IpfsDHT
	store  ds.Batching
	realm  string
	cfg    Config
	log    *slog.Logger
	ctx    context.Context // lifetime; cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// mu guards the fields below it.
	mu        sync.Mutex
	providing map[string]struct{}  // keys this node provides
	seen      map[string]time.Time // provider keys other peers stored here, by multihash bytes
	closed    bool
}

// ProtocolPrefix returns the DHT protocol prefix of a realm.
func ProtocolPrefix(realm string) protocol.ID {
	return protocol.ID("/macula/" + realm)
}

// New starts a DHT on h. It does not connect to anyone: the node dials its
// bootstrap peers and the DHT learns of them through the host.
func New(h host.Host, cfg Config) (*DHT, error) {
	if cfg.Realm == "" {
		return nil, errors.New("dht: Config.Realm is required")
	}
	if cfg.Mode == "" {
		cfg.Mode = ModeServer
	}
	if cfg.ReprovideInterval <= 0 {
		cfg.ReprovideInterval = 12 * time.Hour
	}
	if cfg.MaxTrackedKeys <= 0 {
		cfg.MaxTrackedKeys = 100000
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	var mode kad.ModeOpt
	switch cfg.Mode {
	case ModeServer:
		mode = kad.ModeServer
	case ModeClient:
		mode = kad.ModeClient
	case ModeAuto:
		mode = kad.ModeAutoServer
	default:
		return nil, fmt.Errorf("dht: Config.Mode %q: want server, client or auto", cfg.Mode)
	}
	d := &DHT{
		store:     dssync.MutexWrap(ds.NewMapDatastore()),
		realm:     cfg.Realm,
		cfg:       cfg,
		log:       log,
		providing: make(map[string]struct{}),
		seen:      make(map[string]time.Time),
	}
	opts := []kad.Option{
		kad.ProtocolPrefix(ProtocolPrefix(cfg.Realm)),
		kad.Mode(mode),
		kad.Datastore(d.store),
		kad.OnRequestHook(d.onRequest),
	}
	for ns, v := range cfg.Validators {
		opts = append(opts, kad.NamespacedValidator(ns, v))
	}
	k, err := kad.New(h, opts...)
	if err != nil {
		return nil, fmt.Errorf("dht: %w", err)
	}
	d.kad = k
	d.ctx, d.cancel = context.WithCancel(context.Background())
	d.wg.Add(1)
	go d.reprovideLoop()
	return d, nil
}

// onRequest counts the keys other peers ask us to hold provider records for,
// so that Stats can say how many keys this node stores. It runs inside the
// DHT's message handler, so it only touches a map.
func (d *DHT) onRequest(_ context.Context, _ network.Stream, req *pb.Message) {
	if req.GetType() != pb.Message_ADD_PROVIDER || len(req.GetKey()) == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.seen[string(req.GetKey())]; !ok && len(d.seen) >= d.cfg.MaxTrackedKeys {
		return
	}
	d.seen[string(req.GetKey())] = time.Now()
}

// Kad returns the underlying kad-dht, for services that route through it.
func (d *DHT) Kad() *kad.IpfsDHT { return d.kad }

// KeyCID returns the CID under which key is provided in realm.
func KeyCID(realm, key string) cid.Cid {
	sum := sha256.Sum256([]byte("macula:" + realm + ":" + key))
	mh, _ := multihash.Encode(sum[:], multihash.SHA2_256)
	return cid.NewCidV1(cid.Raw, mh)
}

func checkKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty", ErrInvalidKey)
	}
	if len(key) > MaxKeyLen {
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrInvalidKey, len(key), MaxKeyLen)
	}
	return nil
}

// Provide announces that this node provides key, and keeps announcing it
// every ReprovideInterval until StopProviding. The announcement reaches the
// peers closest to the key; with an empty routing table it is only local,
// and the next reprovide spreads it.
func (d *DHT) Provide(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return ErrClosed
	}
	d.providing[key] = struct{}{}
	d.mu.Unlock()
	return d.announce(ctx, key)
}

func (d *DHT) announce(ctx context.Context, key string) error {
	broadcast := d.kad.RoutingTable().Size() > 0
	if err := d.kad.Provide(ctx, KeyCID(d.realm, key), broadcast); err != nil {
		return fmt.Errorf("dht: provide %q: %w", key, err)
	}
	return nil
}

// StopProviding stops re-announcing key. Records already stored by other
// peers stay until they expire; callers that need a faster withdrawal must
// say so in their own protocol.
func (d *DHT) StopProviding(key string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.providing, key)
}

// Providing returns the keys this node provides, sorted.
func (d *DHT) Providing() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	keys := make([]string, 0, len(d.providing))
	for k := range d.providing {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Reprovide announces every provided key again now, for example after the
// routing table went from empty to not empty.
func (d *DHT) Reprovide(ctx context.Context) {
	for _, k := range d.Providing() {
		if err := d.announce(ctx, k); err != nil && ctx.Err() == nil {
			d.log.Debug("reprovide failed", "key", k, "err", err)
		}
	}
}

func (d *DHT) reprovideLoop() {
	defer d.wg.Done()
	t := time.NewTicker(d.cfg.ReprovideInterval)
	defer t.Stop()
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-t.C:
			d.Reprovide(d.ctx)
			d.expireSeen()
		}
	}
}

func (d *DHT) expireSeen() {
	cutoff := time.Now().Add(-amino.DefaultProvideValidity)
	d.mu.Lock()
	defer d.mu.Unlock()
	for k, t := range d.seen {
		if t.Before(cutoff) {
			delete(d.seen, k)
		}
	}
}

// Lookup returns up to limit providers of key (all it finds when limit <= 0)
// with their addresses. It asks the local store and the network until ctx
// ends or enough are found. No providers is not an error: the slice is empty.
func (d *DHT) Lookup(ctx context.Context, key string, limit int) ([]peer.AddrInfo, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	if d.ctx.Err() != nil {
		return nil, ErrClosed
	}
	count := limit
	if count <= 0 {
		count = 0 // kad: 0 means no limit
	}
	var out []peer.AddrInfo
	for ai := range d.kad.FindProvidersAsync(ctx, KeyCID(d.realm, key), count) {
		if ai.ID == d.kad.PeerID() {
			ai.Addrs = d.kad.Host().Addrs()
		} else if len(ai.Addrs) == 0 {
			ai.Addrs = d.kad.Host().Peerstore().Addrs(ai.ID)
		}
		out = append(out, ai)
	}
	if len(out) == 0 && ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return nil, ctx.Err()
	}
	return out, nil
}

// PutValue stores a value record under "/<namespace>/<key>"; its namespace
// must have a validator in Config.
func (d *DHT) PutValue(ctx context.Context, key string, value []byte) error {
	return d.kad.PutValue(ctx, key, value)
}

// GetValue returns the best value record for key, as its validator selects.
func (d *DHT) GetValue(ctx context.Context, key string) ([]byte, error) {
	return d.kad.GetValue(ctx, key)
}

// Bootstrap refreshes the routing table now.
func (d *DHT) Bootstrap(ctx context.Context) error { return d.kad.Bootstrap(ctx) }

// RefreshRoutingTable asks the DHT to refresh its routing table and returns
// when the refresh is done.
func (d *DHT) RefreshRoutingTable(ctx context.Context) error {
	select {
	case err := <-d.kad.RefreshRoutingTable():
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// RoutingTablePeers returns the peers in the routing table.
func (d *DHT) RoutingTablePeers() []peer.ID { return d.kad.RoutingTable().ListPeers() }

// Stats returns a snapshot of the routing table and the stored records.
func (d *DHT) Stats(ctx context.Context) (Stats, error) {
	rt := d.kad.RoutingTable()
	s := Stats{Nodes: rt.Size()}
	switch d.kad.Mode() {
	case kad.ModeClient:
		s.Mode = ModeClient
	case kad.ModeServer:
		s.Mode = ModeServer
	default:
		s.Mode = ModeAuto
	}
	for cpl := uint(0); cpl <= 256; cpl++ {
		if rt.NPeersForCpl(cpl) > 0 {
			s.Buckets++
		}
	}
	d.mu.Lock()
	s.Providing = len(d.providing)
	keys := make([][]byte, 0, len(d.seen)+len(d.providing))
	for k := range d.seen {
		keys = append(keys, []byte(k))
	}
	for k := range d.providing {
		keys = append(keys, KeyCID(d.realm, k).Hash())
	}
	d.mu.Unlock()
	uniq := make(map[string]struct{}, len(keys))
	for _, k := range keys {
		if _, dup := uniq[string(k)]; dup {
			continue
		}
		uniq[string(k)] = struct{}{}
		provs, err := d.kad.ProviderStore().GetProviders(ctx, k)
		if err != nil {
			return s, fmt.Errorf("dht: stats: %w", err)
		}
		if len(provs) > 0 {
			s.ProviderKeys++
		}
	}
	res, err := d.store.Query(ctx, dsq.Query{KeysOnly: true})
	if err != nil {
		return s, fmt.Errorf("dht: stats: %w", err)
	}
	defer res.Close()
	for e := range res.Next() {
		if e.Error != nil {
			return s, fmt.Errorf("dht: stats: %w", e.Error)
		}
		if !strings.HasPrefix(e.Key, records.ProvidersKeyPrefix) {
			s.ValueRecords++
		}
	}
	s.StoredKeys = s.ProviderKeys + s.ValueRecords
	return s, nil
}

// Close stops the DHT and its reprovide loop. It does not close the host.
func (d *DHT) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.mu.Unlock()
	d.cancel()
	d.wg.Wait()
	return d.kad.Close()
}
