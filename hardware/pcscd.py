"""A private pcscd with its own vpcd virtual reader, for tests, benches and demos.

Two ordinary pcscd instances collide on /run/pcscd/pcscd.comm, and pcsc-lite 1.9.9
honours PCSCLITE_CSOCK_NAME only in the client. So this launcher uses systemd-style
socket activation: it binds a Unix socket at a short private path, hands it to pcscd
as fd 3 with LISTEN_FDS=1 and LISTEN_PID=<pcscd's pid>, and runs
`pcscd --foreground --auto-exit -c <private conf dir>` whose vpcd file names a free
port pair. Clients of this process find it through PCSCLITE_CSOCK_NAME, which
libpcsclite reads once per process: start the launcher before the first PC/SC call.
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from hardware.errors import PcscdLaunchError, client_socket_in_use

VPCD_DRIVER = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"
VPCD_FRIENDLY_NAME = "Virtual PCD"
VPCD_SLOTS = 2  # Debian builds vpcd with two slots: ports P and P+1
SUN_PATH_MAX = 107  # sockaddr_un.sun_path is 108 bytes with the trailing NUL
PORT_RANGE = (20000, 32000)
WORK_DIR_PREFIX = "pcscd-"
OWNER_FILE = "launcher.pid"  # lets a later launcher tell a dead launcher's leftovers
_DRIVER_FAILED = "Could not initialize connection to virtual ICC"  # ifd-vpcd.c, bind failed  # below Linux's ephemeral range, so no outgoing socket takes it

# The child sets LISTEN_PID to its own pid, then execs pcscd, which keeps that pid.
_SOCKET_ACTIVATION_EXEC = (
    "import os, sys\n"
    "fd = int(sys.argv[1])\n"
    "if fd != 3:\n"
    "    os.dup2(fd, 3)\n"
    "    os.close(fd)\n"
    "os.set_inheritable(3, True)\n"
    "os.environ['LISTEN_FDS'] = '1'\n"
    "os.environ['LISTEN_PID'] = str(os.getpid())\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


def vpcd_reader_conf(port: int, friendly_name: str = VPCD_FRIENDLY_NAME, driver: str = VPCD_DRIVER) -> str:
    """A reader.conf.d entry for vpcd on `port` (slot 0; slot 1 is port + 1)."""
    return (
        f'FRIENDLYNAME "{friendly_name}"\n'
        f"DEVICENAME   /dev/null:{port}\n"
        f"LIBPATH      {driver}\n"
        f"CHANNELID    {port}\n"
    )


def _port_pair_free(port: int) -> bool:
    for p in range(port, port + VPCD_SLOTS):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("0.0.0.0", p))  # vpcd listens on every address
            except OSError:
                return False
    return True


def free_port_pair(rng: random.Random | None = None) -> int:
    """A port P with P and P+1 free for vpcd's two slots."""
    rng = rng or random.Random()
    for _ in range(200):
        port = rng.randrange(*PORT_RANGE)
        if _port_pair_free(port):
            return port
    raise PcscdLaunchError(f"no free port pair for vpcd in {PORT_RANGE[0]}-{PORT_RANGE[1]}")


def _listening_socket_inodes(port: int) -> set[str]:
    """Inodes of the sockets listening on TCP `port`, read from /proc (no connection
    is made: vpcd would take one for a card)."""
    wanted = f":{port:04X}"
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[1].endswith(wanted) and fields[3] == "0A":  # 0A = LISTEN
                        inodes.add(fields[9])
        except FileNotFoundError:
            continue
    return inodes


def _socket_inodes_of(pid: int) -> set[str]:
    inodes = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_work_dirs(base_dir: str) -> None:
    """Delete the work dirs of launchers that died without `stop()` (e.g. SIGKILL).

    Their pcscd, if still up, exits by itself (--auto-exit) once it has no client.
    """
    for path in Path(base_dir).glob(f"{WORK_DIR_PREFIX}*"):
        try:
            owner = int(Path(path, OWNER_FILE).read_text().strip())
        except (OSError, ValueError):
            continue  # not ours, or being created right now
        if not _pid_alive(owner):
            shutil.rmtree(path, ignore_errors=True)


def find_pcscd() -> str:
    """The pcscd binary; /usr/sbin is often missing from an unprivileged PATH."""
    found = shutil.which("pcscd") or shutil.which("pcscd", path="/usr/sbin:/sbin")
    if not found:
        raise PcscdLaunchError("pcscd is not installed: `sudo apt-get install pcscd`")
    return found


