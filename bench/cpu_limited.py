"""Run a benchmark with only part of this machine's CPU: a cgroup CPU quota.

    .venv/bin/python bench/cpu_limited.py --cpus 1.2 -- .venv/bin/python bench/host.py

Why: this machine is shared, and how much of its two cores a run gets depends on what
its other tenants do at that moment. A target that must hold on a busy machine is
checked here by taking the CPU away on purpose: the command and every process it
starts (the host, its children, the simulated terminals) get `--cpus` CPUs between
them, in slices of `--period-ms`, however idle the machine is. The command's output
passes through unchanged (bench/host.py still ends with its JSON line), and so does its
exit status (128 + the signal for a command killed by one).

Needs root and a writable cgroup file system: cgroup v2 (`cpu.max`; the new group sits
under the root group, so the command also leaves its current group's memory and pids
limits) or the v1 `cpu` controller (`cpu.cfs_quota_us`). Where no group can be made,
or the limit asked for cannot be set as asked, it says so and exits 2: it never runs
the command with a different limit, or none. Ctrl-C or SIGTERM is passed on to the
command, which is waited for (bench/host.py then stops its host and removes its files);
whatever the command left running in the group is killed before the group is removed.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

V2 = Path("/sys/fs/cgroup")
V1 = Path("/sys/fs/cgroup/cpu")
MIN_QUOTA_US = 1000  # the kernel's smallest quota


def make_group(name: str, cpus: float, period_us: int) -> Path:
    """A new cgroup with a quota of `cpus` CPUs per period; raises OSError if none can be made
    (nothing is left behind then)."""
    quota = int(cpus * period_us)
    controllers = V2 / "cgroup.controllers"
    if controllers.is_file() and "cpu" in controllers.read_text().split():
        (V2 / "cgroup.subtree_control").write_text("+cpu")
        group, settings = V2 / name, {"cpu.max": f"{quota} {period_us}"}
    elif (V1 / "cpu.cfs_quota_us").is_file():
        group, settings = V1 / name, {"cpu.cfs_period_us": str(period_us), "cpu.cfs_quota_us": str(quota)}
    else:
        raise OSError("no cgroup CPU controller here (neither cgroup v2 cpu.max nor v1 cpu)")
    group.mkdir()
    try:
        for file, value in settings.items():  # v1: the period first, so the quota is read against it
            (group / file).write_text(value)
    except OSError:
        group.rmdir()
        raise
    return group


def remove_group(group: Path, wait_s: float = 10.0) -> None:
    """Kill what is still in the group (a command's straggler), then remove it."""
    procs = group / "cgroup.procs"
    deadline = time.monotonic() + wait_s
    while (pids := procs.read_text().split()) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    group.rmdir()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpus", type=float, default=1.2, help="CPUs the command gets in all (default 1.2 of 2)")
    ap.add_argument("--period-ms", type=float, default=10.0,
                    help="quota period, 1 to 1000 ms: short, so a process is held back briefly and often")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command")
    a = ap.parse_args()
    command = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not command:
        ap.error("give the command after --")
    if not 1.0 <= a.period_ms <= 1000.0:
        ap.error("--period-ms must be from 1 to 1000")
    period_us = int(a.period_ms * 1000)
    if a.cpus * period_us < MIN_QUOTA_US:
        ap.error(f"--cpus {a.cpus:g} is under the smallest quota the kernel takes ({MIN_QUOTA_US} us a period)")
    if a.cpus >= len(os.sched_getaffinity(0)):
        ap.error(f"--cpus {a.cpus:g} would not limit anything: this process may use {len(os.sched_getaffinity(0))}")
    try:
        group = make_group(f"bench-cpu-limited-{os.getpid()}", a.cpus, period_us)
    except OSError as exc:
        print(f"cpu_limited: cannot limit the CPU here: {exc}", file=sys.stderr)
        return 2
    procs = group / "cgroup.procs"
    print(f"cpu_limited: {a.cpus:g} CPUs (of {os.cpu_count()}) in slices of {a.period_ms:g} ms for: {' '.join(command)}",
          flush=True)
    try:
        try:
            # the child joins the group before it runs the command: all it starts is counted too
            child = subprocess.Popen(command, preexec_fn=lambda: procs.write_text(str(os.getpid())))
        except (OSError, subprocess.SubprocessError) as exc:
            print(f"cpu_limited: the command did not start in the group: {exc}", file=sys.stderr)
            return 2
        for sig in (signal.SIGINT, signal.SIGTERM):  # passed on; the command decides how to stop
            signal.signal(sig, lambda signum, _frame: child.send_signal(signum))
        status = child.wait()
        return 128 - status if status < 0 else status
    finally:
        try:
            remove_group(group)
        except OSError as exc:
            print(f"cpu_limited: left {group}: {exc}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
