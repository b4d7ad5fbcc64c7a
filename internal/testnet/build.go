package testnet

import (
	"context"
	"os"
	"os/exec"
)

// BuildNode builds the macula-node binary of the module at dir (pkg is
// its package path from there: ./cmd/macula-node, or . from that
// directory) into out, as scripts/build.sh builds it: without cgo, so the
// end-to-end tests run the static binary that users get.
func BuildNode(ctx context.Context, dir, pkg, out string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	return cmd.CombinedOutput()
}
