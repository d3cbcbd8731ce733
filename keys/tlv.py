"""BER-TLV as EMV uses it (EMV Book 3 Annex B), with tag names and masking.

It lives in keys/ because keys/ is the one package every layer may import (cards in
hardware/, the kernel in terminal/, field 55 in acquirer/) and this is pure computation.

Decoding is strict: a truncated tag, length or value, a length in more than 4 bytes, or
trailing garbage is a `TLVError` naming the offset; never a silent partial parse.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from operator import itemgetter
from typing import Callable, Iterable, Iterator, NamedTuple

from .bounded import remember


class TLVError(ValueError):
    """Malformed BER-TLV; the message names the offset and what was wrong."""


@dataclass
class TLV:
    tag: int
    value: bytes = b""
    children: list["TLV"] = field(default_factory=list)

    @property
    def constructed(self) -> bool:
        return is_constructed(self.tag)

    def encode(self) -> bytes:
        body = b"".join(c.encode() for c in self.children) if self.constructed else self.value
        return encode_tag(self.tag) + encode_length(len(body)) + body

    def find(self, tag: int) -> "TLV | None":
        for node in walk([self]):
            if node.tag == tag:
                return node
        return None


def is_constructed(tag: int) -> bool:
    first = tag
    while first > 0xFF:
        first >>= 8
    return bool(first & 0x20)


_BYTES = tuple(bytes((b,)) for b in range(256))  # one-byte tags and short lengths, made once (every response has some)


def encode_tag(tag: int) -> bytes:
    if 0 <= tag < 0x100:
        return _BYTES[tag]
    return tag.to_bytes(max(1, (tag.bit_length() + 7) // 8))


def encode_length(n: int) -> bytes:
    if n < 0x80:
        return _BYTES[n]
    raw = n.to_bytes((n.bit_length() + 7) // 8)
    return bytes([0x80 | len(raw)]) + raw


def tlv(tag: int, value: bytes) -> bytes:
    """One primitive (or pre-encoded constructed) TLV."""
    return encode_tag(tag) + encode_length(len(value)) + value


def _read_tag(data: bytes, i: int) -> tuple[int, int]:
    if i >= len(data):
        raise TLVError(f"truncated tag at offset {i}")
    start = i
    tag = data[i]
    i += 1
    if tag & 0x1F == 0x1F:  # more tag bytes follow while b8 is set
        while True:
            if i >= len(data):
                raise TLVError(f"truncated multi-byte tag at offset {start}")
            tag = (tag << 8) | data[i]
            i += 1
            if not data[i - 1] & 0x80:
                break
            if i - start > 4:
                raise TLVError(f"tag longer than 4 bytes at offset {start}")
    return tag, i


def _read_length(data: bytes, i: int) -> tuple[int, int]:
    if i >= len(data):
        raise TLVError(f"truncated length at offset {i}")
    first = data[i]
    i += 1
    if first < 0x80:
        return first, i
    n = first & 0x7F
    if n == 0 or n > 4:
        raise TLVError(f"unsupported length form 0x{first:02X} at offset {i - 1}")
    if i + n > len(data):
        raise TLVError(f"truncated length at offset {i - 1}")
    return int.from_bytes(data[i : i + n]), i + n


def _objects(data: bytes, offset: int) -> tuple[list[tuple[int, int, bytes, int]], TLVError | None]:
    """Each object of one level in order: (tag, constructed bit, value, offset of the value), up to
    the first malformed one, and the error that one raises (None when all are whole).

    One pass over `data` with the common forms (one- and two-byte tags, a short length) inline and
    the rest left to `_read_tag`/`_read_length`: field 55 is parsed on every card request,
    so this is a hot loop (it fills a list: resuming a generator per object cost a third
    of it). The caller raises the error after the objects before it, a constructed one's
    contents included: the first error in document order, as a lazy parse meets it.
    Padding bytes 00 and FF between objects are skipped."""
    out: list[tuple[int, int, bytes, int]] = []
    append = out.append
    end = len(data)
    i = 0
    try:
        while i < end:
            first = data[i]
            if first & 0x1F != 0x1F:  # a one-byte tag, or padding 00
                if not first:
                    i += 1
                    continue
                start = i
                tag = first
                i += 1
            elif first == 0xFF:  # padding
                i += 1
                continue
            else:
                start = i
                if i + 1 < end and not data[i + 1] & 0x80:  # two bytes, as most EMV tags (9Fxx, 5Fxx)
                    tag = first << 8 | data[i + 1]
                    i += 2
                else:
                    tag, i = _read_tag(data, i)
            if i >= end:
                raise TLVError(f"truncated length at offset {i}")
            length = data[i]
            if length < 0x80:
                i += 1
            else:
                length, i = _read_length(data, i)
            stop = i + length
            if stop > end:
                raise TLVError(f"tag {tag:X} at offset {offset + start} declares {length} bytes, "
                               f"only {end - i} remain")
            append((tag, first & 0x20, data[i:stop], offset + i))
            i = stop
    except TLVError as exc:
        return out, exc
    return out, None


def decode(data: bytes, offset: int = 0) -> list[TLV]:
    """Parse a sequence of TLVs; constructed ones are parsed recursively.

    Padding bytes 00 and FF between objects are skipped, as EMV allows."""
    if type(data) is not bytes:
        data = bytes(data)
    items, error = _objects(data, offset)
    out = [TLV(tag, value, decode(value, at)) if constructed else TLV(tag, value)
           for tag, constructed, value, at in items]
    if error is not None:
        raise error
    return out


def objects(data: bytes) -> list[tuple[int, bytes]]:
    """The top-level objects as (tag, value): what `decode` gives, as strictly (a constructed
    object's contents are checked too), without building nodes (field 59 of every request)."""
    if type(data) is not bytes:
        data = bytes(data)
    items, error = _objects(data, 0)
    pairs = []  # a loop, not a second comprehension: field 59 holds one or two objects
    for tag, constructed, value, at in items:
        if constructed:
            decode(value, at)  # the same errors, at the same point, as decode's
        pairs.append((tag, value))
    if error is not None:
        raise error
    return pairs


def walk(nodes: Iterable[TLV]) -> Iterator[TLV]:
    for n in nodes:
        yield n
        if n.children:
            yield from walk(n.children)


def flatten(data: bytes | list[TLV]) -> dict[int, bytes]:
    """Primitive tags to values, first occurrence wins (the EMV data-object view).

    From bytes it goes straight to the dict, without TLV nodes in between; it is as strict
    as `decode` (the same errors, in the same order). Bytes laid out as the last ones of
    their length are answered from that layout (`_Layout`)."""
    if isinstance(data, (bytes, bytearray)):
        data = bytes(data)
        layout = _FLAT_LAYOUTS.get(len(data))
        if layout is not None and layout.structure(data) == layout.expected:
            return dict(zip(layout.tags, map(data.__getitem__, layout.slices)))
        result: dict[int, bytes] = {}
        spans: list[tuple[int, int, int]] = []
        _flatten_into(data, 0, result, spans)
        _remember_layout(data, spans)
        return result
    result = {}
    for n in walk(data):
        if not n.constructed:
            result.setdefault(n.tag, n.value)
    return result


def _flatten_into(data: bytes, offset: int, result: dict[int, bytes], spans: list[tuple[int, int, int]]) -> None:
    """Into `result` the primitive values of `data` (at `offset` in the whole), the first
    occurrence of each tag; into `spans` every primitive value's tag and place in the whole."""
    items, error = _objects(data, offset)
    for tag, constructed, value, at in items:
        if constructed:
            _flatten_into(value, at, result, spans)  # depth first: the order `walk` visits in
        else:
            spans.append((tag, at, at + len(value)))
            if tag not in result:
                result[tag] = value
    if error is not None:
        raise error


class _Layout(NamedTuple):
    """Where a flattened object's values lie, and what the parse read to find them.

    The parse reads every byte that is not inside a primitive value (padding, tags, lengths,
    a template's own header) and nothing else, and what it reads decides what it reads next:
    bytes of the same length with the same bytes at those places parse to values at the
    same places. Field 55 of one card product at one terminal keeps its layout from sale to
    sale (only amounts, counters and cryptograms change), so a check of those bytes in one
    C call and the values sliced replace a parse of a dozen objects in Python."""

    structure: Callable[[bytes], tuple]  # the bytes the parse reads
    expected: tuple
    tags: tuple[int, ...]  # the result's keys in its order
    slices: tuple[slice, ...]  # where each value lies


_FLAT_LAYOUTS: dict[int, _Layout] = {}  # data length -> the last layout of that length
_FLAT_LAYOUTS_MAX = 64


def _remember_layout(data: bytes, spans: list[tuple[int, int, int]]) -> None:
    """Keep the layout of `data`, whose primitive values lie at `spans` (tag, start, stop) in order."""
    inside = set()
    first: dict[int, slice] = {}  # each tag's first value: what the result holds
    for tag, start, stop in spans:
        inside.update(range(start, stop))
        if tag not in first:
            first[tag] = slice(start, stop)
    read = [i for i in range(len(data)) if i not in inside]
    if len(read) < 2:  # itemgetter of one place gives no tuple; nothing worth keeping anyway
        return
    structure = itemgetter(*read)
    remember(_FLAT_LAYOUTS, len(data), _Layout(structure, structure(data), tuple(first), tuple(first.values())),
             _FLAT_LAYOUTS_MAX)


def encode_dict(items: dict[int, bytes] | Iterable[tuple[int, bytes]]) -> bytes:
    pairs = items.items() if isinstance(items, dict) else items
    return b"".join([tlv(t, v) for t, v in pairs])


def parse_dol(dol: bytes) -> list[tuple[int, int]]:
    """A data object list (PDOL, CDOL1, ...): tags and lengths, no values."""
    out: list[tuple[int, int]] = []
    i = 0
    while i < len(dol):
        tag, i = _read_tag(dol, i)
        if i >= len(dol):
            raise TLVError(f"DOL entry for tag {tag:X} has no length")
        out.append((tag, dol[i]))
        i += 1
    return out


def build_dol_data(dol: bytes, values: dict[int, bytes]) -> bytes:
    """Concatenate values for a DOL (EMV Book 3, 5.4): a missing value is sent as zeros;
    callers pass values already at their DOL length, others are cut or zero-padded right."""
    out = b""
    for tag, length in parse_dol(dol):
        v = values.get(tag, b"")
        out += v[:length] if len(v) >= length else v + bytes(length - len(v))
    return out


# Tag names (EMV Book 3 Annex A, PBOC 3.0 additions) for readable dumps.
TAG_NAMES: dict[int, str] = {
    0x4F: "AID", 0x50: "Application Label", 0x56: "Track 1 Data", 0x57: "Track 2 Equivalent Data",
    0x5A: "PAN", 0x5F20: "Cardholder Name", 0x5F24: "Expiry Date", 0x5F25: "Effective Date",
    0x5F28: "Issuer Country Code", 0x5F2A: "Transaction Currency Code", 0x5F2D: "Language Preference",
    0x5F30: "Service Code", 0x5F34: "PAN Sequence Number", 0x61: "Application Template",
    0x6F: "FCI Template", 0x70: "Record Template", 0x77: "Response Template 2",
    0x80: "Response Template 1", 0x82: "AIP", 0x84: "DF Name", 0x87: "Application Priority",
    0x88: "SFI", 0x8C: "CDOL1", 0x8D: "CDOL2", 0x8E: "CVM List", 0x8F: "CA Public Key Index",
    0x90: "Issuer PK Certificate", 0x92: "Issuer PK Remainder", 0x93: "Signed Static Data",
    0x94: "AFL", 0x95: "TVR", 0x9A: "Transaction Date", 0x9C: "Transaction Type",
    0x9F02: "Amount Authorised", 0x9F03: "Amount Other", 0x9F07: "Application Usage Control",
    0x9F08: "Application Version", 0x9F0D: "IAC Default", 0x9F0E: "IAC Denial", 0x9F0F: "IAC Online",
    0x9F10: "Issuer Application Data", 0x9F1A: "Terminal Country Code", 0x9F26: "Application Cryptogram",
    0x9F27: "Cryptogram Information Data", 0x9F32: "Issuer PK Exponent", 0x9F33: "Terminal Capabilities",
    0x9F34: "CVM Results", 0x9F35: "Terminal Type", 0x9F36: "ATC", 0x9F37: "Unpredictable Number",
    0x9F38: "PDOL", 0x9F46: "ICC PK Certificate", 0x9F47: "ICC PK Exponent", 0x9F48: "ICC PK Remainder",
    0x9F4A: "SDA Tag List", 0x9F4B: "Signed Dynamic Application Data", 0x9F4C: "ICC Dynamic Number",
    0x9F4F: "Log Format", 0x9F5D: "Available Offline Spending Amount", 0x9F66: "TTQ",
    0x9F6B: "Track 2 Data (MSD)", 0x9F6C: "CTQ", 0x9F69: "Card Authentication Related Data",
    0x9F74: "EC Issuer Authorisation Code", 0x9F79: "EC Balance", 0xA5: "FCI Proprietary Template",
    0xBF0C: "FCI Issuer Discretionary Data", 0x91: "Issuer Authentication Data",
    0x71: "Issuer Script Template 1", 0x72: "Issuer Script Template 2", 0xDF61: "SM Algorithm Indicator",
}

# Tags that carry cardholder data: never printed in clear.
SENSITIVE_TAGS = frozenset({0x56, 0x57, 0x5A, 0x5F20, 0x9F6B, 0x9F1F, 0x9F20})


def mask_pan(pan: str) -> str:
    """First 6 and last 4 digits, the rest '*' (PCI DSS display rule)."""
    if len(pan) < 13:
        return "*" * len(pan)
    return pan[:6] + "*" * (len(pan) - 10) + pan[-4:]


def masked_value(tag: int, value: bytes) -> str:
    if tag not in SENSITIVE_TAGS:
        return value.hex().upper()
    if tag == 0x5A:
        return mask_pan(value.hex().upper().rstrip("F"))
    if tag in (0x57, 0x9F6B):
        pan = value.hex().upper().split("D")[0]
        return mask_pan(pan) + "D****"
    return f"<{len(value)} bytes masked>"


def describe(data: bytes | list[TLV], indent: int = 0) -> str:
    """A readable tree with tag names; sensitive values masked."""
    nodes = decode(data) if isinstance(data, (bytes, bytearray)) else data
    lines = []
    for n in nodes:
        name = TAG_NAMES.get(n.tag, "")
        pad = "  " * indent
        if n.constructed:
            lines.append(f"{pad}{n.tag:X} {name}")
            lines.append(describe(n.children, indent + 1))
        else:
            lines.append(f"{pad}{n.tag:X} {name} [{len(n.value)}] {masked_value(n.tag, n.value)}")
    return "\n".join(line for line in lines if line)
