#!/usr/bin/env bash
# Runs every fuzz target of the module for FUZZTIME each (go test -fuzz takes
# one target at a time) and prints, per target, the executions and the
# result; a crash leaves its input in the package's testdata/fuzz (a
# regression case once committed) and makes the run fail after all targets.
#
#   scripts/fuzz.sh [FUZZTIME]      (default 10s; make fuzz FUZZTIME=30s)
set -uo pipefail
cd "$(dirname "$0")/.."
fuzztime=${1:-10s}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
failed=0
total=0
printf '%-44s %-24s %12s  %s\n' PACKAGE TARGET EXECS RESULT
for pkg in $(go list ./...); do
	for f in $(go test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz'); do
		total=$((total + 1))
		if go test -run '^$' -fuzz "^$f\$" -fuzztime "$fuzztime" "$pkg" >"$log" 2>&1; then
			result=ok
		else
			result="FAILED (see below)"
			failed=$((failed + 1))
		fi
		# The last progress line says how many inputs ran.
		execs=$(grep -o 'execs: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
		printf '%-44s %-24s %12s  %s\n' "${pkg#github.com/macula-io/macula/}" "$f" "${execs:-?}" "$result"
		if [ "$result" != ok ]; then
			sed 's/^/    /' "$log" | tail -40
		fi
	done
done
echo "$total fuzz targets, $fuzztime each: $failed failed"
[ "$failed" -eq 0 ]
