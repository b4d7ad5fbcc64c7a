//go:build churn

package main

import (
	"os"
	"strconv"
	"testing"
)

// TestChurn20EndToEnd is TestChurnEndToEnd with 20 nodes (or
// MACULA_CHURN_NODES). It needs about a minute of two otherwise idle cores,
// so it is built only with -tags churn: make churn runs it, alone, after the
// suite (CI runs make churn). A build tag rather than a skip: under CI a
// skipped test fails the run, and a skip would hide that it did not run.
func TestChurn20EndToEnd(t *testing.T) {
	n := 20
	if v := os.Getenv("MACULA_CHURN_NODES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 5 {
			t.Fatalf("MACULA_CHURN_NODES=%q: want a number, at least 5", v)
		}
	}
	runChurn(t, n)
}
