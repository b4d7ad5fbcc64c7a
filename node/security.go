package node

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/macula-io/macula/access"
	"github.com/macula-io/macula/alias"
	"github.com/macula-io/macula/peerdid"
	"github.com/macula-io/macula/realm"
	"github.com/macula-io/macula/revocation"
	"github.com/macula-io/macula/ucan"
)

// RevocationsFile keeps, in the data directory, the revocation records the
// node has seen, so that a restart does not forget them (revocation.File).
const RevocationsFile = revocation.File

// ReplayFile keeps, in the data directory, the bearer invocations the node
// has accepted and that have not expired, so that a restart does not let
// them be used again (ucan.Config.ReplayFile).
const ReplayFile = "replay"

// nonMemberRefuseFor is how long a peer without a valid membership grant is
// refused: short, since it may be given one.
const nonMemberRefuseFor = 30 * time.Second

// refusalGrace is how long a connection refused for want of membership stays
// open, so that the peer reads the refusal and can say why.
const refusalGrace = 300 * time.Millisecond

// security is the node's side of a secure realm: its validator (with the
// revocations in force), its own chains and verdict, and the verdicts of its
// peers. In an open realm v is nil and pol is access.Open.
type security struct {
	v     *ucan.Validator // nil: open realm
	table *access.Table   // secure realm only
	pol   access.Policy

	// mu guards the fields below.
	mu     sync.Mutex
	chains []ucan.Chain
	wire   []byte // MarshalChains(chains)
	member string // text of the chain granting our name, for alias records
	// refusedWarned: a peer's refusal of this node was logged since the
	// chains last changed (it is logged once, not per redial).
	refusedWarned bool
}

// Secure reports whether the node's realm has an authority.
func (n *Node) Secure() bool { return n.sec.v != nil }

// Authority returns the did:key of the realm authority, "" in an open realm.
func (n *Node) Authority() string { return n.cfg.Authority }

// Access returns the policy the node's services enforce: the verdicts of
// its peers and its own.
func (n *Node) Access() access.Policy { return n.sec.pol }

// Validator returns the realm's UCAN validator, nil in an open realm. Its
// Self is the node's DID: it validates invocations addressed to this node
// (the HTTP API's bearer tokens).
func (n *Node) Validator() *ucan.Validator { return n.sec.v }

// Grant returns what the node itself was granted.
func (n *Node) Grant() ucan.Grant { return n.sec.pol.Self().Grant() }

// initSecurity sets up the validator and checks the node's own chains.
func (n *Node) initSecurity(self peer.ID) error {
	if n.cfg.Authority == "" {
		n.sec.pol = access.Open(self)
		n.log.Warn("OPEN REALM: no authority is configured, so every node that knows the realm's name may join it and call, publish, subscribe and advertise anything; for development only (set an authority to secure it)")
		return nil
	}
	uc := n.cfg.UCAN
	uc.Realm, uc.Authority, uc.Self = n.cfg.Realm, n.cfg.Authority, n.did
	if uc.Logger == nil {
		uc.Logger = n.log
	}
	if uc.ReplayFile == "" && n.cfg.DataDir != "" {
		uc.ReplayFile = filepath.Join(n.cfg.DataDir, ReplayFile)
	}
	v, err := ucan.New(uc)
	if err != nil {
		return fmt.Errorf("%w: authority: %w", ErrConfig, err)
	}
	n.sec.v = v
	n.sec.table = access.NewTable(nil)
	n.sec.pol = n.sec.table
	if err := revocation.Load(v, n.cfg.DataDir, n.log); err != nil {
		return fmt.Errorf("%w: %v", ErrDataDir, err)
	}
	return n.setOwnChains(n.cfg.Chains, n.cfg.ChainSources)
}

