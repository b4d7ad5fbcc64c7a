// Package revocation carries a secure realm's revocation records from node
// to node, and keeps them in the node's data directory across restarts.
//
// A record (ucan.Revoke, signed by the realm authority) given to one node
// is put in force in its validator and passed on to every realm peer, which
// pass it on in turn: flooding, where a record seen before goes no further.
// A peer that connects later gets every record in force once its realm
// handshake is done (Exchange.SendAll), and the node sends them all to
// every peer again now and then (Exchange.Resync, every 5 minutes in node),
// so that a record lost on the way is in force everywhere within that time.
// Records are read only from members of the realm (Config.Member).
//
// Wire: protocol /macula/<realm>/revocations/1.0.0, one stream per batch;
// the sender writes frames (package frame: type 1, version 1, one record of
// at most 16 KiB each), at most 4096 of them, and closes the stream. The
// file (File, in the data directory) holds the same frames, one per record
// in force, rewritten whole on every new record.
package revocation

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/macula-io/macula/frame"
	"github.com/macula-io/macula/internal/atomicfile"
	"github.com/macula-io/macula/internal/closed"
	"github.com/macula-io/macula/ucan"
)

// File keeps, in a node's data directory, the revocation records it has
// seen, so that a restart does not forget them.
const File = "revocations"

// Protocol carries revocation records between the nodes of a realm.
func Protocol(realmName string) protocol.ID {
	return protocol.ID("/macula/" + realmName + "/revocations/1.0.0")
}

// Frames (append only).
const (
	frameRecord uint8 = 1
	recordVer   uint8 = 1
	// MaxRecord bounds one record on the wire and in the file.
	MaxRecord = 16 << 10
	// MaxBatch bounds the records one stream carries; a node holding more
	// sends that many, in any order.
	MaxBatch = 4096
)

// sendTries is how many times a batch is sent to a connected peer before
// it is left to the next Resync or handshake.
const sendTries = 3

// ErrClosed: the exchange is closed. It matches net.ErrClosed.
var ErrClosed = closed.Error("revocation")

// Config configures an Exchange. Validator, Peers and Member are required.
type Config struct {
	// Realm names the protocol.
	Realm string
	// Validator holds the records in force (it checks that the authority
	// signed them).
	Validator *ucan.Validator
	// Dir is the data directory the records are kept in (File); "" keeps
	// nothing.
	Dir string
	// Timeout bounds sending one batch to a peer. Default: 10s.
	Timeout time.Duration
	// Peers lists the realm peers records are passed on to (those whose
	// realm handshake is done).
	Peers func() []peer.ID
	// Member reports whether p is a member of the realm now: records are
	// read from members only.
	Member func(p peer.ID) bool
	// Applied, if set, is called after a new record is in force (the node
	// disconnects the peers whose membership it revoked).
	Applied func()
	// Logger gets the exchange's logs. Default: slog.Default().
	Logger *slog.Logger
}

// Exchange passes a realm's revocation records between its nodes on one
// host: its stream handler, and the senders it starts (each bounded by
// Config.Timeout and stopped by Close).
type Exchange struct {
	h     host.Host
	cfg   Config
	log   *slog.Logger
	proto protocol.ID

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// mu guards closed and seen. A leaf.
	mu     sync.Mutex
	closed bool
	seen   map[[32]byte]bool // records handled already (a cache: the validator dedupes too)

	// persistMu serialises writes of the file; taken before the
	// validator's lock.
	persistMu sync.Mutex
}

// New starts the exchange on h: its stream handler is set at once. The
// records already in force in the validator (Load) count as seen.
func New(h host.Host, cfg Config) (*Exchange, error) {
	switch {
	case cfg.Validator == nil:
		return nil, errors.New("revocation: Config.Validator is required")
	case cfg.Peers == nil || cfg.Member == nil:
		return nil, errors.New("revocation: Config.Peers and Config.Member are required")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	x := &Exchange{h: h, cfg: cfg, log: log, proto: Protocol(cfg.Realm), seen: make(map[[32]byte]bool)}
	for _, r := range cfg.Validator.Revocations() {
		x.seen[sha256.Sum256(r)] = true
	}
	x.ctx, x.cancel = context.WithCancel(context.Background())
	h.SetStreamHandler(x.proto, x.handle)
	return x, nil
}

// Close removes the stream handler, stops the senders and waits for them
// and for the handlers under way.
func (x *Exchange) Close() error {
	x.mu.Lock()
	if x.closed {
		x.mu.Unlock()
		return nil
	}
	x.closed = true
	x.mu.Unlock()
	x.h.RemoveStreamHandler(x.proto)
	x.cancel()
	x.wg.Wait()
	return nil
}

// enter counts a goroutine that Close waits for; false once closed.
func (x *Exchange) enter() bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		return false
	}
	x.wg.Add(1)
	return true
}

