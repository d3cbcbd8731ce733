"""One tap, as a context passed through its steps: select, GPO, read, judge.

`Tap` holds everything of one transaction (nothing lives on the `Kernel`), in the order
EMV runs it; `Stop` ends the tap early with an outcome. The pure judgements are in
decisions.py, ODA in oda.py, the card's data objects in carddata.py.
"""
from __future__ import annotations

import calendar
import datetime
from dataclasses import dataclass, field

from hardware.apdu import command
from keys.tlv import TLVError, build_dol_data, encode_dict, tlv

from . import tvr as T
from .carddata import CardDataError, CardStore, parse_afl, parse_generate_ac, parse_gpo, read_records
from .config import AidConfig, KernelConfig
from .decisions import (AAC, ARQC, CID_NAMES, CVM_RESULTS, ODA_FAILED, ODA_NOT_PERFORMED, ODA_VERIFIED, TC,
                        ActionCodes, Decision, action_analysis, card_date, choose_cvm, cid_type, preprocess,
                        processing_restrictions, quick_decision, standard_decision, terminal_risk, ttq_for)
from .oda import OdaFailure, terminal_dynamic_data, verify_fdda
from .relay import TimedCard, assess
from .result import CVM_NO_CVM, Outcome, TransactionRequest
from .selection import SW_BLOCKED, Candidate, Fci, candidates, final_select, select_ppse

# GPO status words after which Entry Point tries the next candidate (Book B "select next").
SELECT_NEXT = (0x6984, 0x6985, 0x6986)
AIP_DDA, AIP_ISSUER_AUTH = 0x20, 0x04
# Field 55, in this order: card results, terminal data the card saw, terminal identity.
FIELD55_CARD = (0x9F26, 0x9F27, 0x9F10)
FIELD55_ORDER = (0x9F26, 0x9F27, 0x9F10, 0x9F37, 0x9F36, 0x95, 0x9A, 0x9C, 0x9F02, 0x5F2A, 0x82, 0x9F1A,
                 0x9F03, 0x9F33, 0x9F34, 0x9F35, 0x9F1E, 0x84, 0x9F09, 0x9F41, 0x9F66, 0x9F6C, 0x8A)
SENT_TAGS = (0x9F37, 0x95, 0x9A, 0x9C, 0x9F02, 0x5F2A, 0x9F1A, 0x9F03, 0x9F66, 0x9F34, 0x8A)


class Stop(Exception):
    """End the tap now with this outcome (a reason the cashier can read)."""

    def __init__(self, outcome: Outcome, reason: str) -> None:
        super().__init__(reason)
        self.outcome, self.reason = outcome, reason


def bcd(value: int, length: int) -> bytes:
    return bytes.fromhex(f"{value:0{2 * length}d}")


@dataclass(frozen=True)
class SecondAc:
    """What the second GENERATE AC of the standard flow needs (kept in the result)."""

    cdol2: bytes
    values: dict
    aip: bytes
    un: bytes
    card_tags: dict


