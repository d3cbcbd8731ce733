"""Serial (USB-CDC / RS-232) scanners: each scan is one line of bytes.

`LineFramer` cuts a byte stream into frames and is pure; `SerialScanner` feeds it from
a pyserial port.
"""
from __future__ import annotations

import errno
import select
from collections import deque

import serial

from hardware.scanners.events import (
    UNKNOWN_SYMBOLOGY,
    Clock,
    Scanner,
    ScanEvent,
    ScannerUnavailable,
    Unreadable,
    split_aim_identifier,
)

CR, LF, CRLF = b"\r", b"\n", b"\r\n"
DEFAULT_STALE_AFTER_S = 1.0  # a scanner sends a frame in one go; a long pause means debris
MAX_FRAME_BYTES = 4096  # line noise (wrong baud rate) must not grow the buffer without end


class LineFramer:
    """Bytes in, frames out.

    Any byte of `terminators` ends a frame and empty frames are skipped, so the default
    CR/LF set takes CR, LF and CRLF scanners alike. A partial frame left waiting longer
    than `stale_after` seconds (by the caller's clock) is dropped when more bytes come:
    it was noise from plugging in, not the start of the next scan.
    """

    def __init__(
        self,
        terminators: bytes = CRLF,
        stale_after: float | None = DEFAULT_STALE_AFTER_S,
        max_frame: int = MAX_FRAME_BYTES,
    ) -> None:
        if not terminators:
            raise ValueError("terminators: at least one terminator byte is needed")
        self.terminators = frozenset(terminators)
        self.stale_after = stale_after
        self.max_frame = max_frame
        self._partial = bytearray()
        self._partial_since: float | None = None
        self._skipping = False  # inside an oversized frame: wait for its terminator
        self.dropped = 0  # partial frames thrown away, for diagnostics

    @property
    def partial(self) -> bytes:
        return bytes(self._partial)

    def feed(self, data: bytes, now: float) -> list[bytes]:
        if (
            self._partial
            and self.stale_after is not None
            and self._partial_since is not None
            and now - self._partial_since > self.stale_after
        ):
            self._drop()
        frames = []
        for byte in data:
            if byte in self.terminators:
                if self._partial:
                    frames.append(bytes(self._partial))
                self._partial.clear()
                self._partial_since = None
                self._skipping = False
                continue
            if self._skipping:
                continue
            self._partial.append(byte)
            if len(self._partial) > self.max_frame:
                self._drop()
                self._skipping = True
        if self._partial:
            self._partial_since = now  # staleness counts from the last byte seen
        return frames

    def _drop(self) -> None:
        self._partial.clear()
        self._partial_since = None
        self.dropped += 1


def _open_error(port: str, exc: serial.SerialException) -> ScannerUnavailable:
    code = getattr(exc, "errno", None)
    if code in (errno.EACCES, errno.EPERM):
        return ScannerUnavailable(
            f"serial port {port} is not readable: add the user to the dialout group "
            "(sudo usermod -aG dialout $USER, then log in again)"
        )
    if code == errno.ENOENT:
        return ScannerUnavailable(
            f"serial port {port} does not exist: is the scanner plugged in and set to "
            "USB-serial (CDC) mode? `ls /dev/serial/by-id/` lists the ports"
        )
    if code == errno.EBUSY:
        return ScannerUnavailable(f"serial port {port} is in use by another program")
    return ScannerUnavailable(f"serial port {port} cannot be opened: {exc}")


class SerialScanner(Scanner):
    """A scanner on a serial port; frames are decoded with `encoding`.

    `aim_ids=True` reads an AIM symbology prefix the scanner was set to send.
    """

    def __init__(
        self,
        port: str,
        baudrate: int = 9600,
        *,
        terminators: bytes = CRLF,
        encoding: str = "utf-8",
        aim_ids: bool = False,
        stale_after: float | None = DEFAULT_STALE_AFTER_S,
        name: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(name or port, clock)
        self.port = port
        self.encoding = encoding
        self.aim_ids = aim_ids
        self._framer = LineFramer(terminators, stale_after)
        self._frames: deque[bytes] = deque()
        try:
            # timeout=0: reads return what is there; the base class does the waiting.
            self._serial = serial.Serial(port, baudrate, timeout=0)
        except serial.SerialException as exc:
            raise _open_error(port, exc) from exc

    @property
    def partial(self) -> bytes:
        """Bytes of a frame that has not been terminated yet."""
        return self._framer.partial

    def _poll(self, wait: float) -> ScanEvent | None:
        if not self._frames:
            try:
                # select, not pyserial's timeout: changing that reconfigures the tty each time.
                readable, _, _ = select.select([self._serial.fileno()], [], [], wait)
                data = self._serial.read(self._serial.in_waiting or 1) if readable else b""
            except (serial.SerialException, OSError) as exc:
                raise ScannerUnavailable(f"serial port {self.port} failed: {exc} (unplugged?)") from exc
            if data:
                self._frames.extend(self._framer.feed(data, self._clock.monotonic()))
        if not self._frames:
            return None
        frame = self._frames.popleft()
        try:
            text = frame.decode(self.encoding)
        except UnicodeDecodeError as exc:
            raise Unreadable(
                f"scanner {self.name!r} sent {len(frame)} bytes that are not {self.encoding} "
                f"(byte {exc.start}): set the scanner's output encoding, or pass encoding="
            ) from exc
        symbology = UNKNOWN_SYMBOLOGY
        if self.aim_ids:
            symbology, text = split_aim_identifier(text)
        return self._event(symbology, text)

    def _close_device(self) -> None:
        self._serial.close()
