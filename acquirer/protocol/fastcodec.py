"""A fast path for the dialect's ISO8583 codec, byte for byte what pyiso8583 does.

pyiso8583 is general (any spec, header, three bitmaps, text or binary lengths) and
builds an encoded twin of every message as it goes: about a tenth of a millisecond
each way per sale, twice per request at the host. This module compiles `SPEC` once into
a table of the few field shapes the dialect uses (fixed or BCD-length-prefixed; binary,
BCD digits or ASCII; nibble counts with a left or right pad) and codes the common case
directly.

It answers only what it is sure of: anything else (a field outside the table, a
secondary bitmap, a value of the wrong type, length or alphabet, trailing bytes)
returns None, and the caller asks pyiso8583, which then gives its own answer or its
own error. So the result is pyiso8583's in every case;
tests/acquirer/test_protocol_fastcodec.py checks that with generated messages.
"""
from __future__ import annotations

import binascii
from typing import NamedTuple

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


def _by_bitmap_byte() -> tuple[tuple[tuple[_Field, ...], ...], ...]:
    """For each of the bitmap's 8 bytes, for each value of it: the fields it marks, in order.
    A message walks only the fields it has (a sale has half of the table's)."""
    tables = []
    for i in range(8):
        shift = 8 * (7 - i)
        tables.append(tuple(tuple(x for x in _FIELDS if (x.bit >> shift) & 0xFF & value) for value in range(256)))
    return tuple(tables)


_PRESENT = _by_bitmap_byte()


def _fields_of(bitmap: int) -> list[_Field]:
    present: list[_Field] = []
    for table, value in zip(_PRESENT, bitmap.to_bytes(8)):
        if value:
            present += table[value]
    return present
_MTI_BINARY = SPEC["t"]["data_enc"] == "b" and SPEC["p"]["data_enc"] == "b" and SPEC["h"]["max_len"] <= 0


_BCD = [(b >> 4) * 10 + (b & 15) if b >> 4 < 10 and b & 15 < 10 else -1 for b in range(256)]  # byte -> 0-99


def decode(s: bytes) -> dict | None:
    """The decoded message, or None: then pyiso8583 must decide."""
    if not _MTI_BINARY or len(s) < 10:
        return None
    bitmap = int.from_bytes(s[2:10])
    if bitmap & ~_KNOWN_BITS:  # the secondary bitmap, or a field outside the table
        return None
    hexed = s.hex().upper()  # once for the whole message: binary fields are slices of it
    doc = {"t": hexed[:4], "p": hexed[4:20]}
    idx, end, bcd = 10, len(s), _BCD
    for key, bit, binary, len_type, max_len, nibbles, left_pad, right_pad in _fields_of(bitmap):
        if len_type:
            if idx + len_type > end:
                return None
            n = bcd[s[idx]]
            if len_type == 2:
                low = bcd[s[idx + 1]]
                if n < 0 or low < 0:
                    return None
                n = n * 100 + low
            elif len_type != 1 or n < 0:
                return None
            if n > max_len:
                return None
            idx += len_type
            if n == 0:
                doc[key] = ""
                continue
        else:
            n = max_len
        size = (n + 1) // 2 if nibbles else n
        if idx + size > end:
            return None
        if binary:
            value = hexed[2 * idx: 2 * (idx + size)]
            idx += size
            if nibbles and n & 1:
                if left_pad and value[0] == left_pad:
                    value = value[1:]
                elif right_pad and value[-1] == right_pad:
                    value = value[:-1]
                else:
                    return None
        else:
            data = s[idx: idx + size]
            idx += size
            if not data.isascii():
                return None
            value = data.decode("ascii")
        doc[key] = value
    return doc if idx == end else None


_BCD_BYTE = tuple(bytes(((n // 10) << 4 | n % 10,)) for n in range(100))  # 0-99 -> one byte of BCD


def encode(doc: dict, maced: bool = False) -> bytes | None:
    """The encoded message, or None: then pyiso8583 must decide.

    `maced`: the message gets a MAC (field 64): its bit is set, and the bytes returned end
    where the MAC would begin (what the MAC covers); a "64" in `doc` is not encoded."""
    mti = doc.get("t")
    if not _MTI_BINARY or not isinstance(mti, str) or len(mti) != 4 or not _KEYS.issuperset(doc):
        return None
    try:
        head = binascii.a2b_hex(mti)
    except (ValueError, binascii.Error):
        return None
    bitmap = 0
    for key in doc:
        f = _BY_KEY.get(key)
        if f is not None:
            bitmap |= f.bit
    fields = _fields_of(bitmap | _MAC_BIT if maced else bitmap)
    if maced:
        fields.pop()  # field 64, always the last: the caller appends the MAC
    parts = []
    for key, bit, binary, len_type, max_len, nibbles, left_pad, right_pad in fields:
        value = doc[key]
        if value.__class__ is not str:  # None too
            return None
        if binary:
            text = value
            if nibbles and len(value) & 1:
                text = left_pad + value if left_pad else value + right_pad
            try:
                data = binascii.a2b_hex(text)
            except (ValueError, binascii.Error):
                return None
            n = len(value) if nibbles else len(data)
        else:
            if not value.isascii():
                return None
            data = value.encode("ascii")
            n = len(data) * 2 if nibbles else len(data)
        if len_type:
            if n > max_len or len_type > 2 or n >= 10 ** (2 * len_type):
                return None
            parts.append(_BCD_BYTE[n] if len_type == 1 else _BCD_BYTE[n // 100] + _BCD_BYTE[n % 100])
        elif n != max_len:
            return None
        parts.append(data)
    if maced:
        bitmap |= _MAC_BIT
    return head + bitmap.to_bytes(8) + b"".join(parts)
