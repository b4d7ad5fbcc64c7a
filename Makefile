# Macula for Go. `make test` is what CI runs (through .ci/run, after `make deps`).
GO      ?= go
BIN     := bin/macula-node
PKGS    := ./...
FUZZTIME ?= 10s
TEST_FUZZTIME ?= 2000x

.PHONY: all build test test-short bench lint fuzz dev clean churn deps prereqs realm soak scalemodel

all: build

build:
	@scripts/build.sh $(BIN)

# The whole suite, as CI runs it: the prerequisites checked (the UCAN interop
# test's npm package is installed into the tree; anything else missing is
# named, with the tests it will skip), gofmt and vet, then every test with the
# race detector, including the end-to-end tests that start real macula-node
# processes on loopback and the NAT lab (root). internal/testsum prints the
# results and then, loudly, every test that was skipped and why; under CI=true
# a skip fails the run.
#
# Tests whose figures the race detector makes meaningless (the idle actor's
# memory) are built only without it (//go:build !race) and run in a second,
# short pass without -race. Then the 20-node churn test (make churn), and
# last a short run of every fuzz target (scripts/fuzz.sh, TEST_FUZZTIME each:
# 2000 inputs, about 2.5 minutes in all). A count, not a time: with a time,
# Go 1.26's fuzz coordinator may fail a target with "context deadline
# exceeded" as the time runs out (golang/go#75804, fixed in Go 1.27; seen in
# CI here on a loaded machine).
test: prereqs lint
	$(GO) run ./internal/testsum -race -count=1 -timeout 15m $(PKGS)
	$(GO) run ./internal/testsum -count=1 -timeout 5m -run '^TestIdleActorMemory$$' ./actors
	$(MAKE) --no-print-directory churn
	@scripts/fuzz.sh $(TEST_FUZZTIME)

# Check the test prerequisites (make test does it first).
prereqs:
	@scripts/prereqs.sh

# Install the test prerequisites: Debian packages (as root: gcc, nodejs, npm,
# nftables, coturn, stun-client, ...) and the UCAN interop test's npm package.
deps:
	@scripts/prereqs.sh --install

test-short:
	$(GO) test -count=1 -short $(PKGS)

# The benchmarks of this module, then those of bench/ (its own module: it
# measures against NATS, which the main module does not depend on). The bench/
# benchmarks measure inside one iteration and print their figures (-benchtime 1x).
bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)
	cd bench && $(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

# Run each fuzz target for FUZZTIME: a table of executions and results, every
# target run even after a crash (scripts/fuzz.sh: one instrumented test binary
# per package). make test runs it with TEST_FUZZTIME.
fuzz:
	@scripts/fuzz.sh $(FUZZTIME)

# Build bin/macula-node (showing progress: a first build compiles a few
# hundred packages), then start a local mesh with it.
dev: build
	$(BIN) dev $(ARGS)

clean:
	rm -rf bin

# The churn test with 20 macula-node run processes on loopback: one stopped
# cleanly, one killed, calls from a third; it prints the failures and
# latencies per second (docs/churn.md). make test runs it after the suite,
# alone, so that 20 nodes have the machine to themselves.
churn:
	$(GO) test -tags churn -count=1 -run '^TestChurn20EndToEnd$$' -v -timeout 5m ./cmd/macula-node

# A realm of N (default 50) macula-node run processes on loopback, started
# with the flags a user types: prints the start time, peers per node, the
# realm's idle CPU over 10 s, RSS per node, DHT lookup and RPC call
# latencies (scripts/realm; docs/benchmarks.md has its figures). Heavy: it
# runs nice'd; REALM_ARGS passes more flags (-json FILE, -keep, -settle 30s).
N ?= 50
realm: build
	nice -n 5 $(GO) run ./scripts/realm -n $(N) -bin $(BIN) $(REALM_ARGS)

# The soak with faults (not in CI: 10 minutes): 20 run processes under
# steady RPC and pub/sub load; kill -9 a random node every 30 s (back 3 s
# later), SIGSTOP one for 20 s every 2.5 min; prints per minute the calls'
# p50/p99/max and failures, typed errors of calls to nodes that were down,
# hung calls, messages delivered, goroutines and RSS, and per restart how
# soon the node's procedure and subscription work again
# (docs/reliability.md has its figures). SOAK sets the duration.
SOAK ?= 10m
soak: build
	$(GO) run ./scripts/realm -n 20 -bin $(BIN) -settle 5s -soak $(SOAK) $(REALM_ARGS)

# The model of a realm of 50, 1,000 and 10,000 nodes across sites
# (scripts/scalemodel: real peer IDs, the membership's overlay, kad-dht's
# routing tables and queries, the connection manager, the registry's
# digests, relays; docs/reliability.md has its figures). About half a
# minute; SCALE_ARGS passes flags (-n 50,2000 -seed 2 -json out.json).
scalemodel:
	nice -n 5 $(GO) run ./scripts/scalemodel $(SCALE_ARGS)
