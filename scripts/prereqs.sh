#!/usr/bin/env bash
# What the whole test suite needs, checked; with --install, installed.
#
#   scripts/prereqs.sh            check; install only into this tree (npm ci of
#                                 the UCAN interop test's package), say what is missing
#   scripts/prereqs.sh --install  also install the system packages (apt-get, as root)
#
# make test runs the first, make deps (and .ci/run) the second. Without a
# prerequisite the tests that need it are skipped, and say so: this script
# before the run, internal/testsum after it. Exit 1 only when the suite cannot
# run at all (no go, or no gcc for the race detector).
set -uo pipefail
cd "$(dirname "$0")/.."

install=0
[ "${1:-}" = "--install" ] && install=1

# tool -> Debian package, and who needs it.
declare -A pkg=(
  [gcc]=gcc [make]=make [node]=nodejs [npm]=npm
  [nft]=nftables [turnserver]=coturn [stun]=stun-client
  [ip]=iproute2 [ss]=iproute2 [sysctl]=procps [setsid]=util-linux
  [chromium]=chromium
  [systemd-analyze]=systemd
)
declare -A need=(
  [gcc]="the race detector (cgo): make test cannot run without it"
  [make]="the Makefile"
  [node]="ucan TestInteropIsoUCAN (node >= 20)"
  [npm]="ucan TestInteropIsoUCAN (installs iso-ucan)"
  [nft]="the NAT lab (natlab: TestNATMatrix, TestNATTypes, TestHairpinReach, TestLabCleanup)"
  [turnserver]="nat TestCoturn and the NAT lab (coturn is the lab's STUN server)"
  [stun]="natlab TestNATTypes's second opinion (stun-client)"
  [ip]="the NAT lab" [ss]="the NAT lab" [sysctl]="the NAT lab" [setsid]="the NAT lab"
  [chromium]="cmd/macula-node TestDashboardInBrowser (the dashboard in headless Chromium)"
  [systemd-analyze]="cmd/macula-node TestDeploymentDocs (verifies the systemd unit of docs/deployment.md)"
)
tools=(gcc make node npm nft turnserver stun ip ss sysctl setsid chromium systemd-analyze)

missing() {
  local out=()
  for t in "${tools[@]}"; do command -v "$t" >/dev/null 2>&1 || out+=("$t"); done
  echo "${out[@]:-}"
}

if ! command -v go >/dev/null 2>&1; then
  echo "prereqs: go is not on PATH: install Go 1.26 (https://go.dev/dl/)" >&2
  exit 1
fi

miss=$(missing)
if [ "$install" = 1 ] && [ -n "$miss" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    pkgs=$(for t in $miss; do echo "${pkg[$t]}"; done | sort -u | tr '\n' ' ')
    echo "prereqs: apt-get install $pkgs"
    apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $pkgs >/dev/null ||
      echo "prereqs: apt-get failed; the tests that need $pkgs will be skipped" >&2
    miss=$(missing)
  else
    echo "prereqs: cannot install system packages here (needs root and apt-get): $miss" >&2
  fi
fi

# The UCAN interop test's JavaScript package: installed into the tree, like
# Go modules into the module cache, whenever its lock file is newer.
interop=ucan/testdata/interop
if command -v npm >/dev/null 2>&1 && command -v node >/dev/null 2>&1; then
  if [ ! -f "$interop/node_modules/.package-lock.json" ] || [ "$interop/package-lock.json" -nt "$interop/node_modules/.package-lock.json" ]; then
    echo "prereqs: npm ci --prefix $interop"
    npm ci --prefix "$interop" --no-audit --no-fund --loglevel=error >/dev/null ||
      echo "prereqs: npm ci failed; ucan TestInteropIsoUCAN will be skipped" >&2
  fi
fi

skips=()
for t in $miss; do skips+=("$t (apt-get install ${pkg[$t]}): ${need[$t]}"); done
if [ "$(id -u)" != 0 ]; then
  skips+=("root: the NAT lab builds network namespaces (natlab: TestNATMatrix, TestNATTypes, TestHairpinReach, TestLabCleanup)")
fi

if [ ${#skips[@]} -eq 0 ]; then
  echo "prereqs: everything the test suite needs is here"
  exit 0
fi
bar=$(printf '!%.0s' $(seq 78))
echo "$bar"
echo "!! Missing here, so the tests that need it will be SKIPPED (CI runs them):"
for s in "${skips[@]}"; do echo "!!   $s"; done
if [ "$(id -u)" != 0 ]; then
  echo "!! 'sudo make deps' installs the packages; 'sudo make test' runs the NAT lab too."
else
  echo "!! 'make deps' installs them (apt-get)."
fi
echo "$bar"
command -v gcc >/dev/null 2>&1 || exit 1
exit 0
