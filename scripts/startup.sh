#!/usr/bin/env bash
# Measures the start-up time of `macula-node dev --nodes 3` (until its table
# is printed and every node sees the others) and of one `macula-node run`
# node (until node.json is written, i.e. node and API are up), and the
# resident memory of an idle run node after 5 s. Loopback only.
# Usage: scripts/startup.sh [runs]   (builds bin/macula-node first)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
scripts/build.sh bin/macula-node
bin=$PWD/bin/macula-node
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

echo "dev --nodes 3: ms until the table is printed"
for i in $(seq "$runs"); do
  out=$(mktemp); t0=$(date +%s%N)
  "$bin" dev --nodes 3 >"$out" 2>&1 & pid=$!
  until grep -q "Press Ctrl-C" "$out"; do sleep 0.005; done
  echo "  $(ms "$t0")"
  kill -INT $pid; wait $pid || true; rm -f "$out"
done

echo "run: ms until node.json is written"
for i in $(seq "$runs"); do
  dir=$(mktemp -d); t0=$(date +%s%N)
  "$bin" run --realm io.acme.bench --name n1 --data-dir "$dir" --listen /ip4/127.0.0.1/udp/0/quic-v1 \
    --api 127.0.0.1:0 --http3 127.0.0.1:0 2>/dev/null & pid=$!
  until [ -s "$dir/node.json" ]; do sleep 0.002; done
  echo "  $(ms "$t0") (fresh data dir: a new key each time)"
  if [ "$i" = "$runs" ]; then
    sleep 5
    echo "idle RSS after 5 s: $(awk '/VmRSS/ {print $2, $3}' /proc/$pid/status)"
  fi
  kill -TERM $pid; wait $pid || true; rm -rf "$dir"
done
