package alias

import "errors"

// Errors of alias records.
var (
	// ErrNotFound: an alias has no record in the realm's DHT.
	ErrNotFound = errors.New("not found")
	// ErrTaken: an alias record is signed by another key than the one the
	// alias is already bound to.
	ErrTaken = errors.New("alias bound to another key")
	// ErrBadRecord: an alias record is malformed, expired, badly signed,
	// or of another realm.
	ErrBadRecord = errors.New("bad alias record")
)
