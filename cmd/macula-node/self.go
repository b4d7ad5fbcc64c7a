package main

import (
	"context"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// How this process was started matters twice: the commands it suggests
// (dev's "Try, in another terminal" lines) must be ones the user can type,
// and a binary started by "go run" must not outlive the go command.
//
// go run builds the program into a directory named go-build... (a temporary
// $WORK/b001/exe/, or since Go 1.24 the build cache's go-build/xx/...-d/)
// and runs it as a child; it passes no signal on, so killing go run (an
// IDE's stop button, a script's kill, a test harness) left the node running.

// selfCommand is the command that starts this binary again, as the user
// would type it: "macula-node" when that is on PATH, the path they typed
// ("bin/macula-node", "./macula-node"), or "go run PKG" under go run.
func selfCommand() string {
	exe, _ := os.Executable()
	if isGoRunBinary(exe) {
		return goRunCommand(parentArgs())
	}
	return commandFor(os.Args[0], exe, func(name string) string {
		p, err := exec.LookPath(name)
		if err != nil {
			return ""
		}
		return p
	})
}

// commandFor chooses between the name on PATH and the path typed (arg0):
// the short name when PATH finds this very executable.
func commandFor(arg0, exe string, lookPath func(string) string) string {
	const name = "macula-node"
	if p := lookPath(name); p != "" && sameFile(p, exe) {
		return name
	}
	if strings.ContainsRune(arg0, filepath.Separator) {
		return arg0
	}
	if exe != "" {
		return exe
	}
	return name
}

func sameFile(a, b string) bool {
	fa, err := os.Stat(a)
	if err != nil {
		return false
	}
	fb, err := os.Stat(b)
	return err == nil && os.SameFile(fa, fb)
}

// isGoRunBinary reports whether exe is a binary that go run built: it lies
// in a directory whose name starts with "go-build".
func isGoRunBinary(exe string) bool {
	for _, dir := range strings.Split(filepath.Dir(exe), string(filepath.Separator)) {
		if strings.HasPrefix(dir, "go-build") {
			return true
		}
	}
	return false
}

// goRunValueFlags are the build flags of go run that take their value as
// the next argument; the package is the first argument that is neither a
// flag nor such a value.
var goRunValueFlags = map[string]bool{
	"C": true, "p": true, "asmflags": true, "buildmode": true, "compiler": true, "covermode": true,
	"coverpkg": true, "exec": true, "gccgoflags": true, "gcflags": true, "installsuffix": true,
	"ldflags": true, "mod": true, "modfile": true, "overlay": true, "pgo": true, "pkgdir": true,
	"tags": true, "toolexec": true,
}

// goRunCommand is "go run PKG" for the go command line args ("go", "run",
// flags, the package or .go files, the program's arguments); "go run
// ./cmd/macula-node" when args are unknown or not a go run.
func goRunCommand(args []string) string {
	const fallback = "go run ./cmd/macula-node"
	if len(args) < 3 || filepath.Base(args[0]) != "go" || args[1] != "run" {
		return fallback
	}
	rest := args[2:]
	for len(rest) > 0 && strings.HasPrefix(rest[0], "-") {
		f := strings.TrimLeft(rest[0], "-")
		rest = rest[1:]
		if f == "" { // "--": the package follows
			break
		}
		if !strings.Contains(f, "=") && goRunValueFlags[f] && len(rest) > 0 {
			rest = rest[1:]
		}
	}
	if len(rest) == 0 {
		return fallback
	}
	pkg := []string{rest[0]}
	if strings.HasSuffix(rest[0], ".go") {
		pkg = pkg[:0]
		for _, a := range rest {
			if !strings.HasSuffix(a, ".go") {
				break
			}
			pkg = append(pkg, a)
		}
	}
	return "go run " + strings.Join(pkg, " ")
}

// parentArgs is the command line of the parent process, where the system
// tells it (Linux's /proc); nil elsewhere.
func parentArgs() []string {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(os.Getppid()), "cmdline"))
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

// exitWithParentIfGoRun makes this process stop (SIGTERM: the commands
// shut down cleanly on it) when its parent dies, if go run started it; see
// watchParent for how, per system.
func exitWithParentIfGoRun() {
	if exe, _ := os.Executable(); isGoRunBinary(exe) {
		watchParent()
	}
}

// stopSignals ends the signals' hold on a long-running command once its
// context is done and it is stopping: a second Ctrl-C then ends the
// process at once, as users expect. Further SIGTERMs are ignored: under
// go run, the kernel sends the parent-death signal each time this process
// is handed from one of the dying go command's threads to the next (and at
// last to init), so one death of the parent is several SIGTERMs, and the
// second, with the default action back, killed the node in the middle of
// its clean stop (its node.json left behind; TestGoRun, 1 run in 6 under
// load). A supervisor that wants it gone sooner sends SIGKILL.
func stopSignals(stop context.CancelFunc) {
	signal.Ignore(syscall.SIGTERM) // before stop: Ignore takes SIGTERM off stop's channel, so stop leaves it alone
	stop()
}
