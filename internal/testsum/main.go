// Command testsum runs go test and says loudly what it did not test.
//
//	go run ./internal/testsum [go test flags and packages]
//
// It runs "go test -json" with the arguments given and prints what a plain
// go test prints (one line per package, the output of every failed test),
// then a summary: how many tests passed, failed and were skipped, and every
// skipped test with its reason, framed so that nobody scrolls past it. A
// test suite that skips what it cannot run here (the NAT lab without root,
// the UCAN interop test without node) otherwise passes in silence, and the
// person who ran it believes they ran what CI runs.
//
// With CI=true in the environment a skipped test fails the run: CI installs
// every prerequisite, so a skip there means a test did not run. The exit
// code is go test's, or 1 for a skip under CI.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

func main() {
	args := append([]string{"test", "-json"}, os.Args[1:]...)
	cmd := exec.Command("go", args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, "testsum:", err)
		os.Exit(1)
	}
	// Ctrl-C reaches go test through the terminal's process group; testsum
	// stays to print what it saw.
	signal.Ignore(os.Interrupt, syscall.SIGQUIT)
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "testsum:", err)
		os.Exit(1)
	}
	s := newSummary(os.Stdout)
	readErr := s.read(out)
	waitErr := cmd.Wait()
	code := 0
	if waitErr != nil {
		code = 1
		if ee, ok := waitErr.(*exec.ExitError); ok && ee.ExitCode() > 0 {
			code = ee.ExitCode()
		}
	}
	if readErr != nil {
		fmt.Fprintln(os.Stderr, "testsum: reading go test's output:", readErr)
		code = max(code, 1)
	}
	if s.report(os.Getenv("CI") == "true") && code == 0 {
		code = 1
	}
	os.Exit(code)
}

// event is one line of go test -json (cmd/test2json).
type event struct {
	Action     string
	Package    string
	Test       string
	Output     string
	ImportPath string // of build-output events
}

// maxTestOutput bounds the output kept for one test: the last bytes of a
// test that logs without end are the ones that say why it failed.
const maxTestOutput = 256 << 10

// summary reads go test's events and keeps what the report needs.
type summary struct {
	w       io.Writer
	outputs map[string]*strings.Builder // test key -> its output so far
	done    map[string]bool             // test key -> it passed, failed or was skipped
	skipped []skip
	passed  int
	failed  int
}

type skip struct {
	pkg, test, reason string
}

func newSummary(w io.Writer) *summary {
	return &summary{w: w, outputs: map[string]*strings.Builder{}, done: map[string]bool{}}
}

func key(e event) string { return e.Package + " " + e.Test }

// read handles every event of r. Lines that are not JSON (go test writes a
// few of its own) are printed as they are.
func (s *summary) read(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e.Action == "" {
			fmt.Fprintln(s.w, sc.Text())
			continue
		}
		s.handle(e)
	}
	return sc.Err()
}

func (s *summary) handle(e event) {
	switch e.Action {
	case "build-output":
		io.WriteString(s.w, e.Output)
	case "output":
		if e.Test == "" {
			// The package's own lines: "ok pkg 1.2s", "FAIL pkg", what
			// TestMain printed. A bare PASS says nothing.
			if e.Output != "PASS\n" {
				io.WriteString(s.w, e.Output)
			}
			return
		}
		b := s.outputs[key(e)]
		if b == nil {
			b = &strings.Builder{}
			s.outputs[key(e)] = b
		}
		if b.Len()+len(e.Output) > maxTestOutput {
			rest := b.String()
			rest = rest[min(len(rest), len(e.Output)+b.Len()-maxTestOutput):]
			b.Reset()
			b.WriteString(rest)
		}
		b.WriteString(e.Output)
	case "pass", "fail", "skip":
		if e.Test == "" {
			if e.Action == "fail" {
				s.flushUnfinished(e.Package)
			}
			return
		}
		s.done[key(e)] = true
		switch e.Action {
		case "pass":
			s.passed++
		case "fail":
			s.failed++
			s.printTest(key(e))
		case "skip":
			s.skipped = append(s.skipped, skip{pkg: e.Package, test: e.Test, reason: skipReason(s.text(key(e)))})
		}
		delete(s.outputs, key(e))
	}
}

// flushUnfinished prints the output of the tests of pkg that never ended:
// those running when the package panicked or timed out.
func (s *summary) flushUnfinished(pkg string) {
	var keys []string
	for k := range s.outputs {
		if strings.HasPrefix(k, pkg+" ") && !s.done[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		s.printTest(k)
		delete(s.outputs, k)
	}
}

func (s *summary) text(k string) string {
	if b := s.outputs[k]; b != nil {
		return b.String()
	}
	return ""
}

// printTest prints a test's output as plain go test would: without the
// framing lines of verbose mode.
func (s *summary) printTest(k string) {
	for line := range strings.Lines(s.text(k)) {
		if framing(line) {
			continue
		}
		io.WriteString(s.w, line)
	}
}

func framing(line string) bool {
	for _, p := range []string{"=== RUN ", "=== PAUSE ", "=== CONT ", "=== NAME "} {
		if strings.HasPrefix(line, p) {
			return true
		}
	}
	return false
}

// skipReason is what a skipped test logged, on one line: the last lines
// before its "--- SKIP".
func skipReason(out string) string {
	var lines []string
	for line := range strings.Lines(out) {
		if framing(line) || strings.HasPrefix(line, "--- SKIP") {
			continue
		}
		if l := strings.TrimSpace(line); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > 3 {
		lines = lines[len(lines)-3:]
	}
	if len(lines) == 0 {
		return "(no reason given)"
	}
	return strings.Join(lines, "; ")
}

// report prints the summary and reports whether skips fail the run.
func (s *summary) report(ci bool) (failRun bool) {
	fmt.Fprintf(s.w, "\ntests: %d passed, %d failed, %d skipped\n", s.passed, s.failed, len(s.skipped))
	if len(s.skipped) == 0 {
		return false
	}
	bar := strings.Repeat("!", 78)
	fmt.Fprintf(s.w, "\n%s\n", bar)
	fmt.Fprintf(s.w, "!! %d test(s) SKIPPED: this run did NOT test everything that CI tests.\n", len(s.skipped))
	for _, sk := range s.skipped {
		fmt.Fprintf(s.w, "!!   %s %s\n!!       %s\n", strings.TrimPrefix(sk.pkg, "github.com/macula-io/macula/"), sk.test, sk.reason)
	}
	fmt.Fprintf(s.w, "!! 'sudo make deps' installs the prerequisites (docs/getting-started.md, Tests).\n")
	if ci {
		fmt.Fprintf(s.w, "!! CI=true: a skipped test fails the run.\n")
	}
	fmt.Fprintf(s.w, "%s\n", bar)
	return ci
}
