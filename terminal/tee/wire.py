"""The wire between the normal world and the TEE process: length-prefixed frames, each
carrying one value in a small, strict, typed encoding.

    frame  = length (4, big-endian, counts the body) | body
    value  = N                       None
           | T | F                   True, False
           | I int64 (8, signed)     an integer
           | S u32 utf-8             a string
           | B u32 bytes             bytes
           | L u32 value*            a list
           | M u32 (S value)*        a map with string keys, each key once

No pickle and no JSON: decoding builds only these six kinds of value, so a frame from
a hostile peer can at worst be refused. Decoding is strict: an unknown type byte, a
length that runs past the end, trailing bytes, a duplicate key, invalid UTF-8 or a
nesting deeper than MAX_DEPTH is a `WireError`.
"""
from __future__ import annotations

import socket
import struct

from acquirer.protocol.frame import recv_exact

MAX_FRAME = 64 * 1024  # the largest real message (a TRANSACT result) is a few KB
MAX_DEPTH = 4  # request/response map -> params map -> a map or list of scalars
_U32 = struct.Struct(">I")
_I64 = struct.Struct(">q")

Value = None | bool | int | str | bytes | list | dict


class WireError(Exception):
    """A frame or value that does not follow the encoding above."""


def encode(value: Value) -> bytes:
    out = bytearray()
    _encode(value, out, 0)
    if len(out) > MAX_FRAME:
        raise WireError(f"value encodes to {len(out)} bytes, above the {MAX_FRAME}-byte frame limit")
    return bytes(out)


def _encode(value: Value, out: bytearray, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise WireError(f"value nests deeper than {MAX_DEPTH}")
    if value is None:
        out += b"N"
    elif value is True or value is False:  # before int: bool is an int subclass
        out += b"T" if value else b"F"
    elif isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise WireError("integer does not fit in 64 bits")
        out += b"I" + _I64.pack(value)
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        out += b"S" + _U32.pack(len(raw)) + raw
    elif isinstance(value, (bytes, bytearray)):
        out += b"B" + _U32.pack(len(value)) + bytes(value)
    elif isinstance(value, (list, tuple)):
        out += b"L" + _U32.pack(len(value))
        for item in value:
            _encode(item, out, depth + 1)
    elif isinstance(value, dict):
        out += b"M" + _U32.pack(len(value))
        for key, item in value.items():
            if not isinstance(key, str):
                raise WireError(f"map keys must be strings, got {type(key).__name__}")
            _encode(key, out, depth + 1)
            _encode(item, out, depth + 1)
    else:
        raise WireError(f"cannot encode a {type(value).__name__}")


def decode(data: bytes) -> Value:
    value, end = _decode(memoryview(data), 0, 0)
    if end != len(data):
        raise WireError(f"{len(data) - end} trailing bytes after the value")
    return value


def _take(data: memoryview, i: int, n: int) -> tuple[bytes, int]:
    if n > len(data) - i:
        raise WireError(f"value at offset {i} claims {n} bytes, only {len(data) - i} left")
    return bytes(data[i : i + n]), i + n


def _decode(data: memoryview, i: int, depth: int) -> tuple[Value, int]:
    if depth > MAX_DEPTH:
        raise WireError(f"value nests deeper than {MAX_DEPTH}")
    kind, i = _take(data, i, 1)
    if kind == b"N":
        return None, i
    if kind in (b"T", b"F"):
        return kind == b"T", i
    if kind == b"I":
        raw, i = _take(data, i, 8)
        return _I64.unpack(raw)[0], i
    if kind not in (b"S", b"B", b"L", b"M"):
        raise WireError(f"unknown type byte {kind!r} at offset {i - 1}")
    raw, i = _take(data, i, 4)
    (n,) = _U32.unpack(raw)
    if kind == b"B":
        return _take(data, i, n)
    if kind == b"S":
        raw, i = _take(data, i, n)
        try:
            return raw.decode("utf-8"), i
        except UnicodeDecodeError:
            raise WireError(f"string before offset {i} is not UTF-8") from None
    if n > len(data) - i:  # every item takes at least one byte: refuse huge counts early
        raise WireError(f"container at offset {i} claims {n} items, only {len(data) - i} bytes left")
    if kind == b"L":
        items = []
        for _ in range(n):
            item, i = _decode(data, i, depth + 1)
            items.append(item)
        return items, i
    result: dict = {}
    for _ in range(n):
        key, i = _decode(data, i, depth + 1)
        if not isinstance(key, str):
            raise WireError(f"map key before offset {i} is not a string")
        if key in result:
            raise WireError(f"map key {key!r} appears twice")
        result[key], i = _decode(data, i, depth + 1)
    return result, i


# --- frames over a stream socket ---------------------------------------------------
def send_frame(sock: socket.socket, value: Value) -> None:
    body = encode(value)
    sock.sendall(_U32.pack(len(body)) + body)


def recv_raw_frame(sock: socket.socket) -> bytes | None:
    """The body of the next frame, None when the peer closed between frames."""
    head = recv_exact(sock, 4, WireError)
    if head is None:
        return None
    (n,) = _U32.unpack(head)
    if n > MAX_FRAME:
        raise WireError(f"frame of {n} bytes is above the {MAX_FRAME}-byte limit")
    body = recv_exact(sock, n, WireError)
    if body is None:
        raise WireError("peer closed after a frame header")
    return body


def recv_frame(sock: socket.socket) -> Value:
    """The next frame's value; EOFError when the peer closed between frames."""
    body = recv_raw_frame(sock)
    if body is None:
        raise EOFError("peer closed the connection")
    return decode(body)
