# Macula for Go. `make test` is what CI runs (through .ci/run).
GO      ?= go
BIN     := bin/macula-node
PKGS    := ./...
FUZZTIME ?= 10s

.PHONY: all build test test-short bench lint fuzz dev clean churn

all: build

build:
	$(GO) build -o $(BIN) ./cmd/macula-node

# The whole suite: vet, then every test with the race detector, including the
# end-to-end tests that start real macula-node processes on loopback.
test:
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 15m $(PKGS)

test-short:
	$(GO) test -count=1 -short $(PKGS)

bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)
	cd bench && $(GO) test -run '^$$' -bench Actors -benchtime 1x -timeout 30m ./actors/

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

# Run each fuzz target for FUZZTIME (go test -fuzz takes one target at a time).
fuzz:
	@for pkg in $$($(GO) list $(PKGS)); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

dev:
	$(GO) run ./cmd/macula-node dev

clean:
	rm -rf bin

# The churn test with 20 macula-node run processes on loopback: one stopped
# cleanly, one killed, calls from a third; it prints the failures and
# latencies per second (docs/churn.md). CI runs it after the suite, alone,
# so that 20 nodes have the machine to themselves.
churn:
	MACULA_CHURN_NODES=20 $(GO) test -count=1 -run '^TestChurn20EndToEnd$$' -v -timeout 5m ./cmd/macula-node
