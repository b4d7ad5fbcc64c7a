package ucan

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// interopInstall is how CI installs the second implementation.
const interopInstall = "npm ci --prefix ucan/testdata/interop (node >= 20 and npm on PATH)"

// TestInteropIsoUCAN exchanges tokens with iso-ucan 0.5.0, an independent
// JavaScript implementation that speaks the same envelope for chains of one
// proof: tokens it mints are accepted or refused by the Validator as they
// should be, and tokens Issue and Invoke mint are accepted by it. Without
// node or the installed package the test fails under CI=true and is skipped
// otherwise.
func TestInteropIsoUCAN(t *testing.T) {
	dir := filepath.Join("testdata", "interop")
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(filepath.Join(dir, "node_modules", "iso-ucan", "package.json"))
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("interop needs node and iso-ucan (%v); install with: %s", err, interopInstall)
		}
		t.Skipf("interop needs node and iso-ucan (%v); install with: %s", err, interopInstall)
	}

	r := newTestRealm(t)
	now := time.Now()
	r.start, r.clock = now, &fakeClock{t: now}
	// A Go chain and invocation for iso-ucan to verify.
	goChain := r.issue(t, r.auth, IssueOptions{Audience: didNode, Command: Call, Resource: orders})
	goInv, err := Invoke(keyNode, InvokeOptions{Executor: didSelf, Command: Call, Resource: place, Proof: goChain})
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(goChain[0])
	tampered[10] ^= 1 // inside the signature

	b64 := base64.StdEncoding.EncodeToString
	in, _ := json.Marshal(map[string]any{
		"now":            now.Unix(),
		"authority_seed": b64(r.auth.Seed()),
		"node_seed":      b64(keyNode.Seed()),
		"executor":       didSelf,
		"other":          didX,
		"go_delegation":  b64(goChain[0]),
		"go_invocation":  b64(goInv),
		"go_tampered":    b64(tampered),
	})
	cmd := exec.Command(node, "mint.mjs")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	outRaw, err := cmd.Output()
	if err != nil {
		t.Fatalf("node mint.mjs: %v\n%s", err, stderr.String())
	}
	var out map[string]string
	if err := json.Unmarshal(outRaw, &out); err != nil {
		t.Fatalf("mint.mjs output %q: %v", outRaw, err)
	}
	if out["authority"] != r.authDID || out["node"] != didNode {
		t.Fatalf("iso-ucan derived other DIDs from the same keys: %s %s", out["authority"], out["node"])
	}
	dec := func(k string) []byte {
		b, err := base64.StdEncoding.DecodeString(out[k])
		if err != nil || len(b) == 0 {
			t.Fatalf("%s: %v", k, err)
		}
		return b
	}
	jsChain := Chain{dec("delegation")}

	t.Run("iso-ucan delegation on a connection", func(t *testing.T) {
		v := r.validator(t, didSelf, nil)
		vd, err := v.Validate(ctxBg, didNode, []Chain{jsChain})
		if err != nil {
			t.Fatalf("refused: %v", err)
		}
		if err := Check(vd, Call, place); err != nil {
			t.Fatal(err)
		}
		if err := Check(vd, Call, "io.acme.orders.place.eu"); !errors.Is(err, ErrResource) {
			t.Fatalf("segment-aware pattern: %v", err)
		}
		if _, err := v.Validate(ctxBg, didX, []Chain{jsChain}); !errors.Is(err, ErrWrongAudience) {
			t.Fatalf("presented by another node: %v", err)
		}
	})
	t.Run("iso-ucan invocation", func(t *testing.T) {
		v := r.validator(t, didSelf, nil)
		if _, err := v.ValidateInvocation(ctxBg, dec("invocation"), jsChain, Call, place); err != nil {
			t.Fatalf("refused: %v", err)
		}
		if _, err := v.ValidateInvocation(ctxBg, dec("invocation"), jsChain, Call, place); !errors.Is(err, ErrReplay) {
			t.Fatalf("replay: %v", err)
		}
		// iso-ucan's glob accepted this; the segment-aware reading does not.
		if _, err := v.ValidateInvocation(ctxBg, dec("invocation_glob"), jsChain, Call, "io.acme.orders.place.eu"); !errors.Is(err, ErrResource) {
			t.Fatalf("glob-only match: %v", err)
		}
		if _, err := v.ValidateInvocation(ctxBg, dec("invocation_other_executor"), jsChain, Call, place); !errors.Is(err, ErrWrongAudience) {
			t.Fatalf("other executor: %v", err)
		}
		r.clock.Set(now.Add(2 * time.Hour))
		defer r.clock.Set(now)
		v2 := r.validator(t, didSelf, nil)
		if _, err := v2.ValidateInvocation(ctxBg, dec("invocation"), jsChain, Call, place); !errors.Is(err, ErrExpired) {
			t.Fatalf("later: %v", err)
		}
	})
	t.Run("Go tokens verified by iso-ucan", func(t *testing.T) {
		if out["verify_go_delegation"] != "ok" {
			t.Errorf("iso-ucan refused our delegation: %s", out["verify_go_delegation"])
		}
		if out["verify_go_invocation"] != "ok" {
			t.Errorf("iso-ucan refused our invocation: %s", out["verify_go_invocation"])
		}
		if out["verify_go_tampered"] == "ok" {
			t.Errorf("iso-ucan accepted a tampered delegation")
		}
		t.Logf("iso-ucan on a tampered token: %s", out["verify_go_tampered"])
	})
}
