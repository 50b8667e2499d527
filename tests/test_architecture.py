"""The architecture's rules, as import-linter contracts (.importlinter): voicesessions and
assistants never import voicebot, and no app has an import cycle. Function-level and
type-checking imports count, so an import cannot dodge a rule by hiding in a function."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.livesrv import ROOT


def test_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--config", str(ROOT / ".importlinter"), "--no-cache"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 kept, 0 broken" in done.stdout
