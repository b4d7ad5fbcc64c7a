package node

import (
	"errors"

	"github.com/macula-io/macula/alias"
	"github.com/macula-io/macula/internal/closed"
	"github.com/macula-io/macula/keyfile"
	"github.com/macula-io/macula/ucan"
)

// Errors returned by the node.
var (
	// ErrConfig: the Config is not valid; the error names the field.
	ErrConfig = errors.New("invalid node config")
	// ErrCorruptKey: the key file exists but cannot be read as an Ed25519 key.
	ErrCorruptKey = keyfile.ErrCorrupt
	// ErrDataDir: the data directory cannot be created or written.
	ErrDataDir = errors.New("data directory not writable")
	// ErrListen: a listen address could not be bound (busy port, bad address).
	ErrListen = errors.New("cannot listen")
	// ErrOtherRealm: something of another realm was asked for or offered.
	ErrOtherRealm = errors.New("other realm")
	// ErrNotFound: an alias has no record in the realm's DHT.
	ErrNotFound = alias.ErrNotFound
	// ErrAliasTaken: an alias record is signed by another key than the one
	// the alias is already bound to.
	ErrAliasTaken = alias.ErrTaken
	// ErrBadRecord: an alias record is malformed, expired or badly signed.
	ErrBadRecord = alias.ErrBadRecord
	// ErrNoPeers: the question needs the realm, and the node has no peer
	// in its routing table yet.
	ErrNoPeers = alias.ErrNoPeers
	// ErrNotMember: in a secure realm, a peer presented no valid
	// membership grant from the realm's authority (it wraps the ucan
	// error saying why).
	ErrNotMember = ucan.ErrNotMember
	// ErrClosed: the node was closed. It matches net.ErrClosed.
	ErrClosed = closed.Error("node")
)
