package main

import (
	"os"
	"strings"
	"testing"
)

// testdata/events.json is go test -json of two small packages: sk (TestA
// skipped after a log line, TestB/sub skipped with a two-line reason, TestC
// failed) and sk2 (TestHang killed by -timeout 1s, so it never ends).
func readSample(t *testing.T) (*summary, *strings.Builder) {
	t.Helper()
	f, err := os.Open("testdata/events.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out strings.Builder
	s := newSummary(&out)
	if err := s.read(f); err != nil {
		t.Fatal(err)
	}
	return s, &out
}

func TestSummary(t *testing.T) {
	s, out := readSample(t)
	got := out.String()
	for _, want := range []string{
		"    a_test.go:5: boom\n--- FAIL: TestC", // a failed test's output, in order
		"FAIL\tsk\t",                             // the package's line
		"panic: test timed out after 1s",         // a test that never ended, printed when its package failed
		"a_test.go:3: waiting",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	for _, unwanted := range []string{"=== RUN", "no tool here", "--- SKIP", "PASS\n"} {
		if strings.Contains(got, unwanted) {
			t.Errorf("output has %q:\n%s", unwanted, got)
		}
	}
	if s.passed != 1 || s.failed != 1 || len(s.skipped) != 2 {
		t.Fatalf("passed %d failed %d skipped %v", s.passed, s.failed, s.skipped)
	}
	if sk := s.skipped[0]; sk.test != "TestA" || sk.reason != "a_test.go:3: hello; a_test.go:3: no tool here" {
		t.Errorf("first skip %+v", sk)
	}
	if sk := s.skipped[1]; sk.test != "TestB/sub" || sk.reason != "a_test.go:4: sub skip; second line" {
		t.Errorf("second skip %+v", sk)
	}
}

func TestReport(t *testing.T) {
	s, out := readSample(t)
	out.Reset()
	if s.report(false) {
		t.Error("skips fail the run without CI")
	}
	got := out.String()
	for _, want := range []string{"tests: 1 passed, 1 failed, 2 skipped", "2 test(s) SKIPPED", "sk TestA", "a_test.go:4: sub skip; second line", "sudo make deps"} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
	out.Reset()
	if !s.report(true) || !strings.Contains(out.String(), "CI=true") {
		t.Errorf("under CI skips must fail the run:\n%s", out.String())
	}
	quiet := newSummary(out)
	out.Reset()
	if quiet.report(true) || strings.Contains(out.String(), "SKIPPED") {
		t.Errorf("a run without skips: %s", out.String())
	}
}

func TestNonJSONLinesPass(t *testing.T) {
	var out strings.Builder
	s := newSummary(&out)
	if err := s.read(strings.NewReader("go: downloading example.com/x v1.0.0\n{\"Action\":\"output\",\"Package\":\"p\",\"Output\":\"ok  \\tp\\t0.1s\\n\"}\n")); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "go: downloading example.com/x v1.0.0\nok  \tp\t0.1s\n" {
		t.Errorf("got %q", got)
	}
}

func TestOutputBounded(t *testing.T) {
	var out strings.Builder
	s := newSummary(&out)
	line := strings.Repeat("x", 1023) + "\n"
	for range 1000 {
		s.handle(event{Action: "output", Package: "p", Test: "T", Output: line})
	}
	if n := len(s.text("p T")); n > maxTestOutput {
		t.Fatalf("kept %d bytes", n)
	}
}
