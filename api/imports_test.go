package api

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// forbidden are the module paths a client program must not link through
// this package: libp2p and what comes with it, and go-ucan (whose
// invocations api/ucantoken makes).
var forbidden = []string{
	"github.com/libp2p/",
	"github.com/multiformats/",
	"github.com/ipfs/",
	"github.com/ucan-wg/",
}

// deps lists the packages pkg imports, directly or not (go list -deps).
func deps(t *testing.T, pkg string) []string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out, err := exec.Command(goBin, "list", "-deps", "-f", "{{.ImportPath}}", pkg).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, ee.Stderr)
		}
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}

func forbiddenDeps(all []string) []string {
	var bad []string
	for _, p := range all {
		for _, f := range forbidden {
			if strings.HasPrefix(p, f) {
				bad = append(bad, p)
				break
			}
		}
	}
	return bad
}

// TestNoLibp2p checks the import graph: a program that uses the client
// links no libp2p, multiformats, IPFS or go-ucan package.
func TestNoLibp2p(t *testing.T) {
	if bad := forbiddenDeps(deps(t, "github.com/macula-io/macula/api")); len(bad) > 0 {
		t.Fatalf("package api reaches %d forbidden packages, first %v", len(bad), bad[:min(len(bad), 5)])
	}
	// The check itself finds them where they are: the gateway serves a
	// node, which is libp2p.
	if bad := forbiddenDeps(deps(t, "github.com/macula-io/macula/gateway")); len(bad) == 0 {
		t.Fatal("the import check finds no libp2p package under gateway: it checks nothing")
	}
}
