package member

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/macula-io/macula/realm"
)

// Protocol returns the membership protocol ID of a realm.
func Protocol(realmName string) protocol.ID {
	return protocol.ID("/macula/" + realmName + "/members/1.0.0")
}

// protocolQuiet is version 1.1.0 of the protocol: the same frames, and a
// promise of the stream's writer (see quietOn): when its reader has the
// higher peer ID and the stream runs over a direct QUIC connection, the
// reader sends no heartbeats of its own on the link, and the writer takes
// QUIC's acknowledgements of its own heartbeats as the reader's sign of
// life. A node speaks both; a node of version 1.0.0 alone gets heartbeats
// both ways, as before.
func protocolQuiet(realmName string) protocol.ID {
	return protocol.ID("/macula/" + realmName + "/members/1.1.0")
}

// Frame types of the membership protocol. WARNING: append only; the numbers
// are part of the protocol.
const (
	typeSummary uint8 = 1 // first frame of a stream: the view's hash
	typeDigest  uint8 = 2 // (id, incarnation, state) of many members
	typeRecord  uint8 = 3 // a member's signed record
	typeAlert   uint8 = 4 // a signed suspicion, failure or departure
	typePing    uint8 = 5 // nothing to say: a heartbeat
)

// wireVersion is the body encoding of every frame type above.
const wireVersion = 1

// Sizes on the wire.
const (
	// maxRecord bounds an encoded record: 32 capabilities and 32 clusters
	// of 63 bytes, 8 addresses and the signature fit.
	maxRecord = 8 << 10
	// maxAlert bounds an encoded alert: two peer IDs, an incarnation, a
	// signature.
	maxAlert = 512
	// maxFrame is the frame limit of a reader: the largest of the bodies.
	maxFrame = 64 << 10
	// digestChunk bounds the entries bytes of one digest frame.
	digestChunk = 60 << 10
	// maxIDLen bounds an encoded peer ID (an Ed25519 identity is 38 bytes).
	maxIDLen = 64
	// maxAddrLen bounds one encoded multiaddr.
	maxAddrLen = 256
	// hashLen is the size of a view hash.
	hashLen = 16
)

// Domain separation of the signed bytes, so that a signature over a record
// can never pass for one over an alert, or over anything else the key signs.
const (
	recordDomain = "macula/member/record/1\x00"
	alertDomain  = "macula/member/alert/1\x00"
)

var (
	errMalformed = errors.New("member: malformed frame")
	errSignature = errors.New("member: bad signature")
)

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errMalformed, fmt.Sprintf(format, args...))
}

// state is what a digest says of a member, and the order of precedence at
// one incarnation: alive < suspect < failed < left.
type state uint8

const (
	stateAlive   state = 0
	stateSuspect state = 1
	stateFailed  state = 2
	stateLeft    state = 3
)

