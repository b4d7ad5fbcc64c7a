package main

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/macula-io/macula/api"
)

// TestActorCallExitCodes: each error answer of an actor call gives the exit
// code of its kind (the codes of call).
func TestActorCallExitCodes(t *testing.T) {
	for code, want := range map[string]int{
		api.CodeNotServed:    exitNotFound,
		api.CodeUnknownKind:  exitNotFound,
		api.CodeTimeout:      exitTimeout,
		api.CodeRemoteError:  exitRemote,
		api.CodeActorCrashed: exitRemote,
		api.CodeActorInit:    exitRemote,
		api.CodeDisconnected: exitDisconnected,
		api.CodeUnavailable:  exitDisconnected,
		api.CodeUnauthorized: exitUnauthorized,
		api.CodeMailboxFull:  exitError,
		api.CodeRestartLimit: exitError,
		api.CodeNotEnabled:   exitError,
	} {
		err := actorCallError("127.0.0.1:7401", "game/counter/x", time.Second, &api.APIError{Status: http.StatusTeapot, Code: code, Message: "m"})
		var ce *codedError
		got := exitError
		if errors.As(err, &ce) {
			got = ce.code
		}
		if got != want {
			t.Errorf("%s: exit %d, want %d (%v)", code, got, want, err)
		}
	}
}
