"""The card's data objects: GPO answer (format 1 and 2), AFL, READ RECORD, and the store.

Everything the card sends is untrusted: every length is checked here, and a malformed
answer becomes a `CardDataError` naming where it happened (never the bytes, which may
hold card data). The store refuses one tag sent twice with different values (EMV
Book 3, 10.2: redundant data objects end the transaction).
"""
from __future__ import annotations

from dataclasses import dataclass

from hardware.apdu import command
from keys.tlv import TLV, TLVError, decode, walk

from .relay import TimedCard


MAX_RECORDS = 64  # a damaged or hostile AFL must not keep the card reading for seconds


class CardDataError(Exception):
    """The card sent something the kernel cannot use; `where` is safe to show."""

    def __init__(self, where: str, why: str = "") -> None:
        self.where, self.why = where, why
        super().__init__(f"{where}: {why}" if why else where)


def template(data: bytes, where: str, tags: tuple[int, ...]) -> TLV:
    """The one constructed object `data` must be (e.g. 6F, 70, 77), decoded strictly."""
    try:
        nodes = decode(data)
    except TLVError as exc:
        raise CardDataError(where, f"malformed TLV ({exc})") from None
    if len(nodes) != 1 or nodes[0].tag not in tags:
        want = " or ".join(f"{t:X}" for t in tags)
        raise CardDataError(where, f"expected one template {want}")
    return nodes[0]


@dataclass(frozen=True)
class AflEntry:
    sfi: int
    first: int
    last: int
    oda_count: int  # records from `first` that count for offline data authentication


def parse_afl(afl: bytes) -> list[AflEntry]:
    """EMV Book 3, 10.2: 4 bytes per entry; SFI 1..30, 1 <= first <= last, ODA count fits."""
    if not afl or len(afl) % 4:
        raise CardDataError("GPO answer", "AFL is not a whole number of 4-byte entries")
    out = []
    for i in range(0, len(afl), 4):
        sfi, first, last, oda = afl[i] >> 3, afl[i + 1], afl[i + 2], afl[i + 3]
        if afl[i] & 0x07 or not 1 <= sfi <= 30 or first == 0 or last < first or oda > last - first + 1:
            raise CardDataError("GPO answer", f"AFL entry {i // 4 + 1} is not valid")
        out.append(AflEntry(sfi, first, last, oda))
    if sum(e.last - e.first + 1 for e in out) > MAX_RECORDS:
        raise CardDataError("GPO answer", f"AFL lists more than {MAX_RECORDS} records")
    return out


@dataclass(frozen=True)
class GpoAnswer:
    aip: bytes
    afl: bytes
    items: tuple[tuple[int, bytes], ...]  # every primitive object of a format 2 answer


def parse_gpo(data: bytes) -> GpoAnswer:
    node = template(data, "GPO answer", (0x80, 0x77))
    if node.tag == 0x80:
        # Format 1: AIP (2) || AFL, no tags; a quick-flow card never answers so.
        if len(node.value) < 6:
            raise CardDataError("GPO answer", "format 1 answer too short")
        return GpoAnswer(node.value[:2], node.value[2:], ((0x82, node.value[:2]), (0x94, node.value[2:])))
    items = tuple((n.tag, n.value) for n in walk(node.children) if not n.constructed)
    values = dict(items)
    if len(values.get(0x82, b"")) != 2 or 0x94 not in values:
        raise CardDataError("GPO answer", "AIP (82) or AFL (94) missing")
    return GpoAnswer(values[0x82], values[0x94], items)


def parse_generate_ac(data: bytes) -> tuple[tuple[int, bytes], ...]:
    """GENERATE AC answer as (tag, value) pairs: format 1 (80: CID | ATC | AC | IAD) or 2 (77)."""
    node = template(data, "GENERATE AC answer", (0x80, 0x77))
    if node.tag == 0x80:
        v = node.value
        if len(v) < 11:
            raise CardDataError("GENERATE AC answer", "format 1 answer too short")
        items = [(0x9F27, v[:1]), (0x9F36, v[1:3]), (0x9F26, v[3:11])]
        return tuple(items + ([(0x9F10, v[11:])] if len(v) > 11 else []))
    return tuple((n.tag, n.value) for n in walk(node.children) if not n.constructed)


class CardStore:
    """Primitive data objects from GPO and records, each tag once."""

    def __init__(self) -> None:
        self.tags: dict[int, bytes] = {}

    def add(self, items, where: str) -> None:
        for tag, value in items:
            known = self.tags.get(tag)
            if known is not None and known != value:
                raise CardDataError(where, f"tag {tag:X} sent twice with different values")
            self.tags[tag] = value

    def get(self, tag: int, default=None):
        return self.tags.get(tag, default)

    def __contains__(self, tag: int) -> bool:
        return tag in self.tags

    def need(self, tag: int, length: int | tuple[int, int] | None = None) -> bytes:
        """A value the card must have sent, with a length in range."""
        value = self.tags.get(tag)
        if value is None:
            raise CardDataError("card data", f"mandatory tag {tag:X} missing")
        low, high = (length, length) if isinstance(length, int) else (length or (0, 1 << 16))
        if not low <= len(value) <= high:
            raise CardDataError("card data", f"tag {tag:X} has a wrong length")
        return value


def read_records(card: TimedCard, afl: list[AflEntry], store: CardStore) -> bytes:
    """READ RECORD every record of the AFL into `store`; returns the ODA record data.

    Static data to be authenticated (EMV Book 3, 10.3): for SFI 1-10, the value of the
    record template 70; for SFI 11-30, the whole record as read.
    """
    static = bytearray()
    for entry in afl:
        for number in range(entry.first, entry.last + 1):
            where = f"record SFI {entry.sfi} number {number}"
            data, sw = card.exchange("READ RECORD", command(0x00, 0xB2, number, (entry.sfi << 3) | 4, le=0))
            if sw != 0x9000:
                raise CardDataError(where, f"card answered {sw:04X}")
            for_oda = number - entry.first < entry.oda_count
            if entry.sfi > 10:
                # Issuer/payment-system files: signed as read, and nothing in them the kernel uses.
                if for_oda:
                    static += data
                continue
            node = template(data, where, (0x70,))
            if for_oda:
                static += node.value
            store.add(((n.tag, n.value) for n in walk(node.children) if not n.constructed), where)
    return bytes(static)
