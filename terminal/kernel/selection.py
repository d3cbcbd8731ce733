"""Application selection: PPSE directory, candidate list, final SELECT (EMV Book B / Book 1).

The candidate list holds every directory entry whose ADF name matches a configured AID,
exactly or (where the AID allows partial selection) as a prefix, in the card's priority
order (tag 87, 1 highest; no priority last), then the terminal's, then directory order.
"""
from __future__ import annotations

from dataclasses import dataclass

from hardware.apdu import command

from .carddata import CardDataError, template
from .config import AidConfig
from .relay import TimedCard

PPSE = b"2PAY.SYS.DDF01"
SW_OK, SW_BLOCKED = 0x9000, 0x6283
NO_PRIORITY = 16  # sorts after 1..15


@dataclass(frozen=True)
class DirectoryEntry:
    adf_name: bytes
    label: str
    priority: int  # 1..15, or NO_PRIORITY
    position: int  # order in the directory


@dataclass(frozen=True)
class Candidate:
    entry: DirectoryEntry
    config: AidConfig


@dataclass(frozen=True)
class Fci:
    df_name: bytes
    label: str
    pdol: bytes


def _label(raw: bytes | None) -> str:
    # Tag 50 is "ans": printable ASCII only; anything else is dropped, not trusted.
    if not raw:
        return ""
    return "".join(chr(b) for b in raw if 0x20 <= b < 0x7F)[:16]


def _priority(raw: bytes | None) -> int:
    if not raw or len(raw) != 1 or not raw[0] & 0x0F:
        return NO_PRIORITY
    return raw[0] & 0x0F


def select_ppse(card: TimedCard) -> tuple[list[DirectoryEntry], int]:
    """The PPSE directory entries, with the status word (entries empty unless 9000)."""
    data, sw = card.exchange("SELECT PPSE", command(0x00, 0xA4, 0x04, 0x00, PPSE, le=0))
    if sw != SW_OK:
        return [], sw
    fci = template(data, "PPSE", (0x6F,))
    proprietary = next((c for c in fci.children if c.tag == 0xA5), None)
    directory = next((c for c in proprietary.children if c.tag == 0xBF0C), None) if proprietary else None
    if directory is None:
        raise CardDataError("PPSE", "no directory (A5/BF0C) in the answer")
    entries = []
    for position, node in enumerate(c for c in directory.children if c.tag == 0x61):
        fields = {c.tag: c.value for c in node.children if not c.constructed}
        name = fields.get(0x4F, b"")
        if not 5 <= len(name) <= 16:
            raise CardDataError("PPSE", f"directory entry {position + 1} has no valid AID")
        entries.append(DirectoryEntry(name, _label(fields.get(0x50)), _priority(fields.get(0x87)), position))
    return entries, sw


def candidates(entries: list[DirectoryEntry], aids: tuple[AidConfig, ...]) -> list[Candidate]:
    out = []
    for entry in entries:
        matching = [a for a in aids if entry.adf_name == a.aid
                    or (a.partial and entry.adf_name.startswith(a.aid))]
        if matching:
            # The most specific configured AID speaks for the application.
            out.append(Candidate(entry, max(matching, key=lambda a: len(a.aid))))
    return sorted(out, key=lambda c: (c.entry.priority, c.config.priority, c.entry.position))


def final_select(card: TimedCard, candidate: Candidate) -> tuple[Fci | None, int]:
    """SELECT the ADF; (FCI, 9000) on success, (None, sw) for any other status word."""
    name = candidate.entry.adf_name
    data, sw = card.exchange("SELECT AID", command(0x00, 0xA4, 0x04, 0x00, name, le=0))
    if sw != SW_OK:
        return None, sw
    fci = template(data, "SELECT AID", (0x6F,))
    fields = {c.tag: c.value for c in fci.children if not c.constructed}
    df_name = fields.get(0x84, b"")
    # EMV Book 1 12.3.3: the DF name answered must be the one selected (or extend it).
    if not df_name.startswith(name):
        raise CardDataError("SELECT AID", "the card answered for another application")
    proprietary = next((c for c in fci.children if c.tag == 0xA5), None)
    inner = {c.tag: c.value for c in proprietary.children if not c.constructed} if proprietary else {}
    return Fci(df_name, _label(inner.get(0x50)) or candidate.entry.label, inner.get(0x9F38, b"")), sw
