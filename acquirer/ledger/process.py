"""The ledger's group commits applied in a process of their own.

Why: the host's event loop and the ledger writer thread share one interpreter lock.
Every SQLite statement releases it and must win it back from an event loop that is
busy with the next requests, so in one process a group commit of ten statements per
sale spent about three times its CPU waiting for the lock (`bench/host_steps.py`
measured 1,140 us of wall time for 314 us of CPU per unit): the writer thread, not
the CPU, capped the host. Here the statements run in a child process with its own
interpreter and its own core; the host's writer thread sends a whole group and waits
once for the answer.

Nothing about durability changes: the child COMMITs with synchronous=FULL before it
answers, and the host releases no response before that answer. `SQLiteLedger` keeps
its caches from the answers (`_remember`), as before. If the child dies, the group in
flight is answered "ledger unavailable" (as a failed COMMIT is: its units were
refused or are unknown, and the terminals reverse) and the next group starts a new
child; a host that dies closes the child's stdin, and the child exits after the group
it is applying.

Wire (stdin/stdout of the child, acquirer.childproc): request ("apply", at, units) ->
the list of results (Receipt or LedgerError), or ("close",).
"""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
from typing import Sequence

from acquirer.childproc import PROJECT_ROOT, command, receive, send

from .errors import LedgerUnavailable
from .model import CommitUnit


class LedgerProcess:
    """The host's side: applies groups in the child, starting one when there is none."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self.started = 0  # children started (1 unless one died)

    def _child(self) -> subprocess.Popen:
        if self._proc is None or self._proc.poll() is not None:
            argv, env = command("acquirer.ledger.process", self.path)
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=PROJECT_ROOT)
            try:
                if receive(proc.stdout) != ("ready",):  # the ledger is open there
                    raise EOFError("ledger process did not say it was ready")
            except EOFError:
                proc.kill()
                proc.wait()
                raise
            self._proc = proc
            self.started += 1
        return self._proc

    def start(self) -> None:
        """Start the child now (the host does, before it listens), not at the first commit."""
        with self._lock:
            try:
                self._child()
            except (EOFError, OSError) as exc:
                raise LedgerUnavailable(f"ledger process did not start: {exc}") from None

    def apply(self, units: Sequence[CommitUnit], at: float) -> list:
        """Apply and COMMIT one group in the child; its results, one per unit."""
        with self._lock:
            proc = self._child()
            try:
                send(proc.stdin, ("apply", at, list(units)))
                return receive(proc.stdout)
            except (EOFError, OSError, pickle.PickleError) as exc:
                self._discard()
                raise LedgerUnavailable(f"ledger process failed: {exc}") from None

    def _discard(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is None:
                return
            try:
                send(proc.stdin, ("close",))
                proc.stdin.close()
            except OSError:
                pass
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main(path: str) -> int:
    from .sqlite import SQLiteLedger

    ledger = SQLiteLedger(path)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    send(stdout, ("ready",))
    try:
        while True:
            try:
                request = receive(stdin)
            except EOFError:  # the host is gone
                return 0
            if request[0] == "close":
                return 0
            _, at, units = request
            send(stdout, ledger.commit_many(units, at=at))
    finally:
        ledger.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
