//go:build pprof

package main

// Built with -tags pprof, the binary serves net/http/pprof on the address in
// MACULA_PPROF (such as 127.0.0.1:6060) when that variable is set: for
// profiling a node of a running realm (scripts/realm -pprof). Release
// builds have no such server.

import (
	"log"
	"net/http"
	_ "net/http/pprof"
	"os"
)

func init() {
	addr := os.Getenv("MACULA_PPROF")
	if addr == "" {
		return
	}
	go func() { log.Println(http.ListenAndServe(addr, nil)) }()
}
