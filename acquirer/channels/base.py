"""What the pipeline hands a card channel, and what it gets back.

The clear PAN exists only here, between the TDK decryption in the host and the issuer
(in its own process, over a pipe the host opened: acquirer/channels/remote.py); `repr`
of these objects masks it. Both cross that pipe as plain tuples (`__reduce__`): a
dataclass with an enum pickles at about three times the cost.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol

from acquirer.protocol import ResponseCode
from keys.tlv import mask_pan


class Operation(str, enum.Enum):
    SALE = "sale"
    VOID = "void"
    REFUND = "refund"
    REVERSAL = "reversal"


@dataclass(frozen=True)
class CardAuthorisation:
    operation: Operation
    pan: str = field(repr=False)
    psn: str  # PAN sequence number, 2 digits
    expiry: str  # YYMM
    amount: int  # fen
    currency: str  # ISO 4217 numeric, "156"
    terminal_id: str
    merchant_id: str
    stan: str
    icc: dict[int, bytes] = field(default_factory=dict, repr=False)  # field 55 tags
    pin_block: bytes | None = field(default=None, repr=False)
    pin_key: str | None = None  # HSM name of the key the PIN block is under (terminal TPK)
    original_amount: int | None = None  # voids and refunds: the original sale's amount
    original_stan: str | None = None  # voids and refunds: the original sale's STAN
    risk_flags: tuple[str, ...] = ()

    @property
    def masked_pan(self) -> str:
        return mask_pan(self.pan)

    def __repr__(self) -> str:
        return (f"CardAuthorisation({self.operation.value} {self.masked_pan} {self.amount} {self.currency} "
                f"tid={self.terminal_id} stan={self.stan})")

    def __reduce__(self):
        return _authorisation, (self.operation.value, self.pan, self.psn, self.expiry, self.amount, self.currency,
                                self.terminal_id, self.merchant_id, self.stan, self.icc, self.pin_block,
                                self.pin_key, self.original_amount, self.original_stan, self.risk_flags)


def _authorisation(operation: str, *rest) -> "CardAuthorisation":
    return CardAuthorisation(Operation(operation), *rest)


@dataclass(frozen=True)
class CardResult:
    code: ResponseCode
    auth_code: str = ""  # 6 characters when approved
    issuer_data: bytes = b""  # tag 91 value: ARPC || ARC (method 1), empty when not checked
    text: str = ""  # short reason for the cashier / logs, never card data
    balance: int | None = None

    def __reduce__(self):
        return _result, (self.code.value, self.auth_code, self.issuer_data, self.text, self.balance)


def _result(code: str, *rest) -> "CardResult":
    return CardResult(ResponseCode(code), *rest)


class CardChannel(Protocol):
    name: str

    def authorise(self, request: CardAuthorisation) -> CardResult: ...
