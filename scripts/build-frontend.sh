#!/usr/bin/env bash
# Install the browser's npm dependencies (at build time, from package-lock.json)
# and copy what the page loads into static/vendor/, so nothing comes from a CDN.
set -euo pipefail
cd "$(dirname "$0")/../frontend"

if [ ! -f node_modules/.package-lock.json ] || ! cmp -s package-lock.json node_modules/.package-lock.json 2>/dev/null; then
  echo "[setup] npm ci (frontend)"
  npm ci --no-audit --no-fund --loglevel=error
fi
mkdir -p ../static/vendor/daily-js
cp node_modules/@daily-co/daily-js/dist/daily-esm.js ../static/vendor/daily-js/daily-esm.js
mkdir -p ../static/vendor/chart.js
cp node_modules/chart.js/dist/chart.umd.min.js ../static/vendor/chart.js/chart.umd.min.js
