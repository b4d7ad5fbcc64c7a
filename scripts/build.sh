#!/usr/bin/env bash
# Builds the macula-node binary, saying what it is doing: a first build
# compiles a few hundred packages (libp2p, quic-go, ...) and takes a minute or
# two, which a silent `go build` or `go run` spends without a word.
#
#   scripts/build.sh [OUT]     (default bin/macula-node; make build runs it)
#
# On a terminal one line counts the packages as they are compiled; elsewhere a
# line every 50 packages. Errors, and go's own lines ("go: downloading ..."),
# are printed as they come.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-bin/macula-node}
pkg=./cmd/macula-node
# A static binary, without cgo: Go's own resolver and user lookup do what a
# node needs, and a node process then maps no C library (1.3 MB of RSS per
# process; docs/benchmarks.md). CGO_ENABLED=1 in the environment overrides.
export CGO_ENABLED=${CGO_ENABLED:-0}

total=$(go list -deps "$pkg" 2>/dev/null | wc -l)
echo "building $out: up to $total packages to compile (a first build takes minutes; later ones seconds)" >&2
start=$SECONDS
tty=0
[ -t 2 ] && tty=1
n=0
# lastpipe: the loop runs in this shell, so n is known after it.
shopt -s lastpipe
go build -v -o "$out" "$pkg" 2>&1 | while IFS= read -r line; do
  if [[ $line =~ ^[A-Za-z0-9._~+/-]+$ ]]; then # an import path: one package compiled
    n=$((n + 1))
    if [ "$tty" = 1 ]; then
      printf '\r\033[K  compiled %d/%d  %s' "$n" "$total" "${line:0:60}" >&2
    elif [ $((n % 50)) = 0 ]; then
      echo "  compiled $n/$total" >&2
    fi
  else
    [ "$tty" = 1 ] && [ "$n" -gt 0 ] && printf '\r\033[K' >&2
    echo "$line" >&2
  fi
done
rc=${PIPESTATUS[0]}
[ "$tty" = 1 ] && [ "$n" -gt 0 ] && printf '\r\033[K' >&2
if [ "$rc" != 0 ]; then
  echo "build failed" >&2
  exit "$rc"
fi
echo "built $out ($n packages compiled, $((SECONDS - start)) s)" >&2
