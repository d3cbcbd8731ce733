"""The issuer simulator: the card channel of the host, deciding on its own card accounts.

It checks what a card issuer checks, in this order, and stops at the first refusal:
card on file, card standing (blocked, lost, expired), the online cryptogram (ARQC with
ATC replay refusal), the online PIN, the limits, the balance. The rules, the data the
ARQC covers and the account settings that steer test outcomes are in docs/issuer.md.

Every decision and everything it changes (balance, day total, PIN tries, last ATC, the
decision record) is one SQLite transaction. Keys stay in the HSM: the ARQC is verified
and the ARPC made by `HSM.verify_arqc`, PIN blocks are translated from the terminal's
TPK to the issuer's ZPK and compared there. No full PAN or PIN reaches a log line, an
exception or a `CardResult`.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import os
from datetime import datetime
from typing import Callable

from acquirer.protocol import ResponseCode
from keys.emv import CardFamily
from keys.errors import KeyNotFound, KeyUsageError, MACError, PinBlockError
from keys.hsm import HSM, channel_key_name, issuer_key_name
from keys.model import Key, KeyAlgorithm, KeyUsage
from keys.pinblock import PinBlockFormat, encrypt_pin_block

from .base import CardAuthorisation, CardResult, Operation, card_result
from .issuer_accounts import (Account, AccountError, AccountStatus, AccountStore, Decision, check_pan,
                              new_account)
from .issuer_cryptogram import IccDataError, OnlineCryptogram, read_cryptogram

__all__ = ["IssuerSimulator", "Account", "AccountError", "AccountStatus"]

log = logging.getLogger("acquirer.channels.issuer")

_PIN_FORMATS = {KeyAlgorithm.SM4: PinBlockFormat.SM4, KeyAlgorithm.TDES: PinBlockFormat.ISO0,
                KeyAlgorithm.AES: PinBlockFormat.ISO4}


class _Decline(Exception):
    """A check said no. Caught inside the transaction, so what the check changed is kept."""

    def __init__(self, code: ResponseCode, text: str):
        super().__init__(text)
        self.code, self.text = code, text


class _Verified:
    """An ARQC that verified, and the ARPC for an approval (ARC "00").
    (A plain class: one per sale, a frozen dataclass's __init__ costs several times this one.)"""

    __slots__ = ("cryptogram", "approval_arpc")

    def __init__(self, cryptogram: OnlineCryptogram, approval_arpc: bytes):
        self.cryptogram, self.approval_arpc = cryptogram, approval_arpc


@functools.lru_cache(maxsize=256)
def _imk_name(profile: str) -> str:
    """The HSM name of a profile's IMK_AC (asked for at every ARQC)."""
    return issuer_key_name(profile, KeyUsage.IMK_AC)


def _day(now: datetime) -> str:
    """YYYYMMDD, the day a decision counts in; its [2:6] is the YYMM an expiry compares with.
    (strftime("%Y%m%d") says the same at about three times the cost.)"""
    return f"{now.year:04d}{now.month:02d}{now.day:02d}"


class IssuerSimulator:
    """A `CardChannel` that authorises against its own accounts database."""

    name = "issuer-sim"

    def __init__(self, hsm: HSM, db_path: str | os.PathLike, zpk_name: str | None = None, *,
                 clock: Callable[[], datetime] = datetime.now, durable: bool = True, grouped: bool = False):
        self._hsm = hsm
        self._clock = clock
        self.zpk_name = zpk_name or channel_key_name(self.name, KeyUsage.ZPK)
        if not hsm.exists(self.zpk_name):
            hsm.generate(self.zpk_name, KeyAlgorithm.SM4, KeyUsage.ZPK)
        elif hsm.info(self.zpk_name).usage is not KeyUsage.ZPK:
            raise KeyUsageError(f"{self.zpk_name} is a {hsm.info(self.zpk_name).usage.value} key, not a ZPK")
        self._store = AccountStore(db_path, durable, grouped)
        self._day: tuple[int, str] = (0, "")  # (date ordinal, YYYYMMDD) of the last decision: see _new_day
        self.inline = not durable  # cheap enough to call from the event loop (see CardFlows._ask)

    def close(self) -> None:
        self._store.close()

    def flush(self) -> None:
        """Commit pending decisions (grouped: the ledger writer's companion hook)."""
        self._store.flush()

    def __enter__(self) -> "IssuerSimulator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<IssuerSimulator {self._store.path} zpk={self.zpk_name}>"

    # --- personalisation -------------------------------------------------------
    def open_account(self, pan: str, *, profile: str, family: CardFamily | str, expiry: str, psn: str = "00",
                     balance: int = 0, pin: str | None = None, per_transaction_limit: int | None = None,
                     daily_limit: int | None = None, status: AccountStatus | str = AccountStatus.ACTIVE,
                     pin_tries: int = 3, replace: bool = False) -> Account:
        """Open a card account. The profile's IMK_AC is generated in the HSM if it is missing.

        `pin` is the only place a clear PIN enters; it is kept as a PIN block under the
        issuer ZPK. `replace=True` drops an existing account of that PAN and its history."""
        check_pan(pan)
        account = new_account(self._store.token(pan), pan, profile=profile, family=family, psn=psn, expiry=expiry,
                              status=status, balance=balance, per_transaction_limit=per_transaction_limit,
                              daily_limit=daily_limit, pin_reference=None, pin_tries=pin_tries)
        self._issuer_master_key(account.profile, account.family)
        if pin is not None:
            account = dataclasses.replace(account, pin_reference=self._pin_reference(pan, pin))
        with self._store.transaction() as db:
            self._store.insert(db, account, replace)
        log.info("opened %s account %s (%s, profile %s)", account.status.value, account.masked_pan,
                 account.family.value, account.profile)
        return account

    def account(self, pan: str) -> Account | None:
        with self._store.transaction() as db:
            return self._store.find(db, pan)

    def set_status(self, pan: str, status: AccountStatus | str) -> Account:
        """Block a card, report it lost, or make it active again."""
        try:
            status = AccountStatus(status)
        except ValueError:
            raise AccountError(f"status: must be active, blocked or lost, got {status!r}") from None
        with self._store.transaction() as db:
            account = self._store.find(db, pan)
            if account is None:
                raise AccountError("pan: no account for that card")
            return self._store.update(db, account, status=status)

    def _issuer_master_key(self, profile: str, family: CardFamily) -> str:
        name = issuer_key_name(profile, KeyUsage.IMK_AC)
        algorithm = KeyAlgorithm(family.algorithm.value)
        if not self._hsm.exists(name):
            self._hsm.generate(name, algorithm, KeyUsage.IMK_AC, length=16)
            return name
        info = self._hsm.info(name)
        if info.usage is not KeyUsage.IMK_AC or info.algorithm is not algorithm:
            raise AccountError(f"profile: {name} is a {info.algorithm.value} {info.usage.value} key; "
                               f"{family.value} cards need a {algorithm.value} IMK_AC")
        return name

    def _pin_reference(self, pan: str, pin: str) -> bytes:
        """The PIN as a block under the issuer ZPK, made the way a PIN mailer would: under a
        one-time carrier key that the HSM translates from and then forgets."""
        algorithm = self._hsm.info(self.zpk_name).algorithm
        carrier = Key.generate(algorithm, KeyUsage.TPK)
        carrier_name = channel_key_name(f"{self.name}-perso-{os.urandom(4).hex()}", KeyUsage.TPK)
        try:
            block = encrypt_pin_block(_PIN_FORMATS[algorithm], carrier.cipher, pin, pan)
        except PinBlockError as exc:
            raise AccountError(f"pin: {exc}") from None
        self._hsm.import_clear(carrier_name, carrier)
        try:
            return self._hsm.translate_pin(block, pan, carrier_name, self.zpk_name)
        finally:
            self._hsm.delete(carrier_name)

    # --- authorisation ---------------------------------------------------------
    def _new_day(self, now: datetime) -> str:
        """The day a decision counts in (`_day`): formatted once per calendar day of the clock,
        kept with its date ordinal, which `authorise` compares."""
        self._day = (now.toordinal(), _day(now))
        return self._day[1]

    def authorise(self, request: CardAuthorisation) -> CardResult:
        now, (ordinal, today) = self._clock(), self._day
        if now.toordinal() != ordinal:
            today = self._new_day(now)
        operation = request.operation
        # `is`, not a set or dict lookup: an Enum's __hash__ is Python code (once per sale)
        with self._store.decision(reads_decisions=operation is Operation.VOID or operation is Operation.REVERSAL
                                  ) as db:
            pan = request.pan
            account = self._store.find(db, pan) if isinstance(pan, str) and pan.isdigit() else None
            if account is None:
                result = card_result(ResponseCode.INVALID_CARD, text="card not on file")
            elif request.amount <= 0:
                result = self._declined(db, account, request, today, _Decline(
                    ResponseCode.INVALID_AMOUNT, "amount must be above zero"))
            else:
                result = _HANDLERS[operation](self, db, account, request, today)
        if log.isEnabledFor(logging.INFO):  # the masked PAN and the enum values only when the line is written
            log.info("%s %s %d fen tid=%s stan=%s -> %s %s", request.operation.value, request.masked_pan,
                     request.amount, request.terminal_id, request.stan, result.code.value, result.text)
        return result

    def _declined(self, db, account: Account, request: CardAuthorisation, today: str, decline: _Decline,
                  verified: _Verified | None = None, changes: dict | None = None) -> CardResult:
        if changes:  # what the checks changed before saying no (the ATC, the PIN tries) is kept
            account = self._store.change(db, account, changes)
        self._store.record(db, account, request, decline.code.value, day=today)
        return card_result(decline.code, text=decline.text,
                          issuer_data=self._issuer_data(account, request, verified, decline.code))

    def _approved(self, db, account: Account, request: CardAuthorisation, today: str, effect: int,
                  text: str, undoes: int | None = None, verified: _Verified | None = None,
                  changes: dict | None = None) -> CardResult:
        """Approve with `effect` on the balance and `changes` (column: value) to the account,
        a dict the caller gives up: the balance goes into it."""
        store = self._store
        auth_code = store.next_auth_code(db)
        changes = {} if changes is None else changes
        changes["balance"] = balance = account.balance + effect
        account = store.change(db, account, changes)
        store.record(db, account, request, "00", auth_code=auth_code, effect=effect, day=today, undoes=undoes)
        return card_result(ResponseCode.APPROVED, auth_code,
                           self._issuer_data(account, request, verified, ResponseCode.APPROVED), text, balance)

    def _sale(self, db, account: Account, request: CardAuthorisation, today: str) -> CardResult:
        verified = None
        kept: dict = {}  # written with the decision, whatever it is: one row of the flush's UPDATE
        amount = request.amount
        try:
            self._check_standing(account, request, today)
            if request.icc:
                verified = self._verify_cryptogram(account, request)
                kept["last_atc"] = verified.cryptogram.atc_value
                if not verified.cryptogram.is_arqc:
                    raise _Decline(ResponseCode.DO_NOT_HONOR, "the card did not ask for online authorisation")
            if request.pin_block is not None:
                self._check_pin(account, request, kept)
            if account.per_transaction_limit is not None and amount > account.per_transaction_limit:
                raise _Decline(ResponseCode.EXCEEDS_LIMIT, "above the card's per-transaction limit")
            spent = account.spent_on(today)
            if account.daily_limit is not None and spent + amount > account.daily_limit:
                raise _Decline(ResponseCode.EXCEEDS_LIMIT, "above the card's daily limit")
            if amount > account.balance:
                raise _Decline(ResponseCode.INSUFFICIENT_FUNDS, "insufficient funds")
        except _Decline as decline:
            return self._declined(db, account, request, today, decline, verified, kept)
        kept["day"], kept["day_total"] = today, spent + amount
        return self._approved(db, account, request, today, -amount, "approved", verified=verified, changes=kept)

    def _refund(self, db, account: Account, request: CardAuthorisation, today: str) -> CardResult:
        try:
            self._check_status(account)
            if request.original_amount is not None and request.amount > request.original_amount:
                raise _Decline(ResponseCode.ORIGINAL_AMOUNT_INCORRECT, "refund above the original amount")
        except _Decline as decline:
            return self._declined(db, account, request, today, decline)
        return self._approved(db, account, request, today, request.amount, "refund credited")

    def _void(self, db, account: Account, request: CardAuthorisation, today: str) -> CardResult:
        # With the original STAN the void names its sale; without it, it takes the card's latest
        # open sale of that amount at this terminal (docs/issuer.md): equal sales are interchangeable.
        if request.original_amount is not None and request.original_amount != request.amount:
            return self._declined(db, account, request, today, _Decline(
                ResponseCode.ORIGINAL_AMOUNT_INCORRECT, "a void cancels the whole sale"))
        if request.original_stan is not None:
            sale = self._store.latest_by_stan(db, account, request.terminal_id, request.merchant_id,
                                              request.original_stan)
            if sale is not None and (sale.operation != Operation.SALE.value or sale.code != "00"
                                     or sale.undone_by is not None or sale.amount != request.amount):
                sale = None
        else:
            sale = self._store.open_sale(db, account, request.terminal_id, request.merchant_id, request.amount)
        if sale is None:
            return self._declined(db, account, request, today, _Decline(
                ResponseCode.ORIGINAL_NOT_FOUND, "no open sale of this amount at this terminal"))
        return self._approved(db, account, request, today, sale.amount, "sale voided", undoes=sale.id,
                              changes=self._day_total_less(account, sale))

    def _reversal(self, db, account: Account, request: CardAuthorisation, today: str) -> CardResult:
        # A reversal carries its original's STAN (docs/protocol.md); only what the issuer
        # approved can be undone, and only once.
        original = self._store.latest_by_stan(db, account, request.terminal_id, request.merchant_id, request.stan)
        if original is None or original.code != ResponseCode.APPROVED.value:
            return self._declined(db, account, request, today, _Decline(
                ResponseCode.ORIGINAL_NOT_FOUND, "nothing approved to reverse"))
        if original.amount != request.amount:
            return self._declined(db, account, request, today, _Decline(
                ResponseCode.ORIGINAL_AMOUNT_INCORRECT, "amount differs from the original"))
        if original.undone_by is not None:
            return self._approved(db, account, request, today, 0, "already reversed")
        changes: dict = {}
        if original.operation == Operation.SALE.value:
            changes = self._day_total_less(account, original)
        elif original.operation == Operation.VOID.value and original.undoes is not None:
            self._store.reopen(db, original.undoes)  # the voided sale stands again
            sale = self._store.get_decision(db, original.undoes)
            if sale.day == account.day:
                changes = {"day_total": account.day_total + sale.amount}
        return self._approved(db, account, request, today, -original.effect, f"{original.operation} reversed",
                              undoes=original.id, changes=changes)

    @staticmethod
    def _day_total_less(account: Account, sale: Decision) -> dict:
        """Undoing a sale of the current day gives its amount back to the daily limit."""
        return {"day_total": max(0, account.day_total - sale.amount)} if sale.day == account.day else {}

    # --- the checks ------------------------------------------------------------
    def _check_standing(self, account: Account, request: CardAuthorisation, today: str) -> None:
        self._check_status(account)
        if account.expiry < today[2:6]:  # YYMM strings compare as dates within one century
            raise _Decline(ResponseCode.EXPIRED_CARD, "card expired")
        if request.expiry and request.expiry != account.expiry:
            raise _Decline(ResponseCode.EXPIRED_CARD, "expiry date does not match the card")

    @staticmethod
    def _check_status(account: Account) -> None:
        if account.status is AccountStatus.BLOCKED:
            raise _Decline(ResponseCode.LOST_CARD, "card blocked by the issuer")
        if account.status is AccountStatus.LOST:
            raise _Decline(ResponseCode.LOST_CARD, "card reported lost")

    def _verify_cryptogram(self, account: Account, request: CardAuthorisation) -> _Verified:
        try:
            cryptogram = read_cryptogram(account.family, request.icc)
        except IccDataError as exc:
            raise _Decline(ResponseCode.FORMAT_ERROR, str(exc)) from None
        if cryptogram.amount != request.amount:
            raise _Decline(ResponseCode.CRYPTOGRAM_FAILED, "amount in the cryptogram (9F02) differs from field 4")
        if cryptogram.currency != request.currency.rjust(3, "0")[-3:]:
            raise _Decline(ResponseCode.CRYPTOGRAM_FAILED, "currency in the cryptogram (5F2A) differs from field 49")
        if cryptogram.atc_value <= account.last_atc:
            raise _Decline(ResponseCode.CRYPTOGRAM_FAILED,
                           f"suspected replay: ATC {cryptogram.atc_value} not above {account.last_atc}")
        try:
            arpc = self._verify_arqc(account, request, cryptogram, b"00")
        except MACError:
            raise _Decline(ResponseCode.CRYPTOGRAM_FAILED, "ARQC does not verify") from None
        return _Verified(cryptogram, arpc)

    def _verify_arqc(self, account: Account, request: CardAuthorisation, cryptogram: OnlineCryptogram,
                     arc: bytes) -> bytes:
        name = _imk_name(account.profile)
        try:
            return self._hsm.verify_arqc(name, account.family, request.pan, account.psn, cryptogram.atc,
                                         cryptogram.data, cryptogram.ac, arc)
        except (KeyNotFound, KeyUsageError):
            raise _Decline(ResponseCode.SYSTEM_ERROR, f"issuer key {name} is missing or unusable") from None

    def _issuer_data(self, account: Account, request: CardAuthorisation, verified: _Verified | None,
                     code: ResponseCode) -> bytes:
        """Tag 91: ARPC || ARC, for a cryptogram that verified; the ARC is the response code."""
        if verified is None:
            return b""
        if code is ResponseCode.APPROVED:
            return verified.approval_arpc + b"00"
        arc = code._value_.encode("ascii")  # ._value_: .value without the enum's descriptor
        return self._verify_arqc(account, request, verified.cryptogram, arc) + arc

    def _check_pin(self, account: Account, request: CardAuthorisation, kept: dict) -> None:
        """Compare the PIN; the tries left go into `kept`, written with the decision."""
        if account.pin_tries_left <= 0:
            raise _Decline(ResponseCode.PIN_TRIES_EXCEEDED, "PIN tries exceeded")
        if account.pin_reference is None:
            raise _Decline(ResponseCode.INCORRECT_PIN, "no PIN on file for this card")
        if not request.pin_key:
            raise _Decline(ResponseCode.FORMAT_ERROR, "PIN block without the name of its key")
        try:
            under_zpk = self._hsm.translate_pin(request.pin_block, request.pan, request.pin_key, self.zpk_name)
        except PinBlockError:
            raise _Decline(ResponseCode.FORMAT_ERROR, "PIN block does not decrypt under the terminal PIN key") from None
        except (KeyNotFound, KeyUsageError):
            raise _Decline(ResponseCode.SYSTEM_ERROR, f"PIN key {request.pin_key} is missing or unusable") from None
        try:
            correct = self._hsm.verify_pin(under_zpk, request.pan, self.zpk_name, account.pin_reference)
        except PinBlockError:
            raise _Decline(ResponseCode.SYSTEM_ERROR, "PIN reference unreadable under the issuer ZPK") from None
        if correct:
            if account.pin_tries_left != account.pin_try_limit:
                kept["pin_tries_left"] = account.pin_try_limit
            return
        left = kept["pin_tries_left"] = account.pin_tries_left - 1
        if left == 0:
            raise _Decline(ResponseCode.PIN_TRIES_EXCEEDED, "incorrect PIN; no tries left")
        raise _Decline(ResponseCode.INCORRECT_PIN, f"incorrect PIN, {left} tries left")


_HANDLERS = {Operation.SALE: IssuerSimulator._sale, Operation.REFUND: IssuerSimulator._refund,
             Operation.VOID: IssuerSimulator._void, Operation.REVERSAL: IssuerSimulator._reversal}
