package access

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/macula-io/macula/peerdid"
	"github.com/macula-io/macula/ucan"
)

func newPeer(t *testing.T) peer.ID {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := crypto.UnmarshalEd25519PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestOpen(t *testing.T) {
	self, other := newPeer(t), newPeer(t)
	pol := Open(self)
	if !IsOpen(pol) || !IsOpen(nil) {
		t.Fatal("Open() and nil must be open")
	}
	if got := pol.Self().Caller(); got != peerdid.Of(self) {
		t.Fatalf("Self().Caller() = %q", got)
	}
	vd := pol.Peer(other)
	if vd.Caller() != peerdid.Of(other) {
		t.Fatalf("Peer().Caller() = %q", vd.Caller())
	}
	if err := ucan.Check(vd, ucan.Call, "io.acme.orders.place"); err != nil {
		t.Fatalf("open verdict refused: %v", err)
	}
}

type closed struct{}

func (closed) Peer(peer.ID) *ucan.Verdict { return nil }
func (closed) Self() *ucan.Verdict        { return nil }

func TestNotOpen(t *testing.T) {
	if IsOpen(closed{}) {
		t.Fatal("a policy without an open verdict is not open")
	}
	if err := ucan.Check(closed{}.Peer(""), ucan.Call, "io.acme.x"); !errors.Is(err, ucan.ErrUnauthorized) {
		t.Fatalf("nil verdict: %v", err)
	}
}

func TestTable(t *testing.T) {
	self, other := newPeer(t), newPeer(t)
	tab := NewTable(nil)
	if IsOpen(tab) {
		t.Fatal("a table without a self verdict is not open")
	}
	if tab.Peer(other) != nil {
		t.Fatal("unknown peer has a verdict")
	}
	vd := ucan.OpenVerdict(peerdid.Of(other))
	tab.Set(other, vd)
	tab.SetSelf(ucan.OpenVerdict(peerdid.Of(self)))
	if tab.Peer(other) != vd || !IsOpen(tab) || len(tab.Peers()) != 1 {
		t.Fatal("Set/SetSelf not seen")
	}
	tab.Delete(other)
	if tab.Peer(other) != nil || len(tab.Peers()) != 0 {
		t.Fatal("Delete not seen")
	}
}
