package ucan

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// replayRig is a validator's replay file and what to fill it with: a
// direct call grant to keyNode, invocations of it addressed to didSelf.
type replayRig struct {
	r     *testRealm
	chain Chain
	path  string
}

func newReplayRig(t *testing.T) *replayRig {
	t.Helper()
	r := newTestRealm(t)
	return &replayRig{
		r:     r,
		chain: r.issue(t, r.auth, IssueOptions{Audience: didNode, Command: Call, Resource: orders}),
		path:  filepath.Join(t.TempDir(), "replay"),
	}
}

// open starts a validator on the rig's file (a start of the node); it is
// not closed unless the test does it (a process that dies does not).
func (g *replayRig) open(t *testing.T, mod func(*Config)) *Validator {
	t.Helper()
	return g.r.validator(t, didSelf, func(c *Config) {
		c.ReplayFile = g.path
		if mod != nil {
			mod(c)
		}
	})
}

// invoke makes an invocation issued at iat (zero: now) that expires at exp
// (zero: a minute after the realm's start).
func (g *replayRig) invoke(t *testing.T, iat, exp time.Time) []byte {
	t.Helper()
	if exp.IsZero() {
		exp = g.r.start.Add(time.Minute)
	}
	b, err := Invoke(keyNode, InvokeOptions{Executor: didSelf, Command: Call, Resource: place, Proof: g.chain, Expires: exp, IssuedAt: iat})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (g *replayRig) use(v *Validator, inv []byte) error {
	_, err := v.ValidateInvocation(ctxBg, inv, g.chain, Call, place)
	return err
}

func (g *replayRig) mustUse(t *testing.T, v *Validator, what string, inv []byte) {
	t.Helper()
	if err := g.use(v, inv); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func (g *replayRig) mustRefuse(t *testing.T, v *Validator, what string, inv []byte, want error) {
	t.Helper()
	if err := g.use(v, inv); !errors.Is(err, want) {
		t.Fatalf("%s: %v, want %v", what, err, want)
	}
}

func withBootID(t *testing.T, id string) {
	t.Helper()
	old := systemBootID
	systemBootID = func() string { return id }
	t.Cleanup(func() { systemBootID = old })
}

// A used invocation stays refused after a clean restart, and after a
// process that died without Close; a new one is accepted at once (no
// quarantine when nothing can have been lost).
func TestReplayAcrossRestart(t *testing.T) {
	for _, clean := range []bool{true, false} {
		name := map[bool]string{true: "clean stop", false: "process died"}[clean]
		t.Run(name, func(t *testing.T) {
			g := newReplayRig(t)
			inv1 := g.invoke(t, time.Time{}, time.Time{})
			v1 := g.open(t, nil)
			g.mustUse(t, v1, "first use", inv1)
			g.mustRefuse(t, v1, "second use", inv1, ErrReplay)
			if clean {
				if err := v1.Close(); err != nil {
					t.Fatal(err)
				}
				g.mustRefuse(t, v1, "after Close", g.invoke(t, time.Time{}, time.Time{}), ErrBusy)
			}
			v2 := g.open(t, nil)
			defer v2.Close()
			g.mustRefuse(t, v2, "use after the restart", inv1, ErrReplay)
			g.mustUse(t, v2, "a new invocation", g.invoke(t, time.Time{}, time.Time{}))
		})
	}
}

// A write cut off at the end of the file (the process died inside it)
// neither stops the start nor lets a recorded invocation through.
func TestReplayTornWrite(t *testing.T) {
	g := newReplayRig(t)
	v1 := g.open(t, nil)
	inv1, inv2 := g.invoke(t, time.Time{}, time.Time{}), g.invoke(t, time.Time{}, time.Time{})
	g.mustUse(t, v1, "inv1", inv1)
	g.mustUse(t, v1, "inv2", inv2)
	var id contentID
	half := appendReplayEntry(nil, id, 0)[:entryFrame/2]
	f, err := os.OpenFile(g.path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(half)
	f.Close()
	v2 := g.open(t, nil)
	defer v2.Close()
	g.mustRefuse(t, v2, "inv1", inv1, ErrReplay)
	g.mustRefuse(t, v2, "inv2", inv2, ErrReplay)
	g.mustUse(t, v2, "a new invocation", g.invoke(t, time.Time{}, time.Time{}))
	// The rewritten file reads back whole.
	v2.Close()
	v3 := g.open(t, nil)
	defer v3.Close()
	g.mustRefuse(t, v3, "inv2 after another restart", inv2, ErrReplay)
}

// When the file cannot vouch for every invocation used before (the system
// restarted after an unclean stop, so writes may be lost; a damaged or
// foreign file), the validator starts anyway, and refuses every invocation
// issued before its start (plus the leeway) until all of those have
// expired; invocations issued later pass.
func TestReplayQuarantine(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, g *replayRig, size int64)
	}{
		{"system restarted, last write lost", func(t *testing.T, g *replayRig, size int64) {
			withBootID(t, "boot-2")
			if err := os.Truncate(g.path, size-entryFrame); err != nil {
				t.Fatal(err)
			}
		}},
		{"system cannot tell its boots apart", func(t *testing.T, g *replayRig, size int64) {
			withBootID(t, "")
			if err := os.Truncate(g.path, size-entryFrame); err != nil {
				t.Fatal(err)
			}
		}},
		{"damaged entry", func(t *testing.T, g *replayRig, size int64) {
			b, err := os.ReadFile(g.path)
			if err != nil {
				t.Fatal(err)
			}
			b[size-entryFrame+10] ^= 0x40
			if err := os.WriteFile(g.path, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"empty file", func(t *testing.T, g *replayRig, _ int64) {
			if err := os.WriteFile(g.path, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"foreign file", func(t *testing.T, g *replayRig, _ int64) {
			if err := os.WriteFile(g.path, []byte("hello, world\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			withBootID(t, "boot-1")
			g := newReplayRig(t)
			start := g.r.start
			v1 := g.open(t, nil)
			lost := g.invoke(t, start, start.Add(5*time.Minute))
			g.mustUse(t, v1, "first use", g.invoke(t, start, time.Time{}))
			g.mustUse(t, v1, "the invocation whose record is lost", lost)
			fi, err := os.Stat(g.path)
			if err != nil {
				t.Fatal(err)
			}
			tc.damage(t, g, fi.Size())

			// The node starts 10 s later.
			s := start.Add(10 * time.Second)
			g.r.clock.Set(s)
			v2 := g.open(t, nil)
			defer v2.Close()
			g.mustRefuse(t, v2, "the lost invocation", lost, ErrReplay)
			g.mustRefuse(t, v2, "one issued just after the start (within the leeway)", g.invoke(t, s.Add(time.Second), s.Add(time.Minute)), ErrReplay)
			// Issued before the start but valid for long: only presentable
			// (MaxInvocationTTL) once the quarantine is over.
			unused := g.invoke(t, start, start.Add(12*time.Minute))
			// Issued after the start plus the leeway: accepted.
			g.r.clock.Set(s.Add(61 * time.Second))
			g.mustUse(t, v2, "one issued after the leeway", g.invoke(t, s.Add(61*time.Second), s.Add(2*time.Minute)))

			// The quarantine survives a restart, clean or not...
			v2.Close()
			v3 := g.open(t, nil)
			g.mustRefuse(t, v3, "the lost invocation after another restart", lost, ErrReplay)
			// ...and ends when whatever was used before has expired
			// (start + MaxInvocationTTL + twice the leeway).
			g.r.clock.Set(s.Add(5*time.Minute + 2*time.Minute + time.Second))
			g.mustUse(t, v3, "an old one never used, after the quarantine", unused)
			g.mustRefuse(t, v3, "the lost invocation, expired", lost, ErrExpired)
			v3.Close()
		})
	}
}

// The file stays within about twice the live entries: stale frames are
// compacted away as invocations expire.
func TestReplayFileBounded(t *testing.T) {
	g := newReplayRig(t)
	v := g.open(t, nil)
	defer v.Close()
	const n = 1500
	maxSize := int64(0)
	for i := range n {
		now := g.r.start.Add(time.Duration(i) * time.Second)
		g.r.clock.Set(now)
		g.mustUse(t, v, "invocation", g.invoke(t, g.r.start, now.Add(time.Second)))
		if fi, err := os.Stat(g.path); err == nil {
			maxSize = max(maxSize, fi.Size())
		}
	}
	// About 62 live entries at a time (1 s plus the 60 s leeway), so at
	// most 2*62+1024 frames between compactions.
	limit := int64(2*70+compactSlack+1)*entryFrame + maxReplayItem
	if maxSize > limit {
		t.Fatalf("the file grew to %d bytes, want at most %d", maxSize, limit)
	}
	if maxSize < 1000*entryFrame {
		t.Fatalf("the file never exceeded %d bytes: is it written?", maxSize)
	}
}

// An invocation that cannot be recorded is refused, and not remembered: it
// counts once it can be.
func TestReplayWriteFailure(t *testing.T) {
	g := newReplayRig(t)
	dir := filepath.Join(t.TempDir(), "not-yet")
	g.path = filepath.Join(dir, "replay")
	v := g.open(t, nil)
	defer v.Close()
	inv := g.invoke(t, time.Time{}, time.Time{})
	g.mustRefuse(t, v, "without its directory", inv, ErrBusy)
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	g.mustUse(t, v, "once it can be recorded", inv)
	g.mustRefuse(t, v, "then", inv, ErrReplay)
	fi, err := os.Stat(g.path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("replay file mode %v, want 0600", fi.Mode().Perm())
	}
}

// An invocation issued more than the leeway in the future is refused (a
// quarantine relies on it).
func TestInvocationIssuedInFuture(t *testing.T) {
	g := newReplayRig(t)
	v := g.r.validator(t, didSelf, nil)
	g.mustRefuse(t, v, "issued 2 min ahead", g.invoke(t, g.r.start.Add(2*time.Minute), g.r.start.Add(3*time.Minute)), ErrNotYetValid)
	g.mustUse(t, v, "issued 59 s ahead", g.invoke(t, g.r.start.Add(59*time.Second), g.r.start.Add(3*time.Minute)))
}

// Concurrent uses of the same invocations: each is accepted exactly once,
// and the file has them all.
func TestReplayConcurrent(t *testing.T) {
	g := newReplayRig(t)
	v := g.open(t, nil)
	const n, workers = 50, 8
	invs := make([][]byte, n)
	for i := range invs {
		invs[i] = g.invoke(t, time.Time{}, time.Time{})
	}
	var accepted atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for _, inv := range invs {
				if g.use(v, inv) == nil {
					accepted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if accepted.Load() != n {
		t.Fatalf("%d acceptances of %d invocations", accepted.Load(), n)
	}
	v2 := g.open(t, nil) // as after a crash: v is not closed
	defer v2.Close()
	for i, inv := range invs {
		g.mustRefuse(t, v2, "after the restart "+string(rune('0'+i%10)), inv, ErrReplay)
	}
	v.Close()
}

// A validator that used nothing writes nothing: a start that fails, or a
// node that served no token, leaves the data directory as it was.
func TestReplayNothingUsedNothingWritten(t *testing.T) {
	g := newReplayRig(t)
	v := g.open(t, nil)
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(g.path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("replay file after a run without invocations: %v", err)
	}
}

// The replay cache keeps time by the validator's clock, not the system's:
// with a clock behind, nothing it still holds live is dropped when the file
// is rewritten.
func TestReplayUsesValidatorClock(t *testing.T) {
	g := newReplayRig(t)
	early := g.r.start.Add(-time.Hour)
	g.r.clock.Set(early)
	inv1 := g.invoke(t, early, early.Add(time.Minute))
	v1 := g.open(t, nil)
	g.mustUse(t, v1, "inv1", inv1)
	if err := v1.Close(); err != nil {
		t.Fatal(err)
	}
	v2 := g.open(t, nil)
	defer v2.Close()
	g.mustUse(t, v2, "inv2 (the first write: a rewrite)", g.invoke(t, early, early.Add(time.Minute)))
	g.mustRefuse(t, v2, "inv1 after the rewrite", inv1, ErrReplay)
}
