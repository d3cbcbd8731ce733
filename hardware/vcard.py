"""The virtual card runtime: serves a `CardApplication` to vsmartcard's vpcd driver.

vpcd (loaded by pcscd) listens on TCP; this card is the client. Both ways a message
is a 2-byte big-endian length and a payload. A 1-byte payload is control (00 power
off, 01 power on, 02 reset, 04 get ATR; only 04 is answered, with the ATR); any
longer payload is a command APDU, answered with a response APDU. Closing the socket
is taking the card off the reader.

Run in a background thread (`VirtualCard.insert()` / `.remove()`), or as a process:
`python -m hardware.vcard --profile iso7816-test --port 35963`.
"""
from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import socket
import sys
import threading
import time

from hardware.card_apps import PROFILES, CardApplication, CardVanishes, make_application
from hardware.errors import VirtualCardError, VpcdUnreachable

DEFAULT_VPCD_PORT = 35963  # Debian's /etc/reader.conf.d/vpcd: CHANNELID 0x8C7B
CTRL_POWER_OFF, CTRL_POWER_ON, CTRL_RESET, CTRL_GET_ATR = 0x00, 0x01, 0x02, 0x04
_RESPONSE_ON_APP_ERROR = b"\x6F\x00"  # "no precise diagnosis": the card app crashed
_CONNECT_ERRORS = {errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.ETIMEDOUT}

log = logging.getLogger(__name__)


def connect_to_vpcd(host: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to vpcd, retried with backoff until it listens or `timeout`."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.settimeout(max(0.05, min(1.0, deadline - time.monotonic())))
            sock.connect((host, port))
        except OSError as exc:
            sock.close()
            if exc.errno not in _CONNECT_ERRORS and not isinstance(exc, socket.timeout):
                raise VpcdUnreachable(f"cannot connect to vpcd at {host}:{port}: {exc}") from None
            if time.monotonic() + delay > deadline:
                raise VpcdUnreachable(
                    f"vpcd is not listening on {host}:{port} after {timeout:g} s: is pcscd "
                    "running with the vpcd driver for that port? `pos reader doctor` checks"
                ) from None
            # pcscd may still be starting: back off, but stay quick for tests.
            time.sleep(delay)
            delay = min(delay * 2, 0.25)
            continue
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock


class _LinkClosed(Exception):
    """vpcd closed the connection (pcscd stopped, or the card was removed)."""


class VirtualCard:
    """One virtual card on one vpcd slot; `insert()` taps it, `remove()` lifts it.

    The card is served from a daemon thread; everything it answers comes from `app`.
    """

    def __init__(
        self,
        app: CardApplication,
        port: int = DEFAULT_VPCD_PORT,
        host: str = "127.0.0.1",
        connect_timeout: float = 10.0,
    ) -> None:
        self.app = app
        self.port = port
        self.host = host
        self.connect_timeout = connect_timeout
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._state_lock = threading.Lock()
        self.gone = threading.Event()  # set when the card left: removed, vanished, link lost
        self.gone.set()
        self.apdus_served = 0

    @property
    def inserted(self) -> bool:
        return not self.gone.is_set()

    def insert(self, timeout: float | None = None) -> None:
        """Connect to vpcd (retrying while it is not up yet) and start answering."""
        with self._state_lock:
            if self.inserted:
                raise VirtualCardError(f"the card is already on the reader at port {self.port}")
            self._join()
            sock = connect_to_vpcd(
                self.host, self.port, self.connect_timeout if timeout is None else timeout
            )
            self._sock = sock
            self.gone.clear()
            self._thread = threading.Thread(
                target=self._serve, args=(sock,), name=f"vcard:{self.port}", daemon=True
            )
            self._thread.start()

    def remove(self, wait: bool = True) -> None:
        """Take the card off the reader: shut the socket, then join the server thread.

        `wait=False` returns right after the shutdown, e.g. while the application is
        still busy with a command, so that its answer finds the link gone.
        """
        with self._state_lock:
            sock = self._sock
            if sock is not None:
                # shutdown, not close: it wakes the thread's recv and sends FIN now.
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            if wait:
                self._join()

    def _join(self) -> None:
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
            self._thread = None

    def wait_gone(self, timeout: float | None = None) -> bool:
        """Block until the card has left (removed, vanished, or vpcd closed)."""
        return self.gone.wait(timeout)

    def close(self) -> None:
        self.remove()

    def __enter__(self) -> "VirtualCard":
        self.insert()
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    # -- the server thread ---------------------------------------------------

    def _serve(self, sock: socket.socket) -> None:
        try:
            while True:
                message = _receive(sock)
                if len(message) == 1:
                    reply = self._control(message[0])
                else:
                    reply = self._command(message)
                if reply is not None:
                    sock.sendall(len(reply).to_bytes(2, "big") + reply)
        except (_LinkClosed, CardVanishes, OSError):
            pass
        finally:
            self._sock = None
            sock.close()
            self.gone.set()

    def _control(self, code: int) -> bytes | None:
        hook = {CTRL_POWER_ON: "power_on", CTRL_POWER_OFF: "power_off", CTRL_RESET: "reset"}
        if code == CTRL_GET_ATR:
            return bytes(self.app.atr)
        name = hook.get(code)
        if name is None:
            log.warning("vpcd sent unknown control byte %02X", code)
            return None
        # Applications without the hook keep no power-cycle state.
        method = getattr(self.app, name, None)
        if method is not None:
            method()
        return None

    def _command(self, apdu: bytes) -> bytes:
        self.apdus_served += 1
        try:
            response = self.app.process_apdu(apdu)
        except CardVanishes:
            raise
        except Exception:  # noqa: BLE001 - a buggy card answers 6F00, it does not crash
            log.exception("card application failed on APDU %s", apdu[:5].hex())
            return _RESPONSE_ON_APP_ERROR
        if len(response) < 2:
            log.error("card application answered %d bytes, no status word", len(response))
            return _RESPONSE_ON_APP_ERROR
        return bytes(response)


def _receive(sock: socket.socket) -> bytes:
    header = _receive_exactly(sock, 2)
    return _receive_exactly(sock, int.from_bytes(header, "big"))


def _receive_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        # Linux clears QUICKACK after each ACK; without it vpcd's split writes cost 40 ms.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise _LinkClosed()
        data += chunk
    return bytes(data)


# -- as a process ----------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hardware.vcard",
        description="Serve a built-in test card to the vpcd virtual reader until stopped.",
    )
    add_card_arguments(parser)
    parser.add_argument("--pidfile", help="write the pid here once the card is inserted")
    return parser