@dataclass
class Tap:
    config: KernelConfig
    request: TransactionRequest
    un: bytes
    card: TimedCard
    tvr: T.Tvr = field(default_factory=T.Tvr)
    store: CardStore = field(default_factory=CardStore)
    candidate: Candidate | None = None
    fci: Fci | None = None
    sent: dict = field(default_factory=dict)  # what the card's cryptogram covers, as sent
    pan: str = ""
    psn: str = ""
    expiry: datetime.date | None = None
    track2: bytes = b""
    oda: str = "not performed: no card data"
    cvm: str = CVM_NO_CVM
    cryptogram: str = ""
    second_ac: SecondAc | None = None

    @property
    def today(self) -> datetime.date:
        return self.request.today

    @property
    def aid(self) -> AidConfig:
        return self.candidate.config

    # -- selection -------------------------------------------------------------------
    def run(self) -> Decision:
        r, term = self.request, self.config.terminal
        if r.currency != term.currency or r.country != term.country:
            raise Stop(Outcome.END_APPLICATION, f"this terminal takes currency {term.currency} in country "
                                                f"{term.country} only")
        if not any(preprocess(a, r.amount).allowed for a in self.config.aids):
            raise Stop(Outcome.USE_ANOTHER_INTERFACE, "amount above the contactless limit: use another payment method")
        entries, sw = select_ppse(self.card)
        if sw != 0x9000:
            raise Stop(Outcome.END_APPLICATION, "no contactless payment application on this card")
        found = candidates(entries, self.config.aids)
        if not found:
            raise Stop(Outcome.END_APPLICATION, "card not supported by this terminal")
        usable = [c for c in found if preprocess(c.config, r.amount).allowed]
        if not usable:
            raise Stop(Outcome.USE_ANOTHER_INTERFACE, "amount above the contactless limit: use another payment method")
        refusals = []
        for candidate in usable:
            self.candidate = candidate
            self.fci, sw = final_select(self.card, candidate)
            gpo = self.get_processing_options() if self.fci else None
            if gpo is not None:
                return self.process(gpo)
            refusals.append(sw)
        self.candidate = self.fci = None
        if SW_BLOCKED in refusals:
            raise Stop(Outcome.END_APPLICATION, "card blocked / not accepted")
        raise Stop(Outcome.END_APPLICATION, "card not accepted")

    def terminal_values(self, ttq: bytes) -> dict[int, bytes]:
        r, term = self.request, self.config.terminal
        return {0x9F66: ttq, 0x9F02: bcd(r.amount, 6), 0x9F03: bcd(r.amount_other, 6),
                0x9F1A: bytes.fromhex(r.country), 0x95: self.tvr.value(), 0x5F2A: bytes.fromhex(r.currency),
                0x9A: bytes.fromhex(self.today.strftime("%y%m%d")), 0x9C: bytes([r.txn_type]), 0x9F37: self.un,
                0x9F35: term.terminal_type, 0x9F33: term.capabilities}

    def get_processing_options(self):
        """GPO with the PDOL data; None when the card says "select next"."""
        early = assess(self.card.timings, self.config.relay)
        if early.suspected:
            self.tvr.set(T.RELAY_THRESHOLD_EXCEEDED)  # covered by the ARQC: the issuer sees it too
        values = self.terminal_values(ttq_for(self.aid, preprocess(self.aid, self.request.amount), early.suspected))
        try:
            data = build_dol_data(self.fci.pdol, values) if self.fci.pdol else b""
        except TLVError:
            raise CardDataError("SELECT AID", "PDOL malformed") from None
        if len(data) > 250:
            raise CardDataError("SELECT AID", "PDOL asks for more data than a command holds")
        answer, sw = self.card.exchange("GPO", command(0x80, 0xA8, 0x00, 0x00, tlv(0x83, data), le=0), crypto=True)
        if sw in SELECT_NEXT:
            return None
        if sw != 0x9000:
            raise Stop(Outcome.END_APPLICATION, f"card refused the transaction (GPO {sw:04X})")
        self.sent = values
        return parse_gpo(answer)

    # -- reading and judging -----------------------------------------------------------
    def process(self, gpo) -> Decision:
        self.store.add(gpo.items, "GPO answer")
        static = read_records(self.card, parse_afl(gpo.afl), self.store)
        self.cardholder_data()
        processing_restrictions(self.store.tags, self.aid, self.request.country, self.request.txn_type, self.today,
                                self.tvr, self.expiry)
        terminal_risk(self.aid, self.request.amount, self.tvr)
        if 0x9F26 in self.store:
            return self.quick_flow(gpo.aip, static)
        return self.standard_flow(gpo.aip)

    def cardholder_data(self) -> None:
        """PAN, PSN, expiry and track 2, each checked against the others."""
        raw = self.store.get(0x57)
        track_pan = track_yymm = None
        if raw is not None:
            text = raw.hex().upper().rstrip("F")
            pan_part, _, rest = text.partition("D")
            if not (12 <= len(pan_part) <= 19 and pan_part.isdigit() and len(rest) >= 4 and rest[:4].isdigit()):
                raise CardDataError("card data", "track 2 equivalent data (57) malformed")
            self.track2, track_pan, track_yymm = raw, pan_part, rest[:4]
        field = self.store.get(0x5A)
        pan = field.hex().upper().rstrip("F") if field is not None else track_pan
        if not pan or not (12 <= len(pan) <= 19 and pan.isdigit()):
            raise CardDataError("card data", "no valid PAN (5A or 57)")
        if track_pan is not None and track_pan != pan:
            raise CardDataError("card data", "PAN differs between 5A and track 2")
        self.pan = pan
        psn = self.store.get(0x5F34, b"\x00")
        self.psn = psn.hex() if len(psn) == 1 and psn.hex().isdigit() else "00"
        if 0x5F24 in self.store:
            self.expiry = card_date(self.store.get(0x5F24), "expiry date (5F24)")
        elif track_yymm is not None and 1 <= int(track_yymm[2:]) <= 12:
            year, month = 2000 + int(track_yymm[:2]), int(track_yymm[2:])
            self.expiry = datetime.date(year, month, calendar.monthrange(year, month)[1])
        else:
            raise CardDataError("card data", "no expiry date (5F24 or 57)")

    def quick_flow(self, aip: bytes, static: bytes) -> Decision:
        for tag, length in ((0x9F26, 8), (0x9F27, 1), (0x9F36, 2), (0x9F10, (1, 32))):
            self.store.need(tag, length)
        cid = cid_type(self.store.get(0x9F27))
        self.cryptogram = CID_NAMES[cid]
        ctq = self.store.get(0x9F6C, b"")
        self.cvm = choose_cvm(preprocess(self.aid, self.request.amount), ctq)
        oda = self.authenticate(cid, aip, static)
        verdict = assess(self.card.timings, self.config.relay)
        if verdict.suspected:
            self.tvr.set(T.RELAY_THRESHOLD_EXCEEDED)
        codes = ActionCodes.of(self.aid, self.store.tags)
        return quick_decision(cid, self.tvr, codes, oda, ctq, self.cvm, verdict, self.config.relay)

    def authenticate(self, cid: int, aip: bytes, static: bytes) -> str:
        tags = self.store.tags
        if cid == AAC:
            why = "declined by the card"
        elif not aip[0] & AIP_DDA:
            why = "the card does not support offline data authentication"
        elif 0x9F4B not in tags:
            why = "the card did not sign this transaction"
        else:
            try:
                tag_list = tags.get(0x9F4A)
                if tag_list not in (None, b"\x82"):
                    raise OdaFailure("static data tag list (9F4A) may only name the AIP")
                signed = static + (aip if tag_list else b"")
                terminal = terminal_dynamic_data(self.un, self.sent[0x9F02], self.sent[0x5F2A], tags.get(0x9F69))
                verify_fdda(self.config.ca_keys, self.config.ca_key_problems, self.candidate.entry.adf_name[:5],
                            tags, signed, terminal, self.pan, self.today)
            except OdaFailure as exc:
                self.oda = f"failed: {exc}"
                self.tvr.set(T.DDA_FAILED)
                return ODA_FAILED
            self.oda = "fDDA verified"
            return ODA_VERIFIED
        self.oda = f"not performed: {why}"
        self.tvr.set(T.ODA_NOT_PERFORMED)
        return ODA_NOT_PERFORMED

    def standard_flow(self, aip: bytes) -> Decision:
        """No cryptogram at GPO: this kernel asks for one with GENERATE AC (no DDA/CDA)."""
        cdol1 = self.store.need(0x8C)
        self.cvm = choose_cvm(preprocess(self.aid, self.request.amount), b"")
        self.oda = "not performed: standard flow (this kernel authenticates with fDDA only)"
        self.tvr.set(T.ODA_NOT_PERFORMED)
        early = assess(self.card.timings, self.config.relay)
        if early.suspected:
            self.tvr.set(T.RELAY_THRESHOLD_EXCEEDED)
        codes = ActionCodes.of(self.aid, self.store.tags)
        requested = action_analysis(self.tvr, codes)
        if early.suspected and requested == TC:
            requested = ARQC
        values = {**self.terminal_values(self.sent.get(0x9F66, self.aid.ttq)), 0x9F34: CVM_RESULTS[self.cvm]}
        try:
            data = build_dol_data(cdol1, values)
        except TLVError:
            raise CardDataError("card data", "CDOL1 malformed") from None
        answer, sw = self.card.exchange("GENERATE AC", command(0x80, 0xAE, requested, 0x00, data, le=0), crypto=True)
        if sw != 0x9000:
            raise Stop(Outcome.END_APPLICATION, f"card refused the transaction (GENERATE AC {sw:04X})")
        self.store.add(parse_generate_ac(answer), "GENERATE AC answer")
        for tag, length in ((0x9F26, 8), (0x9F27, 1), (0x9F36, 2)):
            self.store.need(tag, length)
        cid = cid_type(self.store.get(0x9F27))
        self.cryptogram = CID_NAMES.get(cid, "")
        self.sent = values
        verdict = assess(self.card.timings, self.config.relay)
        if verdict.suspected:
            self.tvr.set(T.RELAY_THRESHOLD_EXCEEDED)
        decision = standard_decision(requested, cid, self.tvr, codes, self.cvm, verdict, self.config.relay)
        if decision.outcome is Outcome.ONLINE_REQUEST:
            self.second_ac = SecondAc(self.store.get(0x8D, b""), values, aip, self.un, dict(self.store.tags))
        return decision

    # -- field 55 --------------------------------------------------------------------
    def icc_data(self) -> bytes:
        """Field 55 for the cryptogram this tap produced; empty when there is none."""
        if not self.cryptogram:
            return b""
        return field55(self.store.tags, self.sent, self)


def field55(card_tags: dict, sent: dict, tap: Tap) -> bytes:
    """Card results + exactly the terminal values the cryptogram covers + terminal identity.

    No PAN, track 2, expiry, or certificate (the SM2 ICC certificate holds the PAN)."""
    term, aid = tap.config.terminal, tap.aid
    values = {tag: card_tags[tag] for tag in (*FIELD55_CARD, 0x9F36, 0x82, 0x9F6C) if tag in card_tags}
    values.update({tag: sent[tag] for tag in SENT_TAGS if tag in sent})
    values.setdefault(0x9F34, CVM_RESULTS[tap.cvm])
    values.update({0x9F33: term.capabilities, 0x9F35: term.terminal_type, 0x9F1E: term.ifd_serial_number,
                   0x84: tap.fci.df_name})
    if aid.application_version is not None:
        values[0x9F09] = aid.application_version
    if tap.request.sequence_counter is not None:
        values[0x9F41] = bcd(tap.request.sequence_counter, 4)
    return encode_dict([(tag, values[tag]) for tag in FIELD55_ORDER if tag in values])
