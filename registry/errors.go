package registry

import (
	"errors"
	"fmt"
	"net"
)

// Errors of the registry. Test them with errors.Is; a taken name is also a
// *TakenError (errors.As) that names the owner.
var (
	// ErrInvalidKey: an empty or over-long key, a bad segment, or a prefix
	// (trailing "/") given to a write. Nothing was changed.
	ErrInvalidKey = errors.New("registry: invalid key")
	// ErrInvalidCluster: a cluster name that is not one segment of
	// [a-z0-9_-].
	ErrInvalidCluster = errors.New("registry: invalid cluster name")
	// ErrNotConnected: an operation on a named cluster this node has not
	// connected to (Connect it first).
	ErrNotConnected = errors.New("registry: not connected to the cluster")
	// ErrTaken: the name is registered to another process.
	ErrTaken = errors.New("registry: name taken")
	// ErrNotFound: no process is registered under the key (Lookup,
	// Unregister of a name the process does not hold).
	ErrNotFound = errors.New("registry: not found")
	// ErrNotMember: Leave of a group the process has not joined.
	ErrNotMember = errors.New("registry: not a member")
	// ErrTooLarge: metadata over Config.MaxMetaSize, or a message over
	// Config.MaxMessageSize.
	ErrTooLarge = errors.New("registry: over the size limit")
	// ErrLimit: the node already holds Config.MaxLocalEntries entries of
	// its own processes, or Config.MaxProcesses processes.
	ErrLimit = errors.New("registry: limit reached")
	// ErrUnauthorized: in a secure realm, the node's grant does not allow
	// registering, joining or dispatching on the key.
	ErrUnauthorized = errors.New("registry: unauthorized")
	// ErrProcessEnded: the process has ended; its entries are gone.
	ErrProcessEnded = errors.New("registry: process ended")
	// ErrNoProcess: no live process has that address on its node.
	ErrNoProcess = errors.New("registry: no such process")
	// ErrNodeGone: the process's node is not a live member of the realm,
	// or this node has no link to it.
	ErrNodeGone = errors.New("registry: node gone")
	// ErrMailboxFull: the local process's mailbox is full; the message was
	// dropped.
	ErrMailboxFull = errors.New("registry: mailbox full")
	// ErrBadAddr: an address that does not parse.
	ErrBadAddr = errors.New("registry: malformed address")
	// ErrClosed: the registry was closed. It matches net.ErrClosed.
	ErrClosed = fmt.Errorf("registry: closed: %w", net.ErrClosed)
)

// TakenError is the error of a Register whose key is held by another
// process. It matches ErrTaken.
type TakenError struct {
	Key     string
	Cluster string
	// Owner is the process that holds the name in this node's view.
	Owner Addr
}

func (e *TakenError) Error() string {
	in := ""
	if e.Cluster != "" {
		in = " in cluster " + e.Cluster
	}
	return fmt.Sprintf("registry: name %s%s taken by %s", quote(e.Key), in, e.Owner)
}

// Is makes errors.Is(err, ErrTaken) true.
func (e *TakenError) Is(target error) bool { return target == ErrTaken }
