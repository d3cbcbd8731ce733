"""What goes into the kernel (a transaction request) and what comes out (a result).

A `KernelResult` holds cardholder data (PAN, PSN, expiry, track 2): it stays inside the
secure world. Its repr shows the PAN masked and nothing of track 2, so a stray log line
or traceback cannot leak it; `public()` is the view the normal world may receive.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from enum import Enum

from keys.tlv import mask_pan

MAX_AMOUNT = 999_999_999_999  # 12 BCD digits, the size of 9F02


class Outcome(str, Enum):
    APPROVED_OFFLINE = "APPROVED_OFFLINE"  # the card gave a TC and the kernel accepted it
    ONLINE_REQUEST = "ONLINE_REQUEST"  # an ARQC to send to the issuer
    DECLINED = "DECLINED"  # an AAC, or the kernel refused the card's answer
    TRY_AGAIN = "TRY_AGAIN"  # the card left the field: tap again
    USE_ANOTHER_INTERFACE = "USE_ANOTHER_INTERFACE"  # not contactless: insert, or another method
    END_APPLICATION = "END_APPLICATION"  # the card cannot be used (data error, not accepted)
    APPROVED = "APPROVED"  # approved online: only `Kernel.complete` gives it


CVM_NO_CVM, CVM_ONLINE_PIN, CVM_CDCVM = "NO_CVM", "ONLINE_PIN", "CDCVM"


def _digits(value: str, name: str) -> str:
    """ISO numeric codes as the 4 digits EMV sends ("156" -> "0156")."""
    if not (isinstance(value, str) and value.isascii() and value.isdigit() and 3 <= len(value) <= 4):
        raise ValueError(f"{name}: must be a 3- or 4-digit ISO numeric code, got {value!r}")
    return value.zfill(4)


@dataclass(frozen=True)
class TransactionRequest:
    """One sale as the secure world asks for it. Amounts are minor units (fen)."""

    amount: int
    amount_other: int = 0
    currency: str = "0156"
    country: str = "0156"
    txn_type: int = 0x00  # 9C: 00 goods/services, 01 cash, 09 cashback, 20 refund
    date: datetime.date | None = None  # None: today (local date)
    sequence_counter: int | None = None  # 9F41, kept by the TEE; None leaves 9F41 out

    def __post_init__(self) -> None:
        for name in ("amount", "amount_other"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_AMOUNT:
                raise ValueError(f"{name}: must be a whole number of minor units, 0..{MAX_AMOUNT}")
        object.__setattr__(self, "currency", _digits(self.currency, "currency"))
        object.__setattr__(self, "country", _digits(self.country, "country"))
        t = self.txn_type
        if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t <= 0x99 or (t & 0x0F) > 9:
            raise ValueError("txn_type: must be a 2-digit BCD transaction type such as 0x00")
        if self.sequence_counter is not None and not 0 <= self.sequence_counter <= 99_999_999:
            raise ValueError("sequence_counter: must be 0..99999999 (8 BCD digits)")

    @property
    def today(self) -> datetime.date:
        return self.date or datetime.date.today()


@dataclass
class KernelResult:
    outcome: Outcome
    reason: str  # plain words for the cashier; never card data
    aid: bytes = b""
    label: str = ""
    family: str = ""  # "PBOC_SM4" | "EMV_TDES" | "" (before an application was chosen)
    pan: str = ""  # SENSITIVE from here to track2
    psn: str = ""
    expiry: str = ""  # YYMM
    track2: bytes = b""
    icc_data: bytes = b""  # field 55 TLVs (no PAN, no track 2)
    oda: str = "not performed: no card data"
    cvm: str = CVM_NO_CVM
    tvr: bytes = bytes(5)
    relay_suspected: bool = False
    apdu_timings_ms: list[float] = field(default_factory=list)
    card_in_field_ms: float = 0.0
    apdu_commands: list[str] = field(default_factory=list)  # names, aligned with apdu_timings_ms
    cryptogram: str = ""  # "ARQC" | "TC" | "AAC" | ""
    # What the second GENERATE AC needs (standard flow); opaque to callers.
    continuation: object = field(default=None, repr=False, compare=False)

    @property
    def masked_pan(self) -> str:
        return mask_pan(self.pan) if self.pan else ""

    def public(self) -> dict:
        """Everything the normal world may see: no PAN, PSN, expiry or track 2."""
        return {
            "outcome": self.outcome.value, "reason": self.reason, "aid": self.aid.hex().upper(),
            "label": self.label, "family": self.family, "masked_pan": self.masked_pan, "oda": self.oda,
            "cvm": self.cvm, "tvr": self.tvr.hex().upper(), "relay_suspected": self.relay_suspected,
            "cryptogram": self.cryptogram, "card_in_field_ms": round(self.card_in_field_ms, 3),
        }

    def __repr__(self) -> str:
        return (f"KernelResult(outcome={self.outcome.value}, reason={self.reason!r}, aid={self.aid.hex().upper()}, "
                f"label={self.label!r}, family={self.family!r}, pan={self.masked_pan!r}, "
                f"psn={'**' if self.psn else ''!r}, expiry={'****' if self.expiry else ''!r}, "
                f"track2=<{len(self.track2)} bytes masked>, icc_data=<{len(self.icc_data)} bytes>, "
                f"oda={self.oda!r}, cvm={self.cvm}, tvr={self.tvr.hex().upper()}, cryptogram={self.cryptogram!r}, "
                f"relay_suspected={self.relay_suspected}, card_in_field_ms={self.card_in_field_ms:.3f})")

    __str__ = __repr__
