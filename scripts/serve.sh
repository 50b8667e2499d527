#!/usr/bin/env bash
# Install, migrate, create the demo data and serve on the embedded default:
# Daphne on http://127.0.0.1:8000, the teardown sweeper and one bot worker.
# Ctrl-C stops all three.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/bootstrap.sh
PY=.venv/bin/python
$PY manage.py migrate --noinput
$PY manage.py seed_demo
$PY manage.py collectstatic --noinput -v0

HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-8000}"
$PY manage.py runteardown &
sweeper=$!
$PY manage.py runbotworker &
worker=$!
trap 'kill $sweeper $worker 2>/dev/null || true' EXIT INT TERM
echo "[VoiceSession] serving on http://$HOST:$PORT (sign in as demo / voice-demo; admin / voice-demo)"
# Access lines come from the app's logging (voiceproject/accesslog.py: plain or JSON, by
# LOG_FORMAT), so Daphne's own plain-text access stream is turned off.
.venv/bin/daphne --access-log /dev/null -b "$HOST" -p "$PORT" voiceproject.asgi:application