func (s state) String() string {
	switch s {
	case stateAlive:
		return "alive"
	case stateSuspect:
		return "suspect"
	case stateFailed:
		return "failed"
	case stateLeft:
		return "left"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// record is a member's own description of itself, signed with its key.
type record struct {
	ID          peer.ID
	Incarnation uint64
	// Boot is when the node started (unix ms): a new Boot is a restart.
	Boot         uint64
	Name         string
	Capabilities []string // sorted, unique
	Clusters     []string // sorted, unique
	Addrs        []ma.Multiaddr
	Sig          []byte
}

// appendBody appends the signed part of a record.
func (r *record) appendBody(dst []byte) []byte {
	dst = appendBytes(dst, []byte(r.ID))
	dst = binary.AppendUvarint(dst, r.Incarnation)
	dst = binary.AppendUvarint(dst, r.Boot)
	dst = appendShort(dst, r.Name)
	dst = appendNames(dst, r.Capabilities)
	dst = appendNames(dst, r.Clusters)
	dst = append(dst, uint8(len(r.Addrs)))
	for _, a := range r.Addrs {
		dst = appendBytes(dst, a.Bytes())
	}
	return dst
}

// encode returns the record's wire form: body, then signature.
func (r *record) encode() []byte {
	b := r.appendBody(nil)
	b = append(b, uint8(len(r.Sig)))
	return append(b, r.Sig...)
}

// sign sets r.Sig with key, over the realm and the body.
func (r *record) sign(realmName string, key crypto.PrivKey) error {
	sig, err := key.Sign(signedBytes(recordDomain, realmName, r.appendBody(nil)))
	if err != nil {
		return err
	}
	r.Sig = sig
	return nil
}

// verify checks the signature against the key in r.ID.
func (r *record) verify(realmName string) error {
	return verifySig(r.ID, signedBytes(recordDomain, realmName, r.appendBody(nil)), r.Sig)
}

func signedBytes(domain, realmName string, body []byte) []byte {
	b := make([]byte, 0, len(domain)+len(realmName)+1+len(body))
	b = append(b, domain...)
	b = append(b, realmName...)
	b = append(b, 0)
	return append(b, body...)
}

func verifySig(id peer.ID, data, sig []byte) error {
	pub, err := id.ExtractPublicKey()
	if err != nil {
		return fmt.Errorf("%w: %s: no key in the peer ID: %v", errSignature, id, err)
	}
	ok, err := pub.Verify(data, sig)
	if err != nil || !ok {
		return fmt.Errorf("%w: by %s", errSignature, id)
	}
	return nil
}

// decodeRecord parses a record. It checks the syntax (names, lists sorted
// and unique, limits, addresses, no trailing bytes), not the signature.
func decodeRecord(b []byte) (*record, error) {
	if len(b) > maxRecord {
		return nil, malformed("record of %d bytes, at most %d", len(b), maxRecord)
	}
	d := decoder{b: b}
	r := &record{}
	idb := d.bytes(maxIDLen)
	r.Incarnation = d.uvarint()
	r.Boot = d.uvarint()
	r.Name = string(d.short())
	r.Capabilities = d.names(MaxCapabilities)
	r.Clusters = d.names(MaxClusters)
	n := d.u8()
	if d.err == nil && n > maxAddrs {
		d.fail("%d addresses, at most %d", n, maxAddrs)
	}
	for i := 0; i < int(n) && d.err == nil; i++ {
		ab := d.bytes(maxAddrLen)
		if d.err != nil {
			break
		}
		a, err := ma.NewMultiaddrBytes(ab)
		if err != nil || !slices.Equal(a.Bytes(), ab) {
			d.fail("address %d: %v", i, err)
			break
		}
		r.Addrs = append(r.Addrs, a)
	}
	r.Sig = d.short()
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) > 0 {
		return nil, malformed("record: %d bytes after the signature", len(d.b))
	}
	id, err := peer.IDFromBytes(idb)
	if err != nil {
		return nil, malformed("record: peer ID: %v", err)
	}
	r.ID = id
	if err := realm.ValidateNodeName(r.Name); err != nil {
		return nil, malformed("record: name: %v", err)
	}
	if r.Incarnation == 0 {
		return nil, malformed("record: incarnation 0")
	}
	return r, nil
}

// alertKind says what an alert reports.
type alertKind uint8

const (
	alertSuspect alertKind = 1 // the author's link to the subject went silent
	alertFailed  alertKind = 2 // the author declared the subject failed
	alertLeft    alertKind = 3 // the subject left (author = subject)
	// alertUnreachable: the author could never open a link to the subject
	// (it may be behind a NAT the author cannot cross). A suspicion that
	// never counts towards the confirmations: only the subject's silence
	// (its refutation missing) ends it.
	alertUnreachable alertKind = 4
)

// suspicion reports whether k is a suspicion (strong or weak).
func (k alertKind) suspicion() bool { return k == alertSuspect || k == alertUnreachable }

func (k alertKind) state() state {
	switch k {
	case alertSuspect, alertUnreachable:
		return stateSuspect
	case alertFailed:
		return stateFailed
	}
	return stateLeft
}

// alert is a signed statement about a member at one incarnation.
type alert struct {
	Kind        alertKind
	Subject     peer.ID
	Incarnation uint64
	Author      peer.ID
	Sig         []byte
}

func (a *alert) appendBody(dst []byte) []byte {
	dst = append(dst, uint8(a.Kind))
	dst = appendBytes(dst, []byte(a.Subject))
	dst = binary.AppendUvarint(dst, a.Incarnation)
	return appendBytes(dst, []byte(a.Author))
}

func (a *alert) encode() []byte {
	b := a.appendBody(nil)
	b = append(b, uint8(len(a.Sig)))
	return append(b, a.Sig...)
}

func (a *alert) sign(realmName string, key crypto.PrivKey) error {
	sig, err := key.Sign(signedBytes(alertDomain, realmName, a.appendBody(nil)))
	if err != nil {
		return err
	}
	a.Sig = sig
	return nil
}

func (a *alert) verify(realmName string) error {
	return verifySig(a.Author, signedBytes(alertDomain, realmName, a.appendBody(nil)), a.Sig)
}

func decodeAlert(b []byte) (*alert, error) {
	if len(b) > maxAlert {
		return nil, malformed("alert of %d bytes, at most %d", len(b), maxAlert)
	}
	d := decoder{b: b}
	a := &alert{Kind: alertKind(d.u8())}
	sb := d.bytes(maxIDLen)
	a.Incarnation = d.uvarint()
	ab := d.bytes(maxIDLen)
	a.Sig = d.short()
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) > 0 {
		return nil, malformed("alert: %d bytes after the signature", len(d.b))
	}
	if a.Kind < alertSuspect || a.Kind > alertUnreachable {
		return nil, malformed("alert: kind %d", a.Kind)
	}
	var err error
	if a.Subject, err = peer.IDFromBytes(sb); err != nil {
		return nil, malformed("alert: subject: %v", err)
	}
	if a.Author, err = peer.IDFromBytes(ab); err != nil {
		return nil, malformed("alert: author: %v", err)
	}
	if a.Kind == alertLeft && a.Author != a.Subject {
		return nil, malformed("alert: a departure stated by %s for %s", a.Author, a.Subject)
	}
	if a.Kind != alertLeft && a.Author == a.Subject {
		return nil, malformed("alert: %s suspects itself", a.Author)
	}
	if a.Incarnation == 0 {
		return nil, malformed("alert: incarnation 0")
	}
	return a, nil
}

