"""The kernel's judgements as pure functions: pre-processing, processing restrictions,
CVM, terminal risk management, terminal action analysis, and the final outcome.

Sources: EMV Book 3 (10.4 restrictions, 10.6 risk management, 10.7 action analysis),
Book A/B pre-processing and the qVSDC/qPBOC reader rules (Book C-3 style) for TTQ and
CTQ. Where this kernel chooses for itself (a soft-POS has online PIN and no signature,
so any amount that needs a CVM goes online), docs/kernel.md says so.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass

from .carddata import CardDataError
from .config import AidConfig
from .relay import ACTION_DECLINE, RelayPolicy, RelayVerdict
from .result import CVM_CDCVM, CVM_NO_CVM, CVM_ONLINE_PIN, Outcome
from . import tvr as T

AAC, TC, ARQC = 0x00, 0x40, 0x80
CID_NAMES = {AAC: "AAC", TC: "TC", ARQC: "ARQC"}
# TTQ (9F66) byte 2 bits the kernel sets per transaction.
TTQ2_ONLINE_REQUIRED, TTQ2_CVM_REQUIRED = 0x80, 0x40
# CTQ (9F6C): byte 1 b8 online PIN, b6 online if ODA fails, b5 switch interface if ODA
# fails, b4 online if expired; byte 2 b8 consumer-device CVM performed.
CTQ1_ONLINE_PIN, CTQ1_ONLINE_IF_ODA_FAILS, CTQ1_SWITCH_IF_ODA_FAILS = 0x80, 0x20, 0x10
CTQ1_ONLINE_IF_EXPIRED, CTQ2_CDCVM_PERFORMED = 0x08, 0x80
# 9F34 CVM results: method, condition, result (00 unknown, 02 successful). CDCVM has no
# Book 3 code; "01 00 02" is how Book C-2 reports on-device verification, as recalled.
CVM_RESULTS = {CVM_NO_CVM: bytes.fromhex("1F0002"), CVM_ONLINE_PIN: bytes.fromhex("020000"),
               CVM_CDCVM: bytes.fromhex("010002")}
ODA_VERIFIED, ODA_FAILED, ODA_NOT_PERFORMED = "verified", "failed", "not performed"
# Book 3 defaults for an IAC the card does not send.
IAC_ABSENT = {0x9F0D: b"\xff" * 5, 0x9F0E: bytes(5), 0x9F0F: b"\xff" * 5}


@dataclass(frozen=True)
class Preprocessing:
    allowed: bool  # within the contactless transaction limit
    online_required: bool
    cvm_required: bool


def preprocess(aid: AidConfig, amount: int) -> Preprocessing:
    cvm = amount > aid.cvm_limit
    # Floor limit as Book 3 10.6.1 counts it (at or above goes online), so that a floor
    # limit of 0 means "always online". A CVM means online PIN here: online as well.
    return Preprocessing(amount <= aid.contactless_limit, amount >= aid.floor_limit or cvm, cvm)


def ttq_for(aid: AidConfig, pre: Preprocessing, relay_suspected: bool) -> bytes:
    ttq = bytearray(aid.ttq)
    if pre.online_required or relay_suspected:
        ttq[1] |= TTQ2_ONLINE_REQUIRED  # a card that may be relayed must not approve offline
    if pre.cvm_required:
        ttq[1] |= TTQ2_CVM_REQUIRED
    return bytes(ttq)


def card_date(value: bytes, what: str) -> datetime.date:
    """YYMMDD (BCD, n6) as EMV dates are: YY < 50 is 20YY."""
    digits = value.hex()
    try:
        if len(value) != 3 or not digits.isdigit():
            raise ValueError
        yy = int(digits[:2])
        return datetime.date(2000 + yy if yy < 50 else 1900 + yy, int(digits[2:4]), int(digits[4:]))
    except ValueError:
        raise CardDataError("card data", f"{what} is not a valid date") from None


def auc_allows(auc: bytes, domestic: bool, txn_type: int) -> bool:
    """Application usage control (9F07) for this terminal (not an ATM) and transaction type."""
    if len(auc) < 2:
        return True
    if not auc[0] & 0x01:  # valid at terminals other than ATMs
        return False
    if txn_type == 0x01:  # cash
        return bool(auc[0] & (0x80 if domestic else 0x40))
    if txn_type == 0x09:  # purchase with cashback
        return bool(auc[1] & (0x80 if domestic else 0x40))
    if txn_type in (0x00,):  # goods or services: the kernel cannot tell which, either will do
        return bool(auc[0] & (0x28 if domestic else 0x14))
    return True  # refunds, inquiries: not restricted by usage control


def processing_restrictions(tags: dict, aid: AidConfig, country: str, txn_type: int, today: datetime.date,
                            tvr: T.Tvr, expiry: datetime.date) -> None:
    version = tags.get(0x9F08)
    if aid.application_version is not None and version is not None and version != aid.application_version:
        tvr.set(T.VERSIONS_DIFFER)
    if today > expiry:
        tvr.set(T.EXPIRED)
    if 0x5F25 in tags and today < card_date(tags[0x5F25], "effective date (5F25)"):
        tvr.set(T.NOT_YET_EFFECTIVE)
    auc = tags.get(0x9F07)
    if auc is not None:
        issuer_country = tags.get(0x5F28)
        domestic = issuer_country is not None and issuer_country.hex() == country
        if not auc_allows(auc, domestic, txn_type):
            tvr.set(T.SERVICE_NOT_ALLOWED)


def choose_cvm(pre: Preprocessing, ctq: bytes) -> str:
    """The phone's own verification counts whenever the card says it was done (CTQ);
    otherwise online PIN above the CVM limit and nothing below it, whatever the card's
    CTQ asks: the no-PIN limit is the acquirer's rule for small amounts."""
    if len(ctq) == 2 and ctq[1] & CTQ2_CDCVM_PERFORMED:
        return CVM_CDCVM
    return CVM_ONLINE_PIN if pre.cvm_required else CVM_NO_CVM


