"""China UnionPay POS framing: 2-byte length, TPDU, 6-byte header, then the message.

    length (2, big-endian, counts everything after it)
    TPDU (5): 60 | destination address (2) | source address (2)
    header (6): application type 60 | version 31 | terminal status (high nibble) and
                processing requirement (low nibble) | software version (3, BCD)
    ISO8583 message: MTI (2, BCD) | bitmap (8) | fields

A response swaps the TPDU addresses. The host sets the processing requirement to ask
the terminal for something before its next transaction (sign on again, update).
"""
from __future__ import annotations

import asyncio
import enum
import struct
from typing import NamedTuple

TPDU_ID = 0x60
HEADER_APP = 0x60
HEADER_VERSION = 0x31
MAX_FRAME = 8192  # bytes after the length prefix; far above any legitimate message


_LEN = struct.Struct(">H")
_HEAD = struct.Struct(">BHHBBB")  # TPDU id, destination, source; header application, version, status|processing
_ADDRESSES = struct.Struct(">HH")


class FrameError(ValueError):
    """A frame that is oversized, truncated, or has a bad TPDU/header."""


class Processing(enum.IntEnum):
    NONE = 0
    SIGN_ON_AGAIN = 2
    UPDATE_PARAMETERS = 3
    LOCKED = 9


_PROCESSING = {int(p): p for p in Processing}  # an unknown requirement reads as NONE


class Frame(NamedTuple):
    """One frame (immutable). A tuple, not a frozen dataclass: the host makes two per request
    (the request off the wire, its reply), and a dataclass's frozen __init__ costs several
    times a tuple's."""

    message: bytes
    destination: int = 0x0000
    source: int = 0x0000
    status: int = 0
    processing: Processing = Processing.NONE
    software: str = "000100"

    def encode(self) -> bytes:
        body = _HEAD.pack(TPDU_ID, self.destination, self.source, HEADER_APP, HEADER_VERSION,
                          (self.status & 0x0F) << 4 | int(self.processing) & 0x0F) \
            + bytes.fromhex(self.software) + self.message
        if len(body) > MAX_FRAME:
            raise FrameError(f"frame of {len(body)} bytes exceeds the {MAX_FRAME}-byte maximum")
        return _LEN.pack(len(body)) + body

    def reply(self, message: bytes, processing: Processing = Processing.NONE) -> "Frame":
        return Frame(message, self.source, self.destination, 0, processing, self.software)

    @classmethod
    def decode_body(cls, body: bytes) -> "Frame":
        if len(body) < 11 + 10:
            raise FrameError(f"frame of {len(body)} bytes is too short for TPDU, header and MTI/bitmap")
        if body[0] != TPDU_ID:
            raise FrameError(f"TPDU id is {body[0]:02X}, expected 60")
        if body[5] != HEADER_APP:
            raise FrameError(f"header application type is {body[5]:02X}, expected 60")
        dest, src = _ADDRESSES.unpack_from(body, 1)
        return cls(bytes(body[11:]), dest, src, body[7] >> 4, _PROCESSING.get(body[7] & 0x0F, Processing.NONE),
                   body[8:11].hex())


async def read_frame(reader: asyncio.StreamReader, timeout: float, max_len: int = MAX_FRAME,
                     idle_timeout: float | None = None) -> Frame | None:
    """Read one frame; None at a clean end of stream between frames.

    `idle_timeout` bounds the wait for a frame to start, `timeout` the time to finish
    it once started. Raises FrameError for an oversized or malformed frame and
    asyncio.TimeoutError when the peer stalls (a slow-loris client is cut off).
    One deadline, moved once the first byte is in (not a `wait_for` task per read: this
    runs for every frame)."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(idle_timeout or timeout) as deadline:
        try:
            first = await reader.readexactly(1)
        except asyncio.IncompleteReadError:
            return None
        deadline.reschedule(loop.time() + timeout)
        try:
            head = first + await reader.readexactly(1)
        except asyncio.IncompleteReadError:
            raise FrameError("connection closed inside a length prefix") from None
        (length,) = struct.unpack(">H", head)
        if length > max_len:
            raise FrameError(f"declared frame length {length} exceeds the {max_len}-byte maximum")
        try:
            body = await reader.readexactly(length)
        except asyncio.IncompleteReadError as exc:
            raise FrameError(f"connection closed after {len(exc.partial)} of {length} frame bytes") from None
    return Frame.decode_body(body)


def read_frame_blocking(sock, max_len: int = MAX_FRAME) -> Frame | None:
    """The same for a blocking socket (the terminal side); timeouts come from the socket."""
    head = recv_exact(sock, 2)
    if head is None:
        return None
    (length,) = struct.unpack(">H", head)
    if length > max_len:
        raise FrameError(f"declared frame length {length} exceeds the {max_len}-byte maximum")
    body = recv_exact(sock, length)
    if body is None:
        raise FrameError(f"connection closed inside a {length}-byte frame")
    return Frame.decode_body(body)


def recv_exact(sock, n: int, error: type[Exception] = FrameError) -> bytes | None:
    """Exactly `n` bytes from a blocking socket; None if the peer closed before the first
    byte, `error` if it closed in the middle."""
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            if buf:
                raise error(f"connection closed after {len(buf)} of {n} bytes")
            return None
        buf += chunk
    return bytes(buf)
