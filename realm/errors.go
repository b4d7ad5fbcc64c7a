package realm

import (
	"errors"
	"fmt"
)

var (
	// ErrInvalid is wrapped by every name validation error, so callers can
	// test the family with errors.Is(err, realm.ErrInvalid).
	ErrInvalid = errors.New("invalid name")

	// ErrOutsideRealm is returned for a well-formed procedure, topic or
	// pattern that does not lie strictly under the realm it was checked
	// against. It wraps ErrInvalid.
	ErrOutsideRealm = fmt.Errorf("%w: outside the realm", ErrInvalid)

	// ErrInvalidDID is wrapped by every DID parsing error. A did:macula alias
	// whose realm or name is malformed also wraps ErrInvalid.
	ErrInvalidDID = errors.New("invalid DID")
)
