#!/usr/bin/env bash
# Install everything the tests need, then run the whole suite.
# pytest's exit code 5 ("no tests ran") counts as a failure here.
set -uo pipefail
cd "$(dirname "$0")/.."

bash scripts/bootstrap.sh || exit 1
# A temporary folder of this run's own: pytest's shared default (/tmp/pytest-of-$USER) keeps
# only the last three runs, so a second suite started beside this one would delete the
# folders (databases, server and worker logs) this one is still using.
basetemp=$(mktemp -d -t voice-tests.XXXXXX)
.venv/bin/python -m pytest --basetemp "$basetemp" "$@"
status=$?
if [ "$status" -eq 0 ]; then
  rm -rf "$basetemp"
else
  echo "[test] logs and databases of this run are in $basetemp" >&2
fi
if [ "$status" -eq 5 ]; then
  echo "[test] pytest ran no tests: failing" >&2
  exit 1
fi
exit "$status"