// setOwnChains validates the node's own chains and makes them the ones it
// presents. A chain that does not hold (revoked, expired, not rooted at the
// authority, for another key) is left out with a warning that names it by
// its source (sources[i] names chains[i], such as a file and line, when
// given): one bad capability never stops the node. It fails when no chain
// left grants the node membership, naming the chains left out.
func (n *Node) setOwnChains(chains []ucan.Chain, sources []string) error {
	v := n.sec.v
	who := "this node (" + n.did + ")"
	if n.id.unsaved {
		who = "this node (a new key, not kept since the start fails)"
	}
	if len(chains) == 0 {
		return fmt.Errorf("%w: the realm %s is secure (authority %s) and %s was given no chains: %w",
			ErrConfig, n.cfg.Realm, n.cfg.Authority, who, ErrNotMember)
	}
	name := func(i int) string {
		if i < len(sources) && sources[i] != "" {
			return sources[i]
		}
		return fmt.Sprintf("chain %d", i+1)
	}
	var kept []ucan.Chain
	var skipped []string
	member := ""
	for i, c := range chains {
		cvd, err := v.Validate(context.Background(), n.did, []ucan.Chain{c})
		if err != nil {
			n.log.Warn("skipping a delegation chain that does not hold", "chain", name(i), "err", ucan.Reason(err))
			skipped = append(skipped, name(i)+": "+ucan.Reason(err))
			continue
		}
		kept = append(kept, c)
		if member == "" && ucan.CheckMember(cvd, n.cfg.Name) == nil {
			member = c.String()
		}
	}
	leftOut := ""
	if len(skipped) > 0 {
		leftOut = " (left out: " + strings.Join(skipped, "; ") + ")"
	}
	if len(kept) == 0 {
		return fmt.Errorf("%w: the realm %s is secure (authority %s) and no chain of %s holds%s: %w",
			ErrConfig, n.cfg.Realm, n.cfg.Authority, who, leftOut, ErrNotMember)
	}
	wire, err := ucan.MarshalChains(kept)
	if err != nil {
		return fmt.Errorf("%w: chains: %w", ErrConfig, err)
	}
	if len(wire) > maxChainsWire {
		return fmt.Errorf("%w: chains: %d bytes, at most %d", ErrConfig, len(wire), maxChainsWire)
	}
	vd, err := v.Validate(context.Background(), n.did, kept)
	if err != nil {
		return fmt.Errorf("%w: chains: %w", ErrConfig, err)
	}
	if err := ucan.CheckMember(vd, ""); err != nil {
		return fmt.Errorf("%w: the realm %s is secure (authority %s) and %s holds no membership grant%s: %w",
			ErrConfig, n.cfg.Realm, n.cfg.Authority, who, leftOut, err)
	}
	if member == "" {
		n.log.Warn("the authority did not grant this node its name: its alias will not count in the realm", "alias", n.alias, "did", n.did)
	}
	n.sec.mu.Lock()
	n.sec.chains, n.sec.wire, n.sec.member = kept, wire, member
	n.sec.refusedWarned = false
	n.sec.mu.Unlock()
	n.sec.table.SetSelf(vd)
	return nil
}

// SetChains replaces the chains the node presents (as setOwnChains keeps
// them: those that do not hold are left out with a warning naming
// sources[i] for chains[i]) and presents them again on every connection, so
// that peers see a new grant at once. A node that peers refused for its
// membership (expired or revoked, now renewed) redials its bootstrap peers
// at once. In an open realm it fails with ErrConfig.
func (n *Node) SetChains(ctx context.Context, chains []ucan.Chain, sources ...string) error {
	if n.sec.v == nil {
		return fmt.Errorf("%w: the realm is open: there are no chains to present", ErrConfig)
	}
	if err := n.setOwnChains(chains, sources); err != nil {
		return err
	}
	// Refusals that may have been this node's own fault end: peers that
	// refused it, and peers it refused after failed handshakes.
	n.mu.Lock()
	clear(n.refusedBy)
	n.rejoinLocked()
	n.mu.Unlock()
	n.gater.forgive()
	var errs []error
	for _, c := range n.host.Network().Conns() {
		if !n.IsPeer(c.RemotePeer()) {
			continue
		}
		if _, err := n.handshake(ctx, c); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.RemotePeer(), err))
		}
	}
	return errors.Join(errs...)
}

// rejoinLocked wakes the bootstrap loops waiting to redial.
func (n *Node) rejoinLocked() {
	close(n.rejoin)
	n.rejoin = make(chan struct{})
}

// refusedByPeer records that p refused this node (its membership), for
// Connect to say, and tells the operator what to do, once per change of
// chains.
func (n *Node) refusedByPeer(p peer.ID, err error) {
	n.mu.Lock()
	if len(n.refusedBy) >= maxRefused {
		clear(n.refusedBy)
	}
	n.refusedBy[p] = err
	n.peerChangedLocked()
	n.mu.Unlock()
	n.sec.mu.Lock()
	warn := !n.sec.refusedWarned
	n.sec.refusedWarned = true
	n.sec.mu.Unlock()
	if warn {
		n.log.Error("a peer refused this node: its membership grant is missing, expired or revoked; "+
			renewHint, "peer", p, "err", ucan.Reason(err))
	} else {
		n.log.Debug("a peer refused this node", "peer", p, "err", err)
	}
}

