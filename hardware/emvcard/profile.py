"""Card profiles: the TOML a simulated EMV card is personalised from, read and checked.

A profile names everything an issuer decides at card issuance (PAN, expiry, AID,
offline limits, balance) and, for test cards, the faults the card should show. Errors
name the file and the field; a PAN is only ever shown masked.
"""
from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from keys.emv import CardFamily
from keys.tlv import mask_pan

PROFILE_DIR = Path(__file__).with_name("profiles")

# Test certificate authorities the project makes itself (see ca.py); indexes chosen as test ones.
DEFAULT_CA = {CardFamily.PBOC_SM4: ("A000000333", 0x80), CardFamily.EMV_TDES: ("A000000003", 0x92)}


class ProfileError(ValueError):
    """A card profile that cannot be personalised; the message names file and field."""


def luhn_check_digit(digits: str) -> str:
    """The Luhn (ISO/IEC 7812-1 annex B) check digit for `digits` (without it)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return str((10 - total % 10) % 10)


def luhn_valid(pan: str) -> bool:
    return len(pan) >= 2 and pan.isdigit() and luhn_check_digit(pan[:-1]) == pan[-1]


@dataclass(frozen=True)
class Faults:
    """Misbehaviour of a test card; every one has its outcome written in docs/cards.md."""

    blocked: bool = False  # SELECT answers FCI + 6283, GPO answers 6985
    decline: bool = False  # the card answers every cryptogram request with an AAC
    wrong_ac_key: bool = False  # the card holds an ICC master key the issuer never derived
    malformed_record: bool = False  # SFI 1 record 1 carries a TLV whose length overruns
    truncated_gpo: bool = False  # the GPO response template is cut short
    delay_ms: float = 0.0  # sleep before every answer (relay-detection tests)
    vanish_on_read_record: int = 0  # leave the field on the Nth READ RECORD (0: never)

    @property
    def any(self) -> bool:
        return self != Faults()


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    family: CardFamily
    aid: bytes
    label: str
    priority: int
    pan: str
    psn: str
    expiry: tuple[int, int]  # (year, month)
    effective: tuple[int, int]
    service_code: str
    currency: str  # ISO 4217 numeric, 4 digits as in 5F2A ("0156")
    country: str  # ISO 3166 numeric, 4 digits as in 5F28
    language: str
    atr_historical: bytes
    ca_rid: bytes
    ca_index: int
    fdda: bool
    ec_balance: int | None  # PBOC electronic cash (minor units); None: no EC application
    ec_single_limit: int | None
    consecutive_offline_limit: int
    cumulative_offline_limit: int
    ctq: bytes
    wallet: bool  # a phone wallet (HCE) token rather than a plastic card
    faults: Faults = field(default_factory=Faults)
    digest: str = ""  # fingerprint of the TOML file: a changed profile is personalised anew

    @property
    def masked_pan(self) -> str:
        return mask_pan(self.pan)

    @property
    def is_pboc(self) -> bool:
        return self.family is CardFamily.PBOC_SM4

    @property
    def expiry_yymm(self) -> str:
        return f"{self.expiry[0] % 100:02d}{self.expiry[1]:02d}"

    def __repr__(self) -> str:
        return f"<Profile {self.name} {self.family.value} {self.aid.hex().upper()} PAN {self.masked_pan}>"


def profile_names() -> list[str]:
    """Names of the built-in profiles (the TOML files under profiles/)."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


