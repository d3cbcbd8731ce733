"""A fast path for the dialect's ISO8583 codec, byte for byte what pyiso8583 does.

pyiso8583 is general (any spec, header, three bitmaps, text or binary lengths) and
builds an encoded twin of every message as it goes: about a tenth of a millisecond
each way per sale, twice per request at the host. This module compiles `SPEC` once into
a table of the few field shapes the dialect uses (fixed or BCD-length-prefixed; binary,
BCD digits or ASCII; nibble counts with a left or right pad) and codes the common case
directly.

A host sees few message layouts (a sale, a sale with a PIN, a sign-on, their responses),
so each layout gets a decoder or encoder of its own: straight-line code with the
layout's offsets, lengths and pads written in, made the first time the layout is seen
(namedtuple's way) and kept in a small table. A loop over a table of field shapes spent
most of its time finding out, field by field, what that code already knows.

It answers only what it is sure of: anything else (a field outside the table, a
secondary bitmap, a value of the wrong type, length or alphabet, trailing bytes)
returns None, and the caller asks pyiso8583, which then gives its own answer or its
own error. So the result is pyiso8583's in every case;
tests/acquirer/test_protocol_fastcodec.py checks that with generated messages. Every
refusal is the same None, so a compiled coder may check a layout's conditions in any
order (one bounds check for a run of fixed fields, say).
"""
from __future__ import annotations

import binascii
from typing import Callable, NamedTuple

from keys.bounded import remember

from .spec import SPEC


class _Field(NamedTuple):
    key: str
    bit: int  # this field's bit in the primary bitmap as a 64-bit integer
    binary: bool  # data_enc "b": hex text <-> bytes; otherwise ASCII text
    len_type: int  # 0 fixed, else bytes of BCD length prefix
    max_len: int
    nibbles: bool  # lengths count half bytes
    left_pad: str
    right_pad: str


def _compile(spec: dict) -> tuple[tuple[_Field, ...], int]:
    fields = []
    for key, f in spec.items():
        if not key.isdigit() or not 2 <= int(key) <= 64:
            continue  # "h", "t", "p" and the secondary bitmap "1" are not data fields
        if f["data_enc"] not in ("b", "ascii") or (f["len_type"] and f["len_enc"] != "bcd"):
            continue  # a shape this module does not code: messages using it take the slow path
        fields.append(_Field(key, 1 << (64 - int(key)), f["data_enc"] == "b", f["len_type"], f["max_len"],
                             f.get("len_count", "bytes") == "nibbles", f.get("left_pad", "")[:1],
                             f.get("right_pad", "")[:1]))
    fields.sort(key=lambda x: int(x.key))
    known = 0
    for x in fields:
        known |= x.bit
    return tuple(fields), known


_FIELDS, _KNOWN_BITS = _compile(SPEC)
_MAC_BIT = 1  # field 64: the primary bitmap's last bit
_KEYS = frozenset(x.key for x in _FIELDS) | {"t", "p", "h"}
_BY_KEY = {x.key: x for x in _FIELDS}
_MTI_BINARY = SPEC["t"]["data_enc"] == "b" and SPEC["p"]["data_enc"] == "b" and SPEC["h"]["max_len"] <= 0
_LAYOUTS = 256  # compiled coders kept per direction; the oldest goes first (random bitmaps from a peer)
_COMPILE_AT = 4  # a layout's sightings before it gets a compiled coder (`_compiled`)
_UNKNOWN = object()