// renewHint says, in the CLI's terms, how an operator renews a node's
// membership.
const renewHint = "have the realm authority issue a new one ('macula-node ucan issue --as AUTHORITY.key --realm REALM --to DID --can member --name NAME --out member.ucan'), put it in the node's --ucan file and send the node SIGHUP (or restart it); it then rejoins its bootstrap peers by itself"

func (n *Node) ownChainsWire() []byte {
	n.sec.mu.Lock()
	defer n.sec.mu.Unlock()
	return n.sec.wire
}

func (n *Node) memberChain() string {
	n.sec.mu.Lock()
	defer n.sec.mu.Unlock()
	return n.sec.member
}

// maxChainsWire bounds the chains a hello carries.
const maxChainsWire = 96 << 10

// admit validates what peer p presented in its hello and records its
// verdict. In an open realm it admits everyone. A peer without a
// membership grant is refused with an error wrapping ucan.ErrNotMember.
func (n *Node) admit(ctx context.Context, p peer.ID, h hello) error {
	if n.sec.v == nil {
		return nil
	}
	if len(h.Chains) == 0 {
		return fmt.Errorf("%w: it presented no chains (is it configured with the realm's authority and a membership grant?)", ErrNotMember)
	}
	chains, err := ucan.UnmarshalChains(h.Chains)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNotMember, err)
	}
	vd, err := n.sec.v.Validate(ctx, peerdid.Of(p), chains)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNotMember, err)
	}
	if err := ucan.CheckMember(vd, ""); err != nil {
		return err // wraps ErrNotMember
	}
	n.sec.table.Set(p, vd)
	n.peerChanged() // streams waiting for its membership go on
	return nil
}

// namedMember reports whether the authority granted p the name it gave:
// only then does its alias count.
func (n *Node) namedMember(p peer.ID, name string) bool {
	if n.sec.v == nil {
		return true
	}
	return ucan.CheckMember(n.sec.table.Peer(p), name) == nil
}

// forgetVerdict drops p's verdict when its last connection is gone.
func (n *Node) forgetVerdict(p peer.ID) {
	if n.sec.table != nil {
		n.sec.table.Delete(p)
	}
}

// waitMember waits until p has a verdict (its handshake validated), up to
// the handshake timeout. In an open realm it returns at once.
func (n *Node) waitMember(ctx context.Context, p peer.ID) error {
	if n.sec.v == nil || (n.host != nil && p == n.host.ID()) {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.HandshakeTimeout)
	defer cancel()
	err := n.awaitPeer(ctx, p, func() bool { return n.sec.table.Peer(p) != nil }, false)
	switch {
	case err == nil, errors.Is(err, ErrNotMember), errors.Is(err, ErrClosed):
		return err
	case ctx.Err() != nil:
		return fmt.Errorf("%w: %s did not present a membership grant: %w", ErrNotMember, p, err)
	}
	return fmt.Errorf("%w: %s: %w", ErrNotMember, p, err)
}

// membersOnly is the host the DHT sees in a secure realm: streams to and
// from a peer wait for its membership, and fail without one, so that a
// node of the realm's name but without a grant never reads or writes a
// record, nor enters a routing table through a query.
type membersOnly struct {
	host.Host
	n *Node
}

func (h membersOnly) NewStream(ctx context.Context, p peer.ID, pids ...protocol.ID) (network.Stream, error) {
	if err := h.n.waitMember(ctx, p); err != nil {
		return nil, err
	}
	return h.Host.NewStream(ctx, p, pids...)
}

func (h membersOnly) SetStreamHandler(pid protocol.ID, handler network.StreamHandler) {
	h.Host.SetStreamHandler(pid, h.n.membersOnlyHandler(handler))
}

func (h membersOnly) SetStreamHandlerMatch(pid protocol.ID, m func(protocol.ID) bool, handler network.StreamHandler) {
	h.Host.SetStreamHandlerMatch(pid, m, h.n.membersOnlyHandler(handler))
}

func (n *Node) membersOnlyHandler(handler network.StreamHandler) network.StreamHandler {
	return func(s network.Stream) {
		if err := n.waitMember(n.ctx, s.Conn().RemotePeer()); err != nil {
			_ = s.Reset()
			return
		}
		handler(s)
	}
}

