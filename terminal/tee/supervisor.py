"""The terminal app's side of the TEE process: spawn it, watch it, restart it when it
dies, stop it on exit.

At every spawn the supervisor makes a fresh socketpair (one end inherited by the TEE
as fd N, the other kept here) and a fresh 32-byte session token, written to the TEE's
stdin and then closed: the token is in no argv, environment or file. A restart after a
crash means a new channel and a new token; sessions on the old one are gone, and
clients open a new session with `credentials`.
"""
from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from .api import Credentials, ErrorCode, LoginMethod, TeeError
from .wire import recv_frame

TOKEN_LEN = 32
_ROOT = Path(__file__).resolve().parents[2]  # holds the `terminal` package


class TeeSupervisor:
    """`with TeeSupervisor(state_dir) as tee:` starts the TEE and stops it at the end."""

    def __init__(self, state_dir: str | os.PathLike, reader: str | None = None, kernel_config: str | None = None,
                 ca_keys: str | os.PathLike | None = None, env: dict[str, str] | None = None, max_restarts: int = 5,
                 start_timeout: float = 30.0, location: str | None = None):
        self.state_dir = Path(state_dir)
        self.reader = reader
        self.kernel_config = kernel_config
        self.ca_keys = ca_keys
        self.location = location  # a location spec the TEE opens itself (hardware/location/spec.py)
        self.env = dict(os.environ if env is None else env)
        self.max_restarts = max_restarts
        self.start_timeout = start_timeout
        self.restarts = 0
        self.measurement = b""
        self._cond = threading.Condition()
        self._proc: subprocess.Popen | None = None
        self._sock: socket.socket | None = None
        self._token = b""
        self._failure = ""
        self._stopping = False
        self._watchdog: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------
    def start(self) -> "TeeSupervisor":
        if self._proc is not None:
            raise RuntimeError("this supervisor has already started its TEE")
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._spawn()
        self._watchdog = threading.Thread(target=self._watch, name="tee-watchdog", daemon=True)
        self._watchdog.start()
        atexit.register(self.stop)
        return self

    def _command(self, fd: int) -> list[str]:
        # the TEE runs in its state directory: every path it is given is absolute, or a relative
        # one (the demo's var/demo/...) would be looked up under that directory and missed
        from hardware.location.spec import anchored

        cmd = [sys.executable, "-m", "terminal.tee.server", "--fd", str(fd), "--state",
               os.path.abspath(self.state_dir)]
        if self.reader:
            cmd += ["--reader", self.reader]
        if self.kernel_config:
            cmd += ["--kernel-config", os.path.abspath(self.kernel_config)]
        if self.ca_keys:
            cmd += ["--ca-keys", os.path.abspath(self.ca_keys)]
        if self.location:
            cmd += ["--location", anchored(self.location)]
        return cmd

    def _spawn(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        token = os.urandom(TOKEN_LEN)
        env = dict(self.env, PYTHONPATH=os.pathsep.join(p for p in (str(_ROOT), self.env.get("PYTHONPATH")) if p))
        with open(self.state_dir / "tee.log", "ab") as log:
            proc = subprocess.Popen(self._command(theirs.fileno()), pass_fds=[theirs.fileno()], stdin=subprocess.PIPE,
                                    stdout=subprocess.DEVNULL, stderr=log, env=env, cwd=str(self.state_dir),
                                    start_new_session=True)  # a Ctrl-C for the app is not one for the TEE
        theirs.close()  # only the child holds it now: its death closes our end
        try:
            proc.stdin.write(token)
            proc.stdin.close()
            ours.settimeout(self.start_timeout)
            ready = recv_frame(ours)
            ours.settimeout(None)
            if not (isinstance(ready, dict) and ready.get("code") == 0 and isinstance(ready.get("result"), dict)):
                raise TeeError(ErrorCode.COMMUNICATION, "the TEE did not announce itself")
        except (OSError, EOFError, TeeError, ValueError) as exc:
            ours.close()
            _end(proc, 0)
            raise TeeError(ErrorCode.TARGET_DEAD,
                           f"the TEE failed to start ({exc}); see {self.state_dir / 'tee.log'}") from None
        with self._cond:
            if self._stopping:  # stop() came while this (re)spawn was under way
                _hang_up(ours)
                _end(proc)
                raise TeeError(ErrorCode.TARGET_DEAD, "the TEE supervisor is stopped")
            self._proc, self._sock, self._token = proc, ours, token
            self.measurement = ready["result"].get("measurement", b"")
            self._cond.notify_all()

    def _watch(self) -> None:
        """Restart the TEE when it dies, up to `max_restarts` times."""
        while True:
            proc = self._proc
            proc.wait()
            with self._cond:
                if self._stopping:
                    return
                _hang_up(self._sock)
                self._sock = None
            if self.restarts >= self.max_restarts:
                with self._cond:
                    self._failure = f"the TEE died {self.restarts + 1} times; not restarting it"
                    self._cond.notify_all()
                return
            self.restarts += 1
            time.sleep(min(0.1 * self.restarts, 1.0))  # a crash loop must not spin
            try:
                self._spawn()
            except TeeError as exc:
                with self._cond:
                    self._failure = exc.detail
                    self._cond.notify_all()
                return

    def stop(self, timeout: float = 5.0) -> None:
        """Close the channel (the TEE exits on EOF), then terminate or kill if it lingers."""
        with self._cond:
            self._stopping = True
            sock, self._sock = self._sock, None
            proc = self._proc
            self._cond.notify_all()
        _hang_up(sock)
        if proc is not None:
            _end(proc, timeout)
        if self._watchdog is not None and self._watchdog is not threading.current_thread():
            self._watchdog.join(timeout)
        atexit.unregister(self.stop)

    def __enter__(self) -> "TeeSupervisor":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- what clients need ----------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def credentials(self) -> Credentials:
        """What opens a session on the current TEE process (changes at every restart)."""
        self.channel()
        return Credentials(LoginMethod.APPLICATION, self._token)

    def channel(self, timeout: float | None = None) -> socket.socket:
        """The live channel to the TEE, waiting through a restart in progress."""
        deadline = time.monotonic() + (self.start_timeout if timeout is None else timeout)
        with self._cond:
            while self._sock is None or not _alive(self._sock):  # dead: the watchdog replaces it
                if self._stopping:
                    raise TeeError(ErrorCode.TARGET_DEAD, "the TEE supervisor is stopped")
                if self._failure:
                    raise TeeError(ErrorCode.TARGET_DEAD, self._failure)
                left = deadline - time.monotonic()
                if left <= 0 or self._proc is None:
                    raise TeeError(ErrorCode.TARGET_DEAD, "the TEE is not running")
                self._cond.wait(left)
            return self._sock


def _alive(sock: socket.socket) -> bool:
    """False once the TEE's end is closed (it died), even before the watchdog noticed."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True  # open, nothing to read
    except OSError:
        return False


def _hang_up(sock: socket.socket | None) -> None:
    """Shut the channel down without closing it: a client thread may still hold it, and
    a closed descriptor number could be reused by the next channel under its feet.
    The descriptor is closed when the last holder lets go of the socket object."""
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _end(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    """Wait `timeout` for the TEE to leave by itself, then terminate, then kill."""
    if proc.poll() is None:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
