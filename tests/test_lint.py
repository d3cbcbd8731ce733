"""The code base passes ruff's checks (pyproject.toml, [tool.ruff]): an unused import, an
undefined name or a syntax error fails the suite rather than waiting for a reader to find it.
ruff is pinned in the test extras, so every machine checks with the same rules."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing_to_fix():
    ruff = Path(sys.executable).with_name("ruff")  # installed beside the interpreter by the test extras
    result = subprocess.run([str(ruff), "check", "--no-cache", "--output-format", "concise", str(ROOT)],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All checks passed" in result.stdout
