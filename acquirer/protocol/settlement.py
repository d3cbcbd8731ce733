"""Field 48 of settlement (0500) and batch upload (0320): fixed-width ASCII groups.

Totals, one 34-character group per channel:
    channel (2: CD card, QR, FC face) | sale count (4) | sale amount (12, fen) |
    refund count (4) | refund amount (12, fen)
Upload items, one 34-character group per transaction:
    STAN (6) | kind (2: SA sale, QR, QM merchant QR, FC face, RF refund, VD void) |
    channel (2) | amount (12, fen) | RRN (12)
"""
from __future__ import annotations

from .message import ProtocolError

GROUP = 34
CHANNELS = ("CD", "QR", "FC")
KINDS = {"SA": "sale", "QR": "qr", "QM": "qr_merchant", "FC": "face", "RF": "refund", "VD": "void"}
KIND_CODES = {v: k for k, v in KINDS.items()}


def encode_totals(totals: dict[str, tuple[int, int, int, int]]) -> str:
    out = ""
    for channel in CHANNELS:
        sc, sa, rc, ra = totals.get(channel, (0, 0, 0, 0))
        out += f"{channel}{sc:04d}{sa:012d}{rc:04d}{ra:012d}"
    return out.encode("ascii").hex().upper()


def _groups(hexvalue: str, field: str = "48") -> list[str]:
    try:
        text = bytes.fromhex(hexvalue).decode("ascii")
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError(field, "is not ASCII") from None
    if len(text) % GROUP:
        raise ProtocolError(field, f"length {len(text)} is not a multiple of {GROUP}")
    return [text[i : i + GROUP] for i in range(0, len(text), GROUP)]


def decode_totals(hexvalue: str) -> dict[str, tuple[int, int, int, int]]:
    out = {}
    for g in _groups(hexvalue):
        if g[:2] not in CHANNELS or not g[2:].isdigit():
            raise ProtocolError("48", f"bad totals group {g[:2]!r}")
        out[g[:2]] = (int(g[2:6]), int(g[6:18]), int(g[18:22]), int(g[22:34]))
    return out


def encode_items(items: list[tuple[str, str, str, int, str]]) -> str:
    """(stan, kind, channel, amount, rrn) -> field 48 hex."""
    text = "".join(f"{stan:0>6}{KIND_CODES[kind]}{channel}{amount:012d}{rrn:<12}"[:GROUP] for stan, kind, channel,
                   amount, rrn in items)
    return text.encode("ascii").hex().upper()


def decode_items(hexvalue: str) -> list[tuple[str, str, str, int, str]]:
    out = []
    for g in _groups(hexvalue):
        stan, kind, channel, amount, rrn = g[:6], g[6:8], g[8:10], g[10:22], g[22:34]
        if not stan.isdigit() or kind not in KINDS or channel not in CHANNELS or not amount.isdigit():
            raise ProtocolError("48", f"bad batch upload item for STAN {stan!r}")
        out.append((stan, KINDS[kind], channel, int(amount), rrn.strip()))
    return out