class PrivatePcscd:
    """One pcscd of our own, with a vpcd reader pair on free ports.

    `start()` returns once pcscd answers and vpcd listens; `stop()` terminates,
    waits, kills if needed and removes every file it made. Usable as a context manager.
    """

    def __init__(
        self,
        base_dir: str = "/tmp",
        set_env: bool = True,
        start_timeout: float = 10.0,
        port: int | None = None,
    ) -> None:
        self.base_dir = base_dir
        self.set_env = set_env
        self.start_timeout = start_timeout
        self._wanted_port = port
        self.work_dir: Path | None = None
        self.vpcd_port: int = 0
        self.process: subprocess.Popen | None = None
        self._listener: socket.socket | None = None
        self._previous_env: str | None = None

    @property
    def socket_path(self) -> str:
        assert self.work_dir is not None, "start() first"
        return str(self.work_dir / "pcscd.comm")

    @property
    def conf_dir(self) -> str:
        assert self.work_dir is not None, "start() first"
        return str(self.work_dir / "reader.conf.d")

    @property
    def log_path(self) -> str:
        assert self.work_dir is not None, "start() first"
        return str(self.work_dir / "pcscd.log")

    @property
    def reader_names(self) -> list[str]:
        """The names pcscd gives vpcd's slots: "Virtual PCD 00 00", "Virtual PCD 00 01"."""
        return [f"{VPCD_FRIENDLY_NAME} 00 {slot:02X}" for slot in range(VPCD_SLOTS)]

    @property
    def slot_ports(self) -> list[int]:
        return [self.vpcd_port + slot for slot in range(VPCD_SLOTS)]

    @property
    def env(self) -> dict[str, str]:
        """Environment entries a client process needs to reach this pcscd."""
        return {"PCSCLITE_CSOCK_NAME": self.socket_path}

    def start(self) -> "PrivatePcscd":
        if not Path(VPCD_DRIVER).exists():
            raise PcscdLaunchError(
                f"the vpcd driver {VPCD_DRIVER} is missing: `sudo apt-get install vsmartcard-vpcd`"
            )
        pcscd = find_pcscd()
        bound_to = client_socket_in_use()
        if self.set_env and bound_to is not None:
            raise PcscdLaunchError(
                f"this process already talks to pcscd at {bound_to} (libpcsclite reads "
                "PCSCLITE_CSOCK_NAME once): start the private pcscd before the first PC/SC call"
            )
        # A port taken between our probe and vpcd's bind: retry with another pair.
        attempts = 1 if self._wanted_port else 3
        last_error: PcscdLaunchError | None = None
        for _ in range(attempts):
            try:
                self._start_once(pcscd, self._wanted_port or free_port_pair())
                return self
            except PcscdLaunchError as exc:
                last_error = exc
                self.stop()
        assert last_error is not None
        raise last_error

    def _start_once(self, pcscd: str, port: int) -> None:
        remove_stale_work_dirs(self.base_dir)
        self.work_dir = Path(tempfile.mkdtemp(prefix=WORK_DIR_PREFIX, dir=self.base_dir))
        Path(self.work_dir, OWNER_FILE).write_text(f"{os.getpid()}\n")
        if len(self.socket_path.encode()) > SUN_PATH_MAX:
            raise PcscdLaunchError(
                f"socket path {self.socket_path!r} is longer than {SUN_PATH_MAX} bytes: "
                "use a shorter base_dir"
            )
        self.vpcd_port = port
        os.mkdir(self.conf_dir)
        Path(self.conf_dir, "vpcd").write_text(vpcd_reader_conf(port))

        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.socket_path)
        self._listener.listen(64)
        fd = self._listener.fileno()
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-S", "-c", _SOCKET_ACTIVATION_EXEC, str(fd), pcscd,
                 "--foreground", "--auto-exit", "-c", self.conf_dir],
                pass_fds=[fd],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own process group: a Ctrl-C meant for the test runner is ours to relay.
                start_new_session=True,
            )
        self._wait_ready()
        if self.set_env:
            self._previous_env = os.environ.get("PCSCLITE_CSOCK_NAME")
            os.environ["PCSCLITE_CSOCK_NAME"] = self.socket_path

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PcscdLaunchError(
                    f"pcscd exited with status {self.process.returncode} at start:\n{self.log_tail()}"
                )
            # Listening is not enough: another program may hold the port.
            owned = _socket_inodes_of(self.process.pid)
            if all(_listening_socket_inodes(p) & owned for p in self.slot_ports):
                return
            if _DRIVER_FAILED in self.log_tail():
                raise PcscdLaunchError(
                    f"vpcd could not listen on ports {self.slot_ports} (taken?):\n{self.log_tail()}"
                )
            time.sleep(0.01)
        raise PcscdLaunchError(
            f"vpcd did not listen on ports {self.slot_ports} within {self.start_timeout:g} s "
            f"(port taken, or driver failed):\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(Path(self.log_path).read_text(errors="replace").splitlines()[-lines:])
        except (OSError, AssertionError):
            return "(no pcscd log)"

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate pcscd (kill if it lingers) and remove its socket and files."""
        process, self.process = self.process, None
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self.set_env and os.environ.get("PCSCLITE_CSOCK_NAME") == self._socket_path_or_none():
            if self._previous_env is None:
                os.environ.pop("PCSCLITE_CSOCK_NAME", None)
            else:
                os.environ["PCSCLITE_CSOCK_NAME"] = self._previous_env
        if self.work_dir is not None:
            shutil.rmtree(self.work_dir, ignore_errors=True)
            self.work_dir = None

    def _socket_path_or_none(self) -> str | None:
        return self.socket_path if self.work_dir is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> "PrivatePcscd":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def private_pcscd_session(**options) -> Iterator[PrivatePcscd]:
    """The body of a session-scoped pytest fixture: one private pcscd per process.

    Any conftest can re-export it:
        @pytest.fixture(scope="session")
        def private_pcscd():
            yield from private_pcscd_session()
    With pytest-xdist each worker is a process, so each gets its own daemon.
    """
    daemon = PrivatePcscd(**options).start()
    try:
        yield daemon
    finally:
        daemon.stop()
