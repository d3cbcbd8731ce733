"""`pos card read`: the read-only part of a contactless EMV transaction, shown as a table.

PPSE -> the highest-priority application -> GPO with default terminal data from the
PDOL -> READ RECORD per AFL. Sensitive tags (PAN, track 2, names) are masked by
`keys.tlv.describe`; a malformed answer is reported by its length, never dumped.
Note that GPO is not free on a real card: a qPBOC/qVSDC card counts it (ATC + 1).
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
from dataclasses import dataclass, field

from hardware.apdu import command
from hardware.errors import HardwareError
from keys.tlv import TLVError, build_dol_data, decode, describe, flatten, mask_pan

PPSE = b"2PAY.SYS.DDF01"
# TTQ: qPBOC/qVSDC, online PIN and signature supported; byte 2: online cryptogram required,
# so a read never spends the card's offline allowance.
DEFAULT_TTQ = bytes.fromhex("26800000")
CID_NAMES = {0x00: "AAC", 0x40: "TC", 0x80: "ARQC"}
STATUS = {0x9000: "ok", 0x6283: "application blocked", 0x6985: "conditions not satisfied",
          0x6A82: "not found", 0x6A83: "record not found", 0x6A86: "wrong P1/P2", 0x6700: "wrong length"}


class CardReadError(HardwareError):
    """The card could not be read (no PPSE, no application, refused command)."""


@dataclass
class Step:
    title: str
    sw: int
    data: bytes
    error: str | None = None  # a TLV decoding problem, described without the bytes

    @property
    def status(self) -> str:
        return f"{self.sw:04X} {STATUS.get(self.sw, '')}".rstrip()


@dataclass
class CardReading:
    reader: str
    atr: bytes
    aid: bytes = b""
    label: str = ""
    priority: int | None = None
    masked_pan: str = ""
    expiry: str = ""
    aip: bytes = b""
    afl: bytes = b""
    cryptogram: str = ""
    atc: bytes = b""
    steps: list[Step] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    tags: dict[int, bytes] = field(default_factory=dict, repr=False)  # holds cardholder data: never print

    def __repr__(self) -> str:
        return f"<CardReading {self.label} {self.aid.hex().upper()} PAN {self.masked_pan}>"


def terminal_data(amount: int = 0, currency: str = "0156", country: str = "0156", ttq: bytes = DEFAULT_TTQ,
                  today: datetime.date | None = None) -> dict[int, bytes]:
    """Default values a PDOL may ask for: tag -> value at its usual length."""
    today = today or datetime.date.today()
    return {0x9F66: ttq, 0x9F02: bytes.fromhex(f"{amount:012d}"), 0x9F03: bytes(6),
            0x9F1A: bytes.fromhex(country), 0x95: bytes(5), 0x5F2A: bytes.fromhex(currency),
            0x9A: bytes.fromhex(today.strftime("%y%m%d")), 0x9C: b"\x00", 0x9F37: os.urandom(4),
            0x9F35: b"\x22", 0x9F33: bytes.fromhex("E0E1C8"), 0x9F40: bytes.fromhex("6000F0A001")}


def _exchange(session, reading: CardReading, title: str, apdu: bytes) -> Step:
    data, sw = session.transmit(apdu)
    step = Step(title, sw, data)
    if data:
        try:
            decode(data)
        except TLVError as exc:
            step.error = str(exc)
            reading.problems.append(f"{title}: malformed TLV ({len(data)} bytes): {exc}")
    reading.steps.append(step)
    return step


def _tags(step: Step) -> dict[int, bytes]:
    return flatten(step.data) if step.data and step.error is None else {}


def _choose(raw: bytes) -> tuple[bytes, str, int | None]:
    """The directory entry with the highest priority (lowest 87 value; none = last)."""
    entries = []
    for node in decode(raw):
        for entry in (n for n in _walk(node) if n.tag == 0x61):
            values = flatten(entry.children)
            if 0x4F in values:
                priority = values[0x87][0] & 0x0F if 0x87 in values else None
                entries.append((priority if priority else 16, values[0x4F], values.get(0x50, b""), priority))
    if not entries:
        raise CardReadError("the PPSE lists no application")
    _, aid, label, priority = min(entries, key=lambda e: e[0])
    return aid, label.decode("ascii", "replace"), priority


def _walk(node):
    yield node
    for child in node.children:
        yield from _walk(child)


def read_card(session, terminal: dict[int, bytes] | None = None) -> CardReading:
    """Run PPSE, SELECT, GPO and READ RECORD on a connected `CardSession`."""
    values = terminal or terminal_data()
    reading = CardReading(session.reader, bytes(session.atr))
    ppse = _exchange(session, reading, "SELECT PPSE", command(0x00, 0xA4, 0x04, 0x00, PPSE, le=0))
    if ppse.sw != 0x9000 or ppse.error:
        raise CardReadError(f"no contactless payment directory (SELECT PPSE answered {ppse.sw:04X})")
    reading.aid, reading.label, reading.priority = _choose(ppse.data)
    select = _exchange(session, reading, "SELECT AID", command(0x00, 0xA4, 0x04, 0x00, reading.aid, le=0))
    fci = _tags(select)
    if select.sw != 0x9000:
        reading.problems.append(f"SELECT AID answered {select.status}")
        return reading
    pdol_data = build_dol_data(fci.get(0x9F38, b""), values)
    gpo = _exchange(session, reading, "GET PROCESSING OPTIONS",
                    command(0x80, 0xA8, 0x00, 0x00, bytes([0x83, len(pdol_data)]) + pdol_data, le=0))
    if gpo.sw != 0x9000:
        reading.problems.append(f"GET PROCESSING OPTIONS answered {gpo.status}")
        return reading
    tags = _tags(gpo)
    if 0x80 in tags and 0x82 not in tags:  # format 1: AIP || AFL
        tags = {0x82: tags[0x80][:2], 0x94: tags[0x80][2:]}
    reading.aip, reading.afl = tags.get(0x82, b""), tags.get(0x94, b"")
    if 0x9F27 in tags:
        reading.cryptogram = CID_NAMES.get(tags[0x9F27][0] & 0xC0, f"CID {tags[0x9F27].hex().upper()}")
    reading.atc = tags.get(0x9F36, b"")
    all_tags = dict(tags)
    for i in range(0, len(reading.afl) - len(reading.afl) % 4, 4):
        sfi, first, last = reading.afl[i] >> 3, reading.afl[i + 1], reading.afl[i + 2]
        for record in range(first, last + 1):
            step = _exchange(session, reading, f"READ RECORD SFI {sfi} #{record}",
                             command(0x00, 0xB2, record, (sfi << 3) | 0x04, le=0))
            if step.sw != 0x9000:
                reading.problems.append(f"{step.title} answered {step.status}")
            for tag, value in _tags(step).items():
                all_tags.setdefault(tag, value)
    reading.tags = all_tags
    _summarise(reading, all_tags)
    return reading


def _pan(tags: dict[int, bytes]) -> str:
    pan = tags.get(0x5A, b"").hex().upper().rstrip("F")
    if not pan and 0x57 in tags:
        pan = tags[0x57].hex().upper().split("D")[0]
    return pan


def _summarise(reading: CardReading, tags: dict[int, bytes]) -> None:
    pan = _pan(tags)
    reading.masked_pan = mask_pan(pan) if pan else "(none)"
    expiry = tags.get(0x5F24, b"").hex()
    if len(expiry) == 6 and expiry.isdigit():
        reading.expiry = f"20{expiry[:2]}-{expiry[2:4]}"
        if (int(expiry[:2]) + 2000, int(expiry[2:4])) < (datetime.date.today().year, datetime.date.today().month):
            reading.expiry += " (expired)"


def render(reading: CardReading) -> str:
    rows = [("Reader", reading.reader), ("ATR", reading.atr.hex().upper()),
            ("Application", f"{reading.label} ({reading.aid.hex().upper()})"
             + (f", priority {reading.priority}" if reading.priority else "")),
            ("PAN", reading.masked_pan or "(not read)"), ("Expiry", reading.expiry or "(not read)"),
            ("AIP", reading.aip.hex().upper() or "-"), ("AFL", reading.afl.hex().upper() or "-")]
    if reading.cryptogram:
        rows.append(("Cryptogram", f"{reading.cryptogram}, ATC {reading.atc.hex().upper()}"))
    lines = [f"{k:<12} {v}" for k, v in rows]
    for problem in reading.problems:
        lines.append(f"{'Problem':<12} {problem}")
    for step in reading.steps:
        lines += ["", f"{step.title}  [{step.status}]"]
        if step.error:
            lines.append(f"  <{len(step.data)} bytes, malformed TLV: {step.error}>")
        elif step.data:
            lines += ["  " + line for line in describe(step.data).splitlines()]
    text = "\n".join(lines)
    pan = _pan(reading.tags)
    # Some values carry the PAN in clear beyond 5A/57 (an SM2 ICC certificate, format 14).
    return text.replace(pan, mask_pan(pan)) if len(pan) >= 12 else text


def _cmd_card_read(args: argparse.Namespace) -> int:
    from hardware.reader import Reader

    try:
        with Reader.open(args.reader) as reader:
            with reader.wait_for_card(args.timeout) as session:
                reading = read_card(session, terminal_data(amount=args.amount, currency=args.currency))
    except HardwareError as exc:
        print(f"pos: {exc}", file=sys.stderr)
        return 1
    print(render(reading))
    return 1 if reading.problems else 0


def _amount(text: str) -> int:
    if not (text.isdigit() and len(text) <= 12):
        raise argparse.ArgumentTypeError(f"amount must be 0..999999999999 minor units, got {text!r}")
    return int(text)


def _currency(text: str) -> str:
    if not (len(text) == 4 and text.isdigit()):
        raise argparse.ArgumentTypeError(f"currency must be 4 digits (ISO 4217 numeric, e.g. 0156), got {text!r}")
    return text


def register_card_read(card_sub: argparse._SubParsersAction) -> None:
    """Add `read` under the `pos card` subcommands."""
    p = card_sub.add_parser("read", help="read a contactless card (PPSE, GPO, records) and show its data, masked")
    p.add_argument("--reader", help="reader name substring or index (default: the first)")
    p.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for a tap (default %(default)s)")
    p.add_argument("--amount", type=_amount, default=0, help="amount in minor units for the PDOL (default 0)")
    p.add_argument("--currency", default="0156", type=_currency, help="ISO 4217 numeric currency, 4 digits (default %(default)s)")
    p.set_defaults(func=_cmd_card_read)
