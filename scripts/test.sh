#!/usr/bin/env bash
# Install everything the tests need, then run the whole suite.
# pytest's exit code 5 ("no tests ran") counts as a failure here.
set -uo pipefail
cd "$(dirname "$0")/.."

bash scripts/bootstrap.sh || exit 1
.venv/bin/python -m pytest "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "[test] pytest ran no tests: failing" >&2
  exit 1
fi
exit "$status"