def terminal_risk(aid: AidConfig, amount: int, tvr: T.Tvr) -> None:
    if amount >= aid.floor_limit:
        tvr.set(T.FLOOR_LIMIT_EXCEEDED)


@dataclass(frozen=True)
class ActionCodes:
    tac_default: bytes
    tac_denial: bytes
    tac_online: bytes
    iac_default: bytes
    iac_denial: bytes
    iac_online: bytes

    @classmethod
    def of(cls, aid: AidConfig, tags: dict) -> "ActionCodes":
        iac = {tag: tags[tag] if len(tags.get(tag, b"")) == 5 else IAC_ABSENT[tag] for tag in IAC_ABSENT}
        return cls(aid.tac_default, aid.tac_denial, aid.tac_online, iac[0x9F0D], iac[0x9F0E], iac[0x9F0F])


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reason: str


def cid_type(cid: bytes) -> int:
    if len(cid) != 1 or cid[0] & 0xC0 == 0xC0:
        raise CardDataError("card data", "cryptogram information data (9F27) not valid")
    return cid[0] & 0xC0


def action_analysis(tvr: T.Tvr, codes: ActionCodes) -> int:
    """Standard flow, EMV Book 3 10.7: the cryptogram to ask the card for."""
    if any(tvr.matches(codes.tac_denial, codes.iac_denial)):
        return AAC
    if any(tvr.matches(codes.tac_online, codes.iac_online)):
        return ARQC  # this terminal is always online-capable
    return TC


def _relay(relay: RelayVerdict, policy: RelayPolicy, cid: int) -> Decision | None:
    if not relay.suspected:
        return None
    if policy.action == ACTION_DECLINE or cid == TC:
        # A TC cannot be sent online: the only safe answer to a suspect offline approval is no.
        return Decision(Outcome.DECLINED, "card answered too slowly (possible relay attack), declined")
    return None


def _online(cvm: str) -> Decision:
    return Decision(Outcome.ONLINE_REQUEST, "online authorisation, PIN required" if cvm == CVM_ONLINE_PIN
                    else "online authorisation")


def _offline(tvr: T.Tvr, codes: ActionCodes, oda: str | None, cvm: str) -> Decision:
    """Accept a TC. `oda` None: the TACs already weighed "ODA not performed" (standard flow)."""
    if oda is not None and oda != ODA_VERIFIED:
        return Decision(Outcome.DECLINED, "offline approval needs card authentication, declined")
    if cvm == CVM_ONLINE_PIN:
        return Decision(Outcome.DECLINED, "PIN required but the card approved offline, declined")
    online = tvr.matches(codes.tac_online, codes.iac_online)
    if any(online):
        return Decision(Outcome.DECLINED, f"offline approval refused: {T.describe(online)}")
    return Decision(Outcome.APPROVED_OFFLINE, "approved offline")


def quick_decision(cid: int, tvr: T.Tvr, codes: ActionCodes, oda: str, ctq: bytes, cvm: str,
                   relay: RelayVerdict, policy: RelayPolicy) -> Decision:
    """Quick flow: the card chose its cryptogram at GPO; the kernel may only accept it or
    refuse it (an ARQC can still be declined, a TC can never be sent online)."""
    ctq1 = ctq[0] if ctq else 0
    if cid == AAC:
        return Decision(Outcome.DECLINED, "declined by the card")
    denial = tvr.matches(codes.tac_denial, codes.iac_denial)
    if any(denial):
        only_expired = denial == bytes([0, T.EXPIRED[1], 0, 0, 0])
        if not (only_expired and cid == ARQC and ctq1 & CTQ1_ONLINE_IF_EXPIRED):
            return Decision(Outcome.DECLINED, f"{T.describe(denial)}, declined")
    if oda == ODA_FAILED and not (cid == ARQC and ctq1 & CTQ1_ONLINE_IF_ODA_FAILS):
        if ctq1 & CTQ1_SWITCH_IF_ODA_FAILS:
            return Decision(Outcome.USE_ANOTHER_INTERFACE, "card authentication failed: use another interface")
        return Decision(Outcome.DECLINED, "card authentication failed, declined")
    refused = _relay(relay, policy, cid)
    if refused:
        return refused
    return _online(cvm) if cid == ARQC else _offline(tvr, codes, oda, cvm)


ALLOWED_ANSWERS = {AAC: (AAC,), ARQC: (ARQC, AAC), TC: (TC, ARQC, AAC)}


def standard_decision(requested: int, cid: int, tvr: T.Tvr, codes: ActionCodes, cvm: str,
                      relay: RelayVerdict, policy: RelayPolicy) -> Decision:
    """Standard flow, after the first GENERATE AC."""
    if cid not in ALLOWED_ANSWERS[requested]:
        raise CardDataError("GENERATE AC", "card answered with more than the terminal asked for")
    if cid == AAC:
        if requested == AAC:
            return Decision(Outcome.DECLINED, f"{T.describe(tvr.matches(codes.tac_denial, codes.iac_denial))}, "
                                              "declined")
        return Decision(Outcome.DECLINED, "declined by the card")
    refused = _relay(relay, policy, cid)
    if refused:
        return refused
    # ODA is not performed in the standard flow: a TC was asked for only if the TACs allow it.
    return _online(cvm) if cid == ARQC else _offline(tvr, codes, None, cvm)