# a byte of BCD -> 0-99; a byte that is not two BCD digits -> _NOT_BCD, which makes any
# one- or two-byte length (hi * 100 + lo) exceed every limit below (at most 9999)
_NOT_BCD = 10_000
_BCD = tuple((b >> 4) * 10 + (b & 15) if b >> 4 < 10 and b & 15 < 10 else _NOT_BCD for b in range(256))
_BCD_BYTE = tuple(bytes(((n // 10) << 4 | n % 10,)) for n in range(100))  # 0-99 -> one byte of BCD


def _fields_of(bitmap: int) -> list[_Field]:
    return [x for x in _FIELDS if bitmap & x.bit]


def _limit(f: _Field) -> int:
    """The largest length `f`'s prefix may declare: its maximum, and what the BCD digits hold."""
    return min(f.max_len, 10 ** (2 * f.len_type) - 1)


def _build(name: str, lines: list[str], scope: dict) -> Callable:
    namespace = dict(scope)
    exec(compile("\n".join(lines), f"<fastcodec {name}>", "exec"), namespace)  # noqa: S102 - made from SPEC alone
    return namespace[name]


def _compiled(table: dict, seen: dict, key, make: Callable[[], Callable | None]):
    """The coder compiled for layout `key`, or `_UNKNOWN` while the layout is new.

    A layout is compiled at its `_COMPILE_AT`th sighting, not its first: a compile costs
    about a millisecond of the event loop, and a bitmap comes from the peer before its MAC
    is checked. A peer that sends a new layout with every frame thus costs pyiso8583's
    decode per frame and a fraction of a compile, not a compile per frame. The counts are
    bounded like the table (cleared when full)."""
    count = seen.get(key, 0) + 1
    if count < _COMPILE_AT:
        if len(seen) >= 4 * _LAYOUTS:
            seen.clear()
        seen[key] = count
        return _UNKNOWN
    seen.pop(key, None)
    return remember(table, key, make(), _LAYOUTS)


# --- decoding ------------------------------------------------------------------------
def _unpadded(f: _Field, v: str, a: str, b: str, indent: str) -> list[str]:
    """Lines setting `v` to the hex text hexed[a:b] of an odd nibble count less its pad
    nibble: a left pad if the field has one and it is there, else a right pad, else
    refused (pyiso8583's order)."""
    lines = []
    if f.left_pad:
        lines.append(f"{indent}if hexed[{a}] == {f.left_pad!r}: {v} = hexed[{a} + 1:{b}]")
    if f.right_pad:
        lines.append(f"{indent}{'el' if lines else ''}if hexed[{b} - 1] == {f.right_pad!r}: {v} = hexed[{a}:{b} - 1]")
    lines.append(f"{indent}{'else: ' if lines else ''}return None")
    return lines


def _decoder(bitmap: int) -> Callable[[bytes, str, int], dict | None]:
    """decode(message, its hex in upper case, its length) for messages with this bitmap.

    While fields are fixed their offsets are constants; after a length prefix they count
    from `q`, where the last variable field's data ended."""
    lines = ["def decode(s, hexed, end):"]
    out = ["'t': hexed[:4]", "'p': hexed[4:20]"]
    base, at = None, 10  # the current offset: q + at, or at while base is None
    in_run = False  # within a run of fixed fields, whose end was checked once at its start

    def pos(extra: int = 0) -> str:
        n = at + extra
        return str(n) if base is None else f"q + {n}" if n else "q"

    def hex_pos(extra: int = 0) -> str:
        return str(2 * (at + extra)) if base is None else f"2 * ({pos(extra)})" if at + extra else "2 * q"

    fields = _fields_of(bitmap)
    for n, f in enumerate(fields):
        v = f"v{f.key}"
        out.append(f"{f.key!r}: {v}")
        if not f.len_type:
            if not in_run:
                run = 0
                for g in fields[n:]:
                    if g.len_type:
                        break
                    run += (g.max_len + 1) // 2 if g.nibbles else g.max_len
                lines.append(f"    if {pos(run)} > end: return None")
                in_run = True
            size = (f.max_len + 1) // 2 if f.nibbles else f.max_len
            if not f.binary:
                lines.append(f"    {v} = s[{pos()}:{pos(size)}].decode('ascii')")
            elif f.nibbles and f.max_len & 1:
                lines += _unpadded(f, v, hex_pos(), hex_pos(size), "    ")
            else:
                lines.append(f"    {v} = hexed[{hex_pos()}:{hex_pos(size)}]")
            at += size
            continue
        in_run = False
        # a length prefix of one or two bytes of BCD (a byte that is not BCD makes n too big)
        if f.len_type == 1:
            lines.append(f"    n = bcd[s[{pos()}]]")
        elif f.len_type == 2:
            lines.append(f"    n = bcd[s[{pos()}]] * 100 + bcd[s[{pos(1)}]]")
        else:
            return _refuse  # longer prefixes: pyiso8583 decides
        lines.append(f"    if n > {_limit(f)}: return None")
        lines.append(f"    i = {pos(f.len_type)}")
        lines.append(f"    q = i + {'(n + 1) // 2' if f.nibbles else 'n'}")
        lines.append("    if q > end: return None")
        if not f.binary:
            lines.append(f"    {v} = s[i:q].decode('ascii')")
        elif f.nibbles:
            lines.append("    if n & 1:")
            lines += _unpadded(f, v, "2 * i", "2 * q", "        ")
            lines.append(f"    else: {v} = hexed[2 * i:2 * q]")
        else:
            lines.append(f"    {v} = hexed[2 * i:2 * q]")
        base, at = "q", 0
    lines.append(f"    if {pos()} != end: return None")
    lines.append(f"    return {{{', '.join(out)}}}")
    return _build("decode", lines, {"bcd": _BCD})


def _refuse(*args) -> None:
    return None


_DECODERS: dict[int, Callable] = {}  # bitmap -> its compiled decoder
_DECODERS_SEEN: dict[int, int] = {}  # bitmap -> sightings, until it is compiled


def decode(s: bytes) -> dict | None:
    """The decoded message, or None: then pyiso8583 must decide."""
    if not _MTI_BINARY or len(s) < 10:
        return None
    bitmap = int.from_bytes(s[2:10])
    if bitmap & ~_KNOWN_BITS:  # the secondary bitmap, or a field outside the table
        return None
    decoder = _DECODERS.get(bitmap) or _compiled(_DECODERS, _DECODERS_SEEN, bitmap, lambda: _decoder(bitmap))
    if decoder is _UNKNOWN:
        return None
    try:
        # the hex once for the whole message: binary fields are slices of it
        return decoder(s, s.hex().upper(), len(s))
    except (IndexError, UnicodeDecodeError):  # a length prefix past the end; a field not ASCII
        return None


# --- encoding ------------------------------------------------------------------------
def _encoder(keys: tuple, maced: bool) -> Callable[[dict, bytes], bytes | None] | None:
    """encode(doc, MTI bytes) for documents with these keys in this order; None for keys
    outside the table. With `maced`, bit 64 is set and field 64 not encoded (see `encode`)."""
    if not _KEYS.issuperset(keys):
        return None
    bitmap = 0
    for key in keys:
        f = _BY_KEY.get(key)
        if f is not None:
            bitmap |= f.bit
    if maced:
        bitmap |= _MAC_BIT
    fields = [f for f in _fields_of(bitmap) if not (maced and f.bit == _MAC_BIT)]  # the caller appends the MAC
    lines = ["def encode(doc, head):"]
    parts = ["head", "bitmap"]
    for f in fields:
        if f.len_type > 2:
            return _refuse  # longer prefixes: pyiso8583 decides
        d, n = f"d{f.key}", f"n{f.key}"
        lines.append(f"    v = doc[{f.key!r}]")
        # a fixed field's length is known before its conversion (any refusal is the same None)
        size = f.max_len if f.nibbles and f.binary else 2 * f.max_len if f.binary else \
            f.max_len // 2 if f.nibbles else f.max_len
        lines.append("    if v.__class__ is not str: return None" if f.len_type else
                     f"    if v.__class__ is not str or len(v) != {size}: return None")
        padded = f"{f.left_pad!r} + v" if f.left_pad else f"v + {f.right_pad!r}" if f.right_pad else None
        if f.binary and f.nibbles:  # the nibble count is the text's length; an odd one gets a pad nibble
            if f.len_type:
                lines.append(f"    {n} = len(v)")
                lines.append(f"    {d} = a2b_hex({padded} if {n} & 1 else v)" if padded else f"    {d} = a2b_hex(v)")
            elif f.max_len & 1:
                lines.append(f"    {d} = a2b_hex({padded})" if padded else "    return None")  # odd without a pad
            else:
                lines.append(f"    {d} = a2b_hex(v)")
        elif f.binary:
            lines.append(f"    {d} = a2b_hex(v)")
            if f.len_type:
                lines.append(f"    {n} = len({d})")
        else:
            if f.nibbles and not f.len_type and f.max_len & 1:
                return _refuse  # an odd nibble count of whole ASCII bytes: never
            lines.append(f"    {d} = v.encode('ascii')")
            if f.len_type:
                lines.append(f"    {n} = {'2 * ' if f.nibbles else ''}len({d})")
        if f.len_type:
            lines.append(f"    if {n} > {_limit(f)}: return None")
            parts += [f"bcd[{n}]"] if f.len_type == 1 else [f"bcd[{n} // 100]", f"bcd[{n} % 100]"]
        parts.append(d)
    lines.append(f"    return b''.join(({', '.join(parts)},))")
    return _build("encode", lines, {"a2b_hex": binascii.a2b_hex, "bcd": _BCD_BYTE, "bitmap": bitmap.to_bytes(8)})


_ENCODERS: dict[tuple, Callable | None] = {}  # (maced, the document's keys) -> its compiled encoder
_ENCODERS_SEEN: dict[tuple, int] = {}  # layout -> sightings, until it is compiled


def encode(doc: dict, maced: bool = False) -> bytes | None:
    """The encoded message, or None: then pyiso8583 must decide.

    `maced`: the message gets a MAC (field 64): its bit is set, and the bytes returned end
    where the MAC would begin (what the MAC covers); a "64" in `doc` is not encoded."""
    mti = doc.get("t")
    if not _MTI_BINARY or not isinstance(mti, str) or len(mti) != 4:
        return None
    layout = (maced, *doc)
    encoder = _ENCODERS.get(layout, _UNKNOWN)
    if encoder is _UNKNOWN:
        encoder = _compiled(_ENCODERS, _ENCODERS_SEEN, layout, lambda: _encoder(layout[1:], maced))
    if encoder is None or encoder is _UNKNOWN:
        return None
    try:
        return encoder(doc, binascii.a2b_hex(mti))
    except ValueError:  # not hex (binascii.Error), not ASCII (UnicodeEncodeError)
        return None
