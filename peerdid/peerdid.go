// Package peerdid names a libp2p peer by its did:key. A Macula peer ID
// inlines the node's Ed25519 public key, so the DID follows from the peer ID
// alone, with no lookup; rpc, pubsub, node and the gateway all need it.
package peerdid

import (
	"crypto/ed25519"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/macula-io/macula/realm"
)

// Of returns the did:key of p, or "" when p does not inline an Ed25519 key.
func Of(p peer.ID) string {
	pk, err := p.ExtractPublicKey()
	if err != nil {
		return ""
	}
	raw, err := pk.Raw()
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return ""
	}
	return realm.DIDKey(raw)
}

// ID returns the peer ID of the node whose Ed25519 public key is pub.
func ID(pub ed25519.PublicKey) (peer.ID, error) {
	pk, err := crypto.UnmarshalEd25519PublicKey(pub)
	if err != nil {
		return "", err
	}
	return peer.IDFromPublicKey(pk)
}
