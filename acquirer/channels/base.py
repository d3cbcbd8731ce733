"""What the pipeline hands a card channel, and what it gets back.

The clear PAN exists only here, between the TDK decryption in the host and the issuer
(in its own process, over a pipe the host opened: acquirer/channels/remote.py); `repr`
of these objects masks it. Both cross that pipe as plain tuples (`__reduce__`): a
dataclass with an enum pickles at about three times the cost.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields
from typing import Protocol

from acquirer.frozen import made
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
        # ._value_: what .value gives, without the enum's descriptor (once per request each way)
        return _authorisation, (self.operation._value_, self.pan, self.psn, self.expiry, self.amount, self.currency,
                                self.terminal_id, self.merchant_id, self.stan, self.icc, self.pin_block,
                                self.pin_key, self.original_amount, self.original_stan, self.risk_flags)


_AUTHORISATION_FIELDS = tuple(f.name for f in fields(CardAuthorisation))
_OPERATIONS = {op.value: op for op in Operation}


def _authorisation(operation: str, *rest) -> "CardAuthorisation":
    """The request a pickle names, made without the frozen dataclass's __init__ (it sets its
    15 fields one object.__setattr__ at a time and checks nothing: `__reduce__` gives all 15).
    The issuer's process builds one per sale off its pipe (acquirer/channels/remote.py)."""
    return made(CardAuthorisation, zip(_AUTHORISATION_FIELDS, (_OPERATIONS.get(operation) or Operation(operation),
                                                               *rest)))


@dataclass(frozen=True)
class CardResult:
    code: ResponseCode
    auth_code: str = ""  # 6 characters when approved
    issuer_data: bytes = b""  # tag 91 value: ARPC || ARC (method 1), empty when not checked
    text: str = ""  # short reason for the cashier / logs, never card data
    balance: int | None = None

    def __reduce__(self):
        return _result, (self.code._value_, self.auth_code, self.issuer_data, self.text, self.balance)


_CODES = {code.value: code for code in ResponseCode}


def card_result(code: ResponseCode, auth_code: str = "", issuer_data: bytes = b"", text: str = "",
                balance: int | None = None) -> CardResult:
    """`CardResult(...)` at a third of the cost, for the once-per-sale paths (the issuer's
    decision, the host reading it back off the pipe): the frozen dataclass's __init__ sets
    each field through object.__setattr__ and checks nothing that this does not do."""
    return made(CardResult, {"code": code, "auth_code": auth_code, "issuer_data": issuer_data, "text": text,
                             "balance": balance})


def _result(code: str, *rest) -> "CardResult":
    return card_result(_CODES.get(code) or ResponseCode(code), *rest)


class CardChannel(Protocol):
    name: str

    def authorise(self, request: CardAuthorisation) -> CardResult: ...