// ---- revocations (package revocation carries them) ----

// ErrNotSecure: the operation needs a realm with an authority.
var ErrNotSecure = errors.New("the realm is open (no authority)")

// Revoke adds a revocation record made by the realm authority (ucan.Revoke)
// and passes it on to every peer, which pass it on in turn; a node that joins
// later gets it in the exchange that follows its handshake. Peers whose
// membership it revokes are disconnected. It returns once the record is in
// force here; peers apply it as it reaches them (one round trip per hop).
func (n *Node) Revoke(ctx context.Context, record []byte) error {
	if n.sec.v == nil {
		return fmt.Errorf("%w: nothing to revoke", ErrNotSecure)
	}
	_, err := n.rev.Load().Add(record, "")
	return err
}

// Revocations returns the revocation records in force.
func (n *Node) Revocations() [][]byte {
	if n.sec.v == nil {
		return nil
	}
	return n.sec.v.Revocations()
}

// dropRevokedMembers disconnects peers whose membership is no longer valid.
func (n *Node) dropRevokedMembers() {
	for p, vd := range n.sec.table.Peers() {
		if err := ucan.CheckMember(vd, ""); err != nil {
			n.log.Warn("peer refused: membership revoked or expired", "peer", p, "err", err)
			n.gater.refuse(p, nonMemberRefuseFor, refusedNonMember)
			n.sec.table.Delete(p)
			closeConns(n.host.Network(), p, codeRefused)
		}
	}
}

func (n *Node) verifiedPeers() []peer.ID {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []peer.ID
	for p, ps := range n.peers {
		if ps.up() {
			out = append(out, p)
		}
	}
	return out
}

// checkAliasMember is the alias validator's check in a secure realm: the
// record must carry the authority's grant of its name to its key.
func (n *Node) checkAliasMember(r *alias.Record) error {
	if r.Member == "" {
		return fmt.Errorf("%w: %s carries no membership grant, and the realm is secure", ErrBadRecord, r.Alias)
	}
	c, err := ucan.ParseChain([]byte(r.Member))
	if err != nil {
		return fmt.Errorf("%w: membership: %w", ErrBadRecord, err)
	}
	vd, err := n.sec.v.Validate(n.ctx, r.DID, []ucan.Chain{c})
	if err != nil {
		return fmt.Errorf("%w: membership: %w", ErrBadRecord, err)
	}
	_, name, _ := realm.ParseAlias(r.Alias)
	if err := ucan.CheckMember(vd, name); err != nil {
		return fmt.Errorf("%w: the authority did not grant %s to %s: %w", ErrBadRecord, r.Alias, r.DID, err)
	}
	return nil
}

// expiryInterval is how often the node looks for peers whose membership
// expired while they were connected (revocations act at once).
const expiryInterval = 10 * time.Second

// resyncTicks: every resyncTicks*expiryInterval (5 minutes) the node sends
// the revocations it holds to every peer again, so that one lost on the way
// (a peer unreachable for a moment) is in force everywhere within that time.
const resyncTicks = 30

// expiryLoop disconnects peers whose membership grant has expired, and
// warns when the node's own is about to.
func (n *Node) expiryLoop() {
	defer n.wg.Done()
	t := time.NewTicker(expiryInterval)
	defer t.Stop()
	warned, ticks := false, 0
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		n.dropRevokedMembers()
		ticks++
		if ticks%resyncTicks == 0 {
			n.rev.Load().Resync()
		}
		g := n.sec.pol.Self().Grant()
		switch {
		case !g.Member && !warned:
			n.log.Error("this node's own membership grant has expired or was revoked: peers will refuse it; "+renewHint, "did", n.did)
			warned = true
		case g.Member:
			warned = false
		}
	}
}

// relayACL is the relay service's filter in a secure realm: only members
// reserve a slot or connect through it, so that a relay does not carry
// traffic for nodes the realm refused. It waits (bounded by the handshake
// timeout) for a peer whose handshake is still running.
type relayACL struct{ n *Node }

func (a relayACL) AllowReserve(p peer.ID, _ ma.Multiaddr) bool {
	return a.n.waitMember(a.n.ctx, p) == nil
}

func (a relayACL) AllowConnect(src peer.ID, _ ma.Multiaddr, dest peer.ID) bool {
	return a.n.waitMember(a.n.ctx, src) == nil && a.n.sec.table.Peer(dest) != nil
}
