#!/usr/bin/env bash
# Runs every fuzz target of the module for FUZZTIME each and prints, per
# target, the executions and the result; a crash leaves its input in the
# package's testdata/fuzz (a regression case once committed) and makes the
# run fail after all targets.
#
#   scripts/fuzz.sh [FUZZTIME]      (default 10s; make fuzz FUZZTIME=30s; or a
#                                    count of inputs: 2000x, as make test does)
#
# `go test -fuzz` takes one target at a time and builds its package's
# instrumented test binary each time; this builds it once per package
# (`go test -c -fuzz`) and runs every target of the package from it, in the
# package's directory (its seed corpus in testdata/fuzz), with the go
# command's fuzz cache (new inputs found before are fuzzed from again).
set -uo pipefail
cd "$(dirname "$0")/.."
fuzztime=${1:-10s}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cache="$(go env GOCACHE)/fuzz"
module=$(go list -m)
failed=0
total=0
start=$SECONDS
printf '%-44s %-24s %12s  %s\n' PACKAGE TARGET EXECS RESULT
for dir in $(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do
	pkg=${dir#./}
	bin="$work/${pkg//\//_}.test"
	if ! go test -c -fuzz=. -o "$bin" "./$pkg" >"$work/build.log" 2>&1; then
		printf '%-44s %-24s %12s  %s\n' "$pkg" "(build)" - FAILED
		sed 's/^/    /' "$work/build.log" | tail -40
		failed=$((failed + 1))
		continue
	fi
	for f in $(grep -h '^func Fuzz' "$dir"/*_test.go | sed 's/^func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do
		total=$((total + 1))
		log="$work/$f.log"
		if (cd "$dir" && "$bin" -test.run='^$' -test.fuzz="^$f\$" -test.fuzztime="$fuzztime" \
			-test.fuzzcachedir="$cache/$module/$pkg" >"$log" 2>&1); then
			result=ok
		else
			result="FAILED (see below)"
			failed=$((failed + 1))
		fi
		# The last progress line says how many inputs ran.
		execs=$(grep -o 'execs: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
		printf '%-44s %-24s %12s  %s\n' "$pkg" "$f" "${execs:-?}" "$result"
		if [ "$result" != ok ]; then
			sed 's/^/    /' "$log" | tail -40
		fi
	done
done
echo "$total fuzz targets, $fuzztime each, $((SECONDS - start)) s in all: $failed failed"
[ "$failed" -eq 0 ]