def profile_path(name_or_path: str | Path) -> Path:
    """A built-in profile name, or the path of a profile TOML file."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or candidate.parent != Path("."):
        if not candidate.is_file():
            raise ProfileError(f"card profile file {candidate} does not exist")
        return candidate
    builtin = PROFILE_DIR / f"{name_or_path}.toml"
    if not builtin.is_file():
        raise ProfileError(f"unknown card profile {str(name_or_path)!r}; profiles: {', '.join(profile_names())}")
    return builtin


def load_profile(name_or_path: str | Path) -> Profile:
    path = profile_path(name_or_path)
    raw = path.read_bytes()
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: not valid TOML: {exc}") from None
    return _parse(doc, path, hashlib.sha256(raw).hexdigest()[:16])


class _Reader:
    """Typed access to one TOML table, with errors naming `file: table.field`."""

    def __init__(self, path: Path, table: dict, prefix: str = "") -> None:
        self.path, self.table, self.prefix = path, table, prefix

    def fail(self, key: str, reason: str) -> ProfileError:
        return ProfileError(f"{self.path}: {self.prefix}{key}: {reason}")

    def get(self, key: str, kind: type, default=...):
        if key not in self.table:
            if default is ...:
                raise self.fail(key, "is missing")
            return default
        value = self.table[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(key, f"must be a {kind.__name__}, got {type(value).__name__}")
        return value

    def hex(self, key: str, length: int | tuple[int, int], default=...) -> bytes:
        text = self.get(key, str, default)
        if text is None:
            return None
        try:
            value = bytes.fromhex(text.replace(" ", ""))
        except ValueError:
            raise self.fail(key, "must be hex digits") from None
        low, high = (length, length) if isinstance(length, int) else length
        if not low <= len(value) <= high:
            raise self.fail(key, f"must be {low}..{high} bytes, got {len(value)}")
        return value

    def digits(self, key: str, length: int, default=...) -> str:
        value = self.get(key, str, default)
        if not (value.isascii() and value.isdigit() and len(value) == length):
            raise self.fail(key, f"must be {length} decimal digits")
        return value

    def month(self, key: str) -> tuple[int, int]:
        value = self.get(key, str)
        match = re.fullmatch(r"(\d{4})-(\d{2})", value)
        if not match or not 1 <= int(match[2]) <= 12:
            raise self.fail(key, "must be a month as YYYY-MM")
        return int(match[1]), int(match[2])

    def amount(self, key: str, default=...) -> int | None:
        value = self.get(key, int, default)
        if value is not None and not 0 <= value <= 999_999_999_999:
            raise self.fail(key, "must be 0..999999999999 minor units")
        return value

    def sub(self, key: str) -> "_Reader":
        table = self.table.get(key, {})
        if not isinstance(table, dict):
            raise self.fail(key, "must be a table")
        return _Reader(self.path, table, f"{self.prefix}{key}.")


def _parse(doc: dict, path: Path, digest: str) -> Profile:
    top = _Reader(path, doc)
    try:
        family = CardFamily(top.get("family", str))
    except ValueError:
        raise top.fail("family", "must be PBOC_SM4 or EMV_TDES") from None
    app, account, risk = top.sub("application"), top.sub("account"), top.sub("risk")
    fault = top.sub("faults")

    pan = account.get("pan", str)
    if not (pan.isascii() and pan.isdigit() and 12 <= len(pan) <= 19):
        raise account.fail("pan", f"must be 12-19 decimal digits (got {len(pan)} characters)")
    if not luhn_valid(pan):
        raise account.fail("pan", f"{mask_pan(pan)} fails the Luhn check")
    default_rid, default_index = DEFAULT_CA[family]
    label = app.get("label", str)
    if not (label.isascii() and 1 <= len(label) <= 16):
        raise app.fail("label", "must be 1..16 ASCII characters")
    priority = app.get("priority", int, 1)
    if not 1 <= priority <= 15:
        raise app.fail("priority", "must be 1..15")
    consecutive = risk.get("consecutive_offline_limit", int, 0)
    if not 0 <= consecutive <= 255:
        raise risk.fail("consecutive_offline_limit", "must be 0..255")
    return Profile(
        name=top.get("name", str, path.stem),
        description=top.get("description", str, ""),
        family=family,
        aid=app.hex("aid", (5, 16)),
        label=label,
        priority=priority,
        pan=pan,
        psn=account.digits("psn", 2, "00"),
        expiry=account.month("expiry"),
        effective=account.month("effective"),
        service_code=account.digits("service_code", 3, "220"),
        currency=app.digits("currency", 4, "0156"),
        country=app.digits("country", 4, "0156"),
        language=app.get("language", str, "zhen"),
        atr_historical=top.hex("atr_historical", (0, 15), ""),
        ca_rid=app.hex("ca_rid", 5, default_rid),
        ca_index=app.get("ca_index", int, default_index),
        fdda=risk.get("fdda", bool, True),
        ec_balance=risk.amount("ec_balance", None),
        ec_single_limit=risk.amount("ec_single_limit", None),
        consecutive_offline_limit=consecutive,
        cumulative_offline_limit=risk.amount("cumulative_offline_limit", 0),
        ctq=risk.hex("ctq", 2, "0000"),
        wallet=top.get("wallet", bool, False),
        faults=Faults(
            blocked=fault.get("blocked", bool, False),
            decline=fault.get("decline", bool, False),
            wrong_ac_key=fault.get("wrong_ac_key", bool, False),
            malformed_record=fault.get("malformed_record", bool, False),
            truncated_gpo=fault.get("truncated_gpo", bool, False),
            delay_ms=fault.get("delay_ms", float, 0.0),
            vanish_on_read_record=fault.get("vanish_on_read_record", int, 0),
        ),
        digest=digest,
    )
