"""Run a benchmark with only part of this machine's CPU: a cgroup CPU quota.

    .venv/bin/python bench/cpu_limited.py --cpus 1.2 -- .venv/bin/python bench/host.py

Why: this machine is shared, and how much of its two cores a run gets depends on what
its other tenants do at that moment. A target that must hold on a busy machine is
checked here by taking the CPU away on purpose: the command and every process it
starts (the host, its children, the simulated terminals) get `--cpus` CPUs between
them, in slices of `--period-ms`, however idle the machine is. The command's output
passes through unchanged (bench/host.py still ends with its JSON line).

Needs root and a writable cgroup file system: cgroup v2 (`cpu.max`) or the v1 `cpu`
controller (`cpu.cfs_quota_us`). Without them it says so and exits 2; it never runs
the command unlimited.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

V2 = Path("/sys/fs/cgroup")
V1 = Path("/sys/fs/cgroup/cpu")


def make_group(name: str, cpus: float, period_us: int) -> Path:
    """A new cgroup with a quota of `cpus` CPUs per period; raises OSError if none can be made."""
    quota = max(1000, int(cpus * period_us))
    controllers = V2 / "cgroup.controllers"
    if controllers.is_file() and "cpu" in controllers.read_text().split():
        (V2 / "cgroup.subtree_control").write_text("+cpu")
        group = V2 / name
        group.mkdir()
        (group / "cpu.max").write_text(f"{quota} {period_us}")
        return group
    if (V1 / "cpu.cfs_quota_us").is_file():
        group = V1 / name
        group.mkdir()
        (group / "cpu.cfs_period_us").write_text(str(period_us))
        (group / "cpu.cfs_quota_us").write_text(str(quota))
        return group
    raise OSError("no cgroup CPU controller here (neither cgroup v2 cpu.max nor v1 cpu)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpus", type=float, default=1.2, help="CPUs the command gets in all (default 1.2 of 2)")
    ap.add_argument("--period-ms", type=float, default=10.0,
                    help="quota period: short, so a process is held back briefly and often, not for long")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command")
    a = ap.parse_args()
    command = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not command or a.cpus <= 0:
        ap.error("give --cpus > 0 and a command after --")
    try:
        group = make_group(f"bench-cpu-limited-{os.getpid()}", a.cpus, int(a.period_ms * 1000))
    except OSError as exc:
        print(f"cpu_limited: cannot limit the CPU here: {exc}", file=sys.stderr)
        return 2
    procs = group / "cgroup.procs"
    print(f"cpu_limited: {a.cpus:g} CPUs (of {os.cpu_count()}) in slices of {a.period_ms:g} ms for: {' '.join(command)}",
          flush=True)
    try:
        # the child joins the group before it runs the command: all it starts is counted too
        return subprocess.call(command, preexec_fn=lambda: procs.write_text(str(os.getpid())))
    finally:
        try:
            group.rmdir()  # empty once the command and all it started have exited
        except OSError as exc:
            print(f"cpu_limited: left {group}: {exc}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
