package ucan

import (
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multihash"
	"github.com/ucan-wg/go-ucan/pkg/command"
	"github.com/ucan-wg/go-ucan/token/invocation"
)

// revokeArg is the argument of a revocation record naming the delegation.
const revokeArg = "payload"

// Revoke signs a revocation record by which the realm authority revokes a
// delegation (any delegation of the realm, whoever issued it). The record
// is a UCAN invocation, issued by the authority about itself:
//
//	cmd  "/macula/revoke"
//	args {"payload": <CID of the delegation's signature payload>}
//	exp  the delegation's own expiry (absent if it has none)
//
// The delegation is named by its content ID, not by the CID of its envelope,
// so a re-encoded copy of it is revoked too. Past the delegation's expiry the
// record is moot, and validators drop it. Hand the record to every node's
// Validator.AddRevocation (the realm distributes it).
func Revoke(authority ed25519.PrivateKey, delegationToken []byte) (_ []byte, err error) {
	defer recoverIssue(&err)
	if len(authority) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%w: the authority key is %d bytes, want %d", ErrIssue, len(authority), ed25519.PrivateKeySize)
	}
	t, err := decodeToken(delegationToken, maxContainerBytes)
	if err != nil {
		return nil, fmt.Errorf("%w: the token to revoke: %w", ErrIssue, err)
	}
	if t.invocation {
		return nil, fmt.Errorf("%w: only delegations can be revoked", ErrIssue)
	}
	signer, iss, err := signerOf(authority)
	if err != nil {
		return nil, err
	}
	opts := []invocation.Option{invocation.WithArgument(revokeArg, t.id.CID())}
	if !t.exp.IsZero() {
		opts = append(opts, invocation.WithExpiration(t.exp))
	}
	inv, err := invocation.New(iss, command.Command(revokeCommand), iss, nil, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrIssue, err)
	}
	data, _, err := inv.ToSealed(signer)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrIssue, err)
	}
	return data, nil
}

// AddRevocation verifies a revocation record made by Revoke (signed by this
// realm's authority) and enforces it at once: from its return on, Validate,
// ValidateInvocation, Check and CheckMember refuse every chain containing
// the revoked delegation, including verdicts handed out before. Adding a
// record twice, or one whose delegation has expired anyway, is harmless.
func (v *Validator) AddRevocation(record []byte) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: revocation: %v", ErrInternal, r)
		}
	}()
	t, err := decodeToken(record, v.cfg.MaxTokenSize)
	if err != nil {
		return err
	}
	if !t.invocation || t.cmd != revokeCommand {
		return refuse(ErrMalformed, "not a revocation record (%s)", t.cmd)
	}
	if t.iss != v.authority || t.sub != v.authority {
		return refuse(ErrNotRooted, "revocation issued by %s, only the authority %s may revoke", t.iss, v.authority)
	}
	n, err := t.inv.Arguments().GetNode(revokeArg)
	if err != nil {
		return refuse(ErrMalformed, "revocation without %q", revokeArg)
	}
	l, err := n.AsLink()
	if err != nil {
		return refuse(ErrMalformed, "revocation's %q is not a link", revokeArg)
	}
	c, err := cid.Parse(l.String())
	if err != nil {
		return refuse(ErrMalformed, "revocation's %q: %v", revokeArg, err)
	}
	dm, err := multihash.Decode(c.Hash())
	if err != nil || dm.Code != multihash.SHA2_256 || len(dm.Digest) != 32 || c.Type() != cid.DagCBOR {
		return refuse(ErrMalformed, "revocation's %q is not a dag-cbor sha2-256 CID", revokeArg)
	}
	var id contentID
	copy(id[:], dm.Digest)
	now := v.now()
	until := time.Time{}
	if !t.exp.IsZero() {
		until = t.exp.Add(v.cfg.Leeway)
		if now.After(until) {
			return nil // the delegation has expired: nothing left to revoke
		}
	}
	v.revMu.Lock()
	if _, ok := v.revoked[id]; !ok && len(v.revoked) >= v.cfg.MaxRevocations {
		v.pruneRevocationsLocked(now)
		if len(v.revoked) >= v.cfg.MaxRevocations {
			v.revMu.Unlock()
			return refuse(ErrBusy, "%d revocations in force", len(v.revoked))
		}
	}
	v.revoked[id] = revocation{record: t.raw, until: until}
	v.revMu.Unlock()
	v.revGen.Add(1)
	v.log.Info("ucan: delegation revoked", "delegation", id.String())
	return nil
}

// Revocations returns the records in force, for a node to keep and to hand
// to peers that join later.
func (v *Validator) Revocations() [][]byte {
	now := v.now()
	v.revMu.RLock()
	defer v.revMu.RUnlock()
	var out [][]byte
	for _, r := range v.revoked {
		if r.until.IsZero() || !now.After(r.until) {
			out = append(out, r.record)
		}
	}
	return out
}

func (v *Validator) pruneRevocationsLocked(now time.Time) {
	for id, r := range v.revoked {
		if !r.until.IsZero() && now.After(r.until) {
			delete(v.revoked, id)
		}
	}
}

func (v *Validator) isRevoked(id contentID) bool {
	v.revMu.RLock()
	defer v.revMu.RUnlock()
	_, ok := v.revoked[id]
	return ok
}

// syncRevocations flags the verdict's chains that contain a revoked
// delegation, when revocations were added since it last looked: one atomic
// load per call in the common case.
func (v *Validator) syncRevocations(vd *Verdict) {
	g := v.revGen.Load()
	if vd.gen.Load() == g {
		return
	}
	v.revMu.RLock()
	for _, e := range vd.entries {
		for _, id := range e.ids {
			if _, ok := v.revoked[id]; ok {
				e.revoked.Store(true)
			}
		}
	}
	v.revMu.RUnlock()
	vd.gen.Store(g)
}
