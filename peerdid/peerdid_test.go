package peerdid

import (
	"crypto/ed25519"
	"crypto/rand"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/macula-io/macula/realm"
)

func TestOf(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	pk, _ := crypto.UnmarshalEd25519PublicKey(pub)
	id, _ := peer.IDFromPublicKey(pk)
	if got, want := Of(id), realm.DIDKey(pub); got != want {
		t.Fatalf("Of = %q, want %q", got, want)
	}
	_, spk, _ := crypto.GenerateSecp256k1Key(rand.Reader)
	sid, _ := peer.IDFromPublicKey(spk)
	if got := Of(sid); got != "" {
		t.Fatalf("Of(secp256k1 peer) = %q, want empty", got)
	}
	if got := Of(peer.ID("garbage")); got != "" {
		t.Fatalf("Of(garbage) = %q, want empty", got)
	}
}

// ID is the peer ID that libp2p derives from the node's private key, and
// Of takes it back to the key's DID; a key of the wrong size is an error.
func TestID(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	sk, _ := crypto.UnmarshalEd25519PrivateKey(priv)
	want, _ := peer.IDFromPrivateKey(sk)
	id, err := ID(pub)
	if err != nil || id != want {
		t.Fatalf("ID = %s, %v; want %s", id, err, want)
	}
	if got := Of(id); got != realm.DIDKey(pub) {
		t.Errorf("Of(ID(pub)) = %q, want %q", got, realm.DIDKey(pub))
	}
	if _, err := ID(pub[:16]); err == nil {
		t.Error("ID of a 16-byte key: no error")
	}
}
