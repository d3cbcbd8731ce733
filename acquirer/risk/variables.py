"""What a rule can look at: the facts of one transaction, and the catalogue of variables.

`Facts` is the engine's whole view of a transaction; it holds no ISO8583 and no PAN
(the card is a keyed token and a masked PAN). The catalogue maps each variable name
to how it is read from the facts and the windowed counters, with a sample value the
rules loader uses to type-check every condition before a file goes live.

Counters (`card.*`, `terminal.*`, `merchant.*`) include the transaction being decided:
`count_*` counts attempts whatever their outcome, `amount_*` sums what the engine let
through plus this amount, `round_*` counts attempts with a round amount. Windows: `1m`
(exact, sliding), `1h` (sliding, minute buckets), `1d` and `month` (calendar, China
Standard Time, like the ledger's business day).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from .counters import METRICS, SCOPES, WINDOWS, stat_index

ROUND_UNIT = 10_000  # fen: a whole number of hundreds of yuan is a "round" amount
NIGHT_START_HOUR, NIGHT_END_HOUR = 22, 6  # business time (UTC+8)
_BUSINESS_OFFSET_S = 8 * 3600


@dataclass(slots=True)
class Facts:
    txn_id: str
    terminal_id: str
    merchant_id: str
    amount: int  # fen
    at: float = 0.0  # epoch seconds; 0: the engine's clock
    channel: str = "card"  # card, qr, face
    kind: str = "sale"
    device_id: str = ""
    merchant_grade: str = "B"
    merchant_mcc: str = ""
    merchant_mobile: bool = False
    card_token: str = ""  # keyed token of the PAN (CardVault.token); "" when unknown
    masked_pan: str = ""
    card_family: str = ""  # e.g. PBOC_SM4; "" when unknown
    pin_present: bool = False
    passcode_present: bool = False
    cdcvm: bool = False  # the phone verified its holder (consumer device CVM)
    entry_mode: str = ""
    flags: frozenset[str] = field(default_factory=frozenset)
    location_status: str = "none"  # none, unfenced, inside, outside, missing, refused
    location_required: bool = False
    location_refusal: str = ""
    location_reason: str = ""
    location_offset_m: float = 0.0
    location_distance_m: float = -1.0  # -1: unknown
    location_fix_age_s: float = -1.0
    location_cells: str = "unknown"  # match, mismatch, unknown

    @property
    def round_amount(self) -> bool:
        return self.amount >= ROUND_UNIT and self.amount % ROUND_UNIT == 0


def normalise_flag(flag: str) -> str:
    """`RELAY_SUSPECTED`, `relay suspected` and `relay-suspected` are one flag."""
    return "-".join(flag.strip().lower().replace("_", " ").split())


def card_scheme(masked_pan: str) -> str:
    """The scheme from the BIN (first digits), as far as the masked PAN shows them."""
    p = masked_pan
    if p.startswith("62") or p.startswith("81"):
        return "unionpay"
    if p.startswith("4"):
        return "visa"
    if p[:2] in ("51", "52", "53", "54", "55") or "2221" <= p[:4] <= "2720":
        return "mastercard"
    if p[:2] in ("34", "37"):
        return "amex"
    if p[:2] == "35":
        return "jcb"
    return "unknown" if p else ""


@dataclass(frozen=True)
class Variable:
    name: str
    source: str  # a Python expression over `f` (Facts) and `s` (counter snapshots), ours, not the rules'
    doc: str
    get: Callable[[Facts, Any], Any] = field(compare=False, repr=False, default=None)


def _hour(at: float) -> int:
    return int((at + _BUSINESS_OFFSET_S) % 86400 // 3600)


def _weekday(at: float) -> int:
    return int((at + _BUSINESS_OFFSET_S) // 86400 + 3) % 7  # 1970-01-01 was a Thursday


# what the variables' expressions may call; rules themselves can call nothing
HELPERS: dict[str, Any] = {"card_scheme": card_scheme, "hour": _hour, "weekday": _weekday,
                           "NIGHT_START": NIGHT_START_HOUR, "NIGHT_END": NIGHT_END_HOUR, "ROUND": ROUND_UNIT}

_PLAIN = [
    ("txn.amount", "f.amount", "amount in fen"),
    ("txn.channel", "f.channel", "card, qr or face"),
    ("txn.kind", "f.kind", "sale (the only kind assessed today)"),
    ("txn.pin_present", "f.pin_present", "an online PIN block was sent (field 52)"),
    ("txn.passcode_present", "f.passcode_present", "a face-pay passcode block was sent"),
    ("txn.cdcvm", "f.cdcvm", "the phone verified its holder (CTQ byte 2 bit 8)"),
    ("txn.entry_mode", "f.entry_mode", "field 22, e.g. 071/072 contactless"),
    ("txn.flags", "f.flags", "terminal risk flags (DF0A), e.g. relay-suspected"),
    ("txn.round_amount", "f.amount >= ROUND and f.amount % ROUND == 0", "a whole number of hundreds of yuan"),
    ("card.token", "f.card_token", "keyed PAN token; '' when unknown"),
    ("card.masked_pan", "f.masked_pan", "first 6 and last 4 digits"),
    ("card.bin", "f.masked_pan[:6]", "first 6 digits"),
    ("card.scheme", "card_scheme(f.masked_pan)", "unionpay, visa, mastercard, amex, jcb, unknown"),
    ("card.family", "f.card_family", "kernel card family, e.g. PBOC_SM4"),
    ("terminal.id", "f.terminal_id", "terminal id (field 41)"),
    ("merchant.id", "f.merchant_id", "merchant id"),
    ("merchant.risk_grade", "f.merchant_grade", "A (low risk) to D (under watch)"),
    ("merchant.mcc", "f.merchant_mcc", "merchant category code"),
    ("merchant.mobile", "f.merchant_mobile", "a mobile seller"),
    ("device.id", "f.device_id", "the secure world's device id bound at activation"),
    ("location.status", "f.location_status", "none, unfenced, inside, outside, missing, refused"),
    ("location.required", "f.location_required", "a fix is required for the terminal"),
    ("location.refusal", "f.location_refusal", "why a report was refused: replay, forged, foreign, speed, stale..."),
    ("location.offset_m", "f.location_offset_m", "metres beyond the fence (<= 0 inside)"),
    ("location.distance_m", "f.location_distance_m", "metres from the site; -1 unknown"),
    ("location.fix_age_s", "f.location_fix_age_s", "age of the fix; -1 unknown"),
    ("location.cells", "f.location_cells", "match, mismatch or unknown"),
    ("time.hour", "hour(f.at)", "0-23, China Standard Time"),
    ("time.weekday", "weekday(f.at)", "0 Monday .. 6 Sunday"),
    ("time.night", "not NIGHT_END <= hour(f.at) < NIGHT_START", f"{NIGHT_START_HOUR}:00 to {NIGHT_END_HOUR}:00"),
    ("time.weekend", "weekday(f.at) >= 5", "Saturday or Sunday"),
]


def _catalogue() -> dict[str, Variable]:
    entries = list(_PLAIN)
    for scope in SCOPES:
        for metric in METRICS:
            for window in WINDOWS:
                entries.append((f"{scope}.{metric}_{window}", f"s.{scope}[{stat_index(metric, window)}]",
                                f"{metric} per {scope}, {window} window (this transaction included)"))
    out = {}
    for name, source, doc in entries:
        get = eval(f"lambda f, s: {source}", {"__builtins__": {}, **HELPERS})  # noqa: S307 - our own table
        out[name] = Variable(name, source, doc, get)
    return out


CATALOGUE: dict[str, Variable] = _catalogue()


class Snapshot:
    """Counter values per scope for one decision: 12 values laid out as `stat_index` reads
    them (the tallies' own `Tally.v` lists while the engine decides)."""

    __slots__ = ("card", "terminal", "merchant")

    def __init__(self, card: Sequence[int] = (1,) * 12, terminal: Sequence[int] | None = None,
                 merchant: Sequence[int] | None = None):
        self.card = card
        self.terminal = card if terminal is None else terminal
        self.merchant = card if merchant is None else merchant


def sample_facts() -> Facts:
    """Facts of the right types for checking a condition before it goes live."""
    return Facts("T:000001:000001", "T0000001", "M", 1, 1.0)


def scope_of(name: str) -> str | None:
    """The counter scope a variable reads, if it is a counter."""
    head, _, tail = name.partition(".")
    return head if head in SCOPES and tail.split("_", 1)[0] in METRICS else None