def add_card_arguments(parser: argparse.ArgumentParser) -> None:
    """The card options shared by `python -m hardware.vcard` and `pos card insert`."""
    parser.add_argument(
        "--profile",
        default="iso7816-test",
        choices=sorted(PROFILES),
        help="card profile: a simulated EMV card (docs/cards.md) or a reader test application",
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_VPCD_PORT, help="vpcd slot port (default %(default)s)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="vpcd host (default %(default)s)")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="delay before each answer")
    parser.add_argument(
        "--connect-timeout", type=float, default=10.0, help="seconds to wait for vpcd"
    )


def _announce(message: str) -> None:
    print(message, flush=True)  # flushed: whoever started us may be waiting on the line


def serve(args: argparse.Namespace, announce=_announce) -> int:
    """Insert the card of `args`, block until SIGINT/SIGTERM or until it leaves."""
    card = VirtualCard(
        make_application(args.profile, delay_s=args.delay_ms / 1000.0),
        port=args.port,
        host=args.host,
        connect_timeout=args.connect_timeout,
    )
    stop = threading.Event()

    def on_signal(signum, frame):  # noqa: ARG001 - signal handler signature
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    pidfile = getattr(args, "pidfile", None)
    try:
        card.insert()
        if pidfile:
            _write_pidfile(pidfile)
        announce(f"card {args.profile!r} inserted at {args.host}:{args.port}; Ctrl-C removes it")
        while not stop.is_set() and not card.gone.is_set():
            stop.wait(0.2)
        if card.gone.is_set() and not stop.is_set():
            announce("the card left the reader (vanished, or vpcd closed the link)")
        return 0
    finally:
        card.remove()
        if pidfile and _read_pid(pidfile) == os.getpid():
            os.unlink(pidfile)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _write_pidfile(path: str) -> None:
    # Written atomically so a reader never sees a half-written pid.
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(f"{os.getpid()}\n")
    os.replace(tmp, path)


def _read_pid(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return serve(args)
    except VirtualCardError as exc:
        print(f"vcard: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
