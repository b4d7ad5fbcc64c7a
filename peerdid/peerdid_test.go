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
