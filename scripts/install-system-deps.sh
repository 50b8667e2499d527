#!/usr/bin/env bash
# Debian packages the project needs beyond Python itself. Safe to run again.
#   espeak-ng, sox           make and measure test speech (bot tests, benchmarks)
#   chromium, chromium-driver the browser tests drive Debian's Chromium with Playwright
#   iproute2, util-linux      the simulated cluster's namespaces and links (tests/cluster.py),
#                             runuser for its PostgreSQL, taskset for bench_capacity.py
#   postgresql, redis-server, redis-tools, curl
#                             the cluster's db host runs its own (initdb, pg_ctl's postgres,
#                             redis-server) and the harness checks them with redis-cli and curl
set -euo pipefail

PACKAGES=(python3-venv espeak-ng sox chromium chromium-driver iproute2 util-linux postgresql redis-server
          redis-tools curl)

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "[setup] system packages present: ${PACKAGES[*]}"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "[setup] apt-get install ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