// Add puts a record in force (the validator refuses one that the authority
// did not sign) and, when it is new, stores it and passes it on to every
// peer but from ("" for a record given to this node). It reports whether
// the record was new.
func (x *Exchange) Add(record []byte, from peer.ID) (bool, error) {
	if len(record) > MaxRecord {
		return false, fmt.Errorf("%w: revocation record of %d bytes, at most %d", ucan.ErrMalformed, len(record), MaxRecord)
	}
	sum := sha256.Sum256(record)
	x.mu.Lock()
	closed, seen := x.closed, x.seen[sum]
	x.mu.Unlock()
	if closed {
		return false, ErrClosed
	}
	if seen {
		return false, nil
	}
	if err := x.cfg.Validator.AddRevocation(record); err != nil {
		return false, err
	}
	x.mu.Lock()
	if len(x.seen) >= 4*MaxBatch {
		x.seen = make(map[[32]byte]bool)
	}
	x.seen[sum] = true
	x.mu.Unlock()
	x.persist()
	if x.cfg.Applied != nil {
		x.cfg.Applied()
	}
	for _, p := range x.cfg.Peers() {
		if p != from {
			x.send(p, [][]byte{record})
		}
	}
	return true, nil
}

// SendAll sends every record in force to p in the background: p's realm
// handshake is done.
func (x *Exchange) SendAll(p peer.ID) {
	x.send(p, x.cfg.Validator.Revocations())
}

// Resync sends every record in force to every peer again, in the
// background.
func (x *Exchange) Resync() {
	recs := x.cfg.Validator.Revocations()
	if len(recs) == 0 {
		return
	}
	for _, p := range x.cfg.Peers() {
		x.send(p, recs)
	}
}

// send sends records to p in the background: a few tries while p stays
// connected.
func (x *Exchange) send(p peer.ID, records [][]byte) {
	if len(records) == 0 || !x.enter() {
		return
	}
	if len(records) > MaxBatch {
		records = records[:MaxBatch]
	}
	go func() {
		defer x.wg.Done()
		for try := 1; ; try++ {
			err := x.sendOnce(p, records)
			if err == nil {
				return
			}
			x.log.Debug("cannot send revocations", "peer", p, "try", try, "err", err)
			if try == sendTries {
				return
			}
			select {
			case <-x.ctx.Done():
				return
			case <-time.After(time.Second):
			}
			if x.h.Network().Connectedness(p) != network.Connected {
				return
			}
		}
	}()
}

func (x *Exchange) sendOnce(p peer.ID, records [][]byte) error {
	ctx, cancel := context.WithTimeout(x.ctx, x.cfg.Timeout)
	defer cancel()
	s, err := x.h.NewStream(network.WithAllowLimitedConn(ctx, "macula revocations"), p, x.proto)
	if err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	for _, r := range records {
		if err := frame.Write(s, frameRecord, recordVer, r); err != nil {
			_ = s.Reset()
			return err
		}
	}
	return s.Close()
}

// handle reads records from a member peer.
func (x *Exchange) handle(s network.Stream) {
	if !x.enter() {
		_ = s.Reset()
		return
	}
	defer x.wg.Done()
	defer s.Close()
	p := s.Conn().RemotePeer()
	if !x.cfg.Member(p) {
		_ = s.Reset()
		return
	}
	_ = s.SetDeadline(time.Now().Add(x.cfg.Timeout))
	stop := context.AfterFunc(x.ctx, func() { _ = s.Reset() })
	defer stop()
	r := frame.NewReader(s, MaxRecord)
	for range MaxBatch {
		hdr, rec, err := r.Next()
		if err != nil {
			return
		}
		if hdr.Type != frameRecord || hdr.Version != recordVer {
			_ = s.Reset()
			return
		}
		if _, err := x.Add(bytes.Clone(rec), p); err != nil {
			x.log.Debug("refused revocation record", "peer", p, "err", err)
		}
	}
}

// Load puts the records kept in dir (File) in force in v. A missing file
// is no error; an unreadable one is; a file whose end cannot be parsed
// gives what comes before it, with a warning. It runs before the node
// checks its own chains, so that a revoked membership is refused at start.
func Load(v *ucan.Validator, dir string, log *slog.Logger) error {
	if dir == "" {
		return nil
	}
	if log == nil {
		log = slog.Default()
	}
	path := filepath.Join(dir, File)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("revocation: %w", err)
	}
	recs, err := parse(b)
	if err != nil {
		log.Warn("ignoring the rest of an unreadable revocations file", "file", path, "err", err)
	}
	for _, rec := range recs {
		if err := v.AddRevocation(rec); err != nil {
			log.Debug("ignoring stored revocation", "err", err)
		}
	}
	return nil
}

// parse reads the records of a file, up to the first frame it cannot
// read (then it returns those before it and the error).
func parse(b []byte) ([][]byte, error) {
	var recs [][]byte
	r := frame.NewReader(bytes.NewReader(b), MaxRecord)
	for {
		hdr, rec, err := r.Next()
		if err == io.EOF {
			return recs, nil
		}
		if err != nil {
			return recs, err
		}
		if hdr.Type != frameRecord || hdr.Version != recordVer {
			return recs, fmt.Errorf("frame type %d version %d", hdr.Type, hdr.Version)
		}
		recs = append(recs, bytes.Clone(rec))
	}
}

// persist rewrites the file with every record in force (a few hundred
// bytes each).
func (x *Exchange) persist() {
	if x.cfg.Dir == "" {
		return
	}
	x.persistMu.Lock()
	defer x.persistMu.Unlock()
	var buf bytes.Buffer
	for _, rec := range x.cfg.Validator.Revocations() {
		if err := frame.Write(&buf, frameRecord, recordVer, rec); err != nil {
			x.log.Warn("cannot encode revocations", "err", err)
			return
		}
	}
	if err := atomicfile.Write(filepath.Join(x.cfg.Dir, File), buf.Bytes(), 0o600); err != nil {
		x.log.Warn("cannot store revocations", "err", err)
	}
}