// summary is the first frame of a stream: the sender's view hash and
// size. Equal hashes mean equal views, and nothing more is exchanged.
type summary struct {
	Hash    [hashLen]byte
	Members uint64
}

func (s summary) encode() []byte {
	b := append([]byte(nil), s.Hash[:]...)
	return binary.AppendUvarint(b, s.Members)
}

func decodeSummary(b []byte) (summary, error) {
	var s summary
	if len(b) < hashLen {
		return s, malformed("summary of %d bytes", len(b))
	}
	copy(s.Hash[:], b)
	d := decoder{b: b[hashLen:]}
	s.Members = d.uvarint()
	if d.err != nil {
		return s, d.err
	}
	if len(d.b) > 0 {
		return s, malformed("summary: %d trailing bytes", len(d.b))
	}
	return s, nil
}

// digestEntry is one member in a digest.
type digestEntry struct {
	ID          peer.ID
	Incarnation uint64
	State       state // alive, failed or left (suspicion is not exchanged)
}

// digest is one digest frame: entries, and whether it is the sender's last.
type digest struct {
	Last    bool
	Entries []digestEntry
}

func appendDigestEntry(dst []byte, e digestEntry) []byte {
	dst = appendBytes(dst, []byte(e.ID))
	dst = binary.AppendUvarint(dst, e.Incarnation)
	return append(dst, uint8(e.State))
}

func (g *digest) encode() []byte {
	b := []byte{0}
	if g.Last {
		b[0] = 1
	}
	b = binary.AppendUvarint(b, uint64(len(g.Entries)))
	for _, e := range g.Entries {
		b = appendDigestEntry(b, e)
	}
	return b
}

func decodeDigest(b []byte) (*digest, error) {
	d := decoder{b: b}
	g := &digest{}
	switch d.u8() {
	case 0:
	case 1:
		g.Last = true
	default:
		d.fail("digest: bad flags")
	}
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b))/3 {
		d.fail("digest: %d entries in %d bytes", n, len(d.b))
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		idb := d.bytes(maxIDLen)
		inc := d.uvarint()
		st := state(d.u8())
		if d.err != nil {
			break
		}
		id, err := peer.IDFromBytes(idb)
		if err != nil {
			d.fail("digest entry %d: %v", i, err)
			break
		}
		if st != stateAlive && st != stateFailed && st != stateLeft {
			d.fail("digest entry %d: state %d", i, st)
			break
		}
		g.Entries = append(g.Entries, digestEntry{ID: id, Incarnation: inc, State: st})
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) > 0 {
		return nil, malformed("digest: %d trailing bytes", len(d.b))
	}
	return g, nil
}

// ---- primitives ----

func appendBytes(dst, b []byte) []byte {
	return append(binary.AppendUvarint(dst, uint64(len(b))), b...)
}

// appendShort appends a string of at most 255 bytes with a one-byte length.
func appendShort(dst []byte, s string) []byte {
	return append(append(dst, uint8(len(s))), s...)
}

func appendNames(dst []byte, names []string) []byte {
	dst = append(dst, uint8(len(names)))
	for _, n := range names {
		dst = appendShort(dst, n)
	}
	return dst
}

// decoder reads the primitives above; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = malformed(format, args...)
	}
}

func (d *decoder) u8() uint8 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 1 {
		d.fail("truncated")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

// uvarint reads a minimal uvarint, so that every body has one encoding.
func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	if n != len(binary.AppendUvarint(nil, v)) {
		d.fail("non-minimal varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes(limit int) []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(limit) || n > uint64(len(d.b)) {
		d.fail("a field of %d bytes (limit %d, %d left)", n, limit, len(d.b))
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) short() []byte {
	n := int(d.u8())
	if d.err != nil {
		return nil
	}
	if n > len(d.b) {
		d.fail("truncated")
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

// names reads a sorted list of unique valid names.
func (d *decoder) names(limit int) []string {
	n := int(d.u8())
	if d.err != nil {
		return nil
	}
	if n > limit {
		d.fail("%d names, at most %d", n, limit)
		return nil
	}
	var out []string
	for i := 0; i < n && d.err == nil; i++ {
		s := string(d.short())
		if d.err != nil {
			break
		}
		if realm.ValidateNodeName(s) != nil {
			d.fail("name %q", s)
			break
		}
		if i > 0 && s <= out[i-1] {
			d.fail("names not sorted or not unique")
			break
		}
		out = append(out, s)
	}
	return out
}
