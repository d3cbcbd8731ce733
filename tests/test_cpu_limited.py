"""bench/cpu_limited.py refuses a limit it cannot set as asked, before it makes any cgroup:
the command does not run, with a limit other than the one asked or none."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("args, said", [
    (["--cpus", "100000"], "would not limit anything"),
    (["--cpus", "0.05"], "under the smallest quota"),
    (["--period-ms", "0.5"], "--period-ms must be from 1 to 1000"),
    (["--period-ms", "2000"], "--period-ms must be from 1 to 1000"),
    ([], "give the command after --"),
])
def test_a_limit_that_cannot_be_set_as_asked_runs_nothing(tmp_path, args, said):
    ran = tmp_path / "ran"
    command = ["--", sys.executable, "-c", f"open({str(ran)!r}, 'w')"] if args else []
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "cpu_limited.py"), *args, *command],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert said in result.stderr
    assert not ran.exists()
