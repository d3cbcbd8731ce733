"""A personalised EMV contactless card, served to the reader as a `CardApplication`.

Commands: SELECT (PPSE and the AID), GET PROCESSING OPTIONS (quick qPBOC/qVSDC flow, or
the standard flow's AIP/AFL), READ RECORD, GET DATA, GENERATE AC and EXTERNAL
AUTHENTICATE. Counters are saved before the answer that depends on them leaves.
"""
from __future__ import annotations

import hmac
import os
import time
from dataclasses import dataclass, field

from hardware.apdu import ApduFormatError, apdu_case
from hardware.card_apps import CardVanishes, contactless_atr
from keys import emv
from keys.tlv import parse_dol, tlv

from . import oda, oda_rsa, oda_sm2
from .perso import CDOL1, CDOL2, PDOL, CardImage, track2
from .risk import (CID_AAC, CID_ARQC, CID_TC, TTQ1_ODA_FOR_ONLINE, Decision, Transaction, cvr, decide_first_ac,
                   decide_quick, decide_second_ac)
from .state import LOG_ENTRIES, MAX_ATC, CardState, CardStateStore

PPSE = b"2PAY.SYS.DDF01"
SFI_LOG, LOG_FORMAT = 11, bytes.fromhex("9A039F21039F02069F03069F1A025F2A029F4E149C019F3602")
# Tags whose values, in this order, the cryptogram covers ahead of AIP || ATC || CVR.
AC_TAGS = (0x9F02, 0x9F03, 0x9F1A, 0x95, 0x5F2A, 0x9A, 0x9C, 0x9F37)
SW_OK, SW_BLOCKED = b"\x90\x00", b"\x62\x83"
SW_AUTH_FAILED, SW_WRONG_LENGTH = b"\x63\x00", b"\x67\x00"
SW_CONDITIONS, SW_WRONG_DATA, SW_NOT_FOUND = b"\x69\x85", b"\x6A\x80", b"\x6A\x82"
SW_NO_RECORD, SW_WRONG_P1P2, SW_NO_DATA = b"\x6A\x83", b"\x6A\x86", b"\x6A\x88"
SW_INS, SW_CLA = b"\x6D\x00", b"\x6E\x00"
DEFAULT_HISTORICAL = {True: b"PBOC3 SM", False: b"EMV QVSDC"}
APPROVAL_CODES = (b"00", b"10", b"11", b"Y3")


def ac_input(values: dict[int, bytes], aip: bytes, atc: bytes, cvr_bytes: bytes) -> bytes:
    """The data an ARQC/TC/AAC is computed over (docs/cards.md, "Cryptograms")."""
    return b"".join(values.get(tag, b"") for tag in AC_TAGS) + aip + atc + cvr_bytes


def bcd_amount(value: bytes) -> int:
    digits = value.hex()
    return int(digits) if digits.isdigit() else 0


def _dol_values(dol: bytes, data: bytes) -> dict[int, bytes] | None:
    entries = parse_dol(dol)
    if len(data) != sum(n for _, n in entries):
        return None
    values, i = {}, 0
    for tag, n in entries:
        values[tag], i = data[i : i + n], i + n
    return values


@dataclass
class _Session:
    """What lives from power-on to power-off (or a new SELECT)."""

    selected: str | None = None  # "ppse" or "app"
    gpo_done: bool = False
    quick: bool = False
    session_key: bytes = b""
    cdol1_values: dict = field(default_factory=dict)
    first_cid: int | None = None
    acs: int = 0
    arqc: bytes = b""
    issuer_auth: bool | None = None
    read_records: int = 0


class EmvCard:
    """One simulated card; plug it into `hardware.vcard.VirtualCard`."""

    def __init__(self, image: CardImage, store: CardStateStore, delay_s: float | None = None) -> None:
        self.image = image
        self.profile = image.profile
        self.store = store
        self.state = store.load() or CardState(ec_balance=self.profile.ec_balance)
        fault_delay = self.profile.faults.delay_ms / 1000.0
        self.delay_s = fault_delay if not delay_s else delay_s
        self.atr = contactless_atr(self.profile.atr_historical or DEFAULT_HISTORICAL[self.profile.is_pboc])
        self._session = _Session()
        self._handlers = {(0x00, 0xA4): self._select, (0x80, 0xA8): self._gpo, (0x00, 0xB2): self._read_record,
                          (0x80, 0xCA): self._get_data, (0x80, 0xAE): self._generate_ac,
                          (0x00, 0x82): self._external_authenticate}

    def __repr__(self) -> str:
        return f"<EmvCard {self.profile.name} PAN {self.profile.masked_pan} ATC {self.state.atc}>"

    # -- power -------------------------------------------------------------------
    def power_on(self) -> None:
        self._session = _Session()

    def power_off(self) -> None:
        self._session = _Session()

    def reset(self) -> None:
        self._session = _Session()

    # -- dispatch ----------------------------------------------------------------
    def process_apdu(self, apdu: bytes) -> bytes:
        if self.delay_s:
            time.sleep(self.delay_s)
        try:
            case, extended = apdu_case(apdu)
        except ApduFormatError:
            return SW_WRONG_LENGTH
        data = apdu[5 : 5 + apdu[4]] if case in (3, 4) and not extended else b""
        handler = self._handlers.get((apdu[0], apdu[1]))
        if handler is None:
            known_cla = any(c == apdu[0] for c, _ in self._handlers)
            return SW_INS if known_cla else SW_CLA
        return handler(apdu[2], apdu[3], data)

    def _save(self) -> None:
        self.store.save(self.state)

    # -- SELECT ------------------------------------------------------------------
    def _select(self, p1: int, p2: int, name: bytes) -> bytes:
        if p1 != 0x04:
            return SW_WRONG_P1P2
        self._session = _Session(read_records=self._session.read_records)
        p = self.profile
        if name and PPSE.startswith(name):
            self._session.selected = "ppse"
            entry = tlv(0x61, tlv(0x4F, p.aid) + tlv(0x50, p.label.encode()) + tlv(0x87, bytes([p.priority])))
            return tlv(0x6F, tlv(0x84, PPSE) + tlv(0xA5, tlv(0xBF0C, entry))) + SW_OK
        if not name or not p.aid.startswith(name):
            return SW_NOT_FOUND
        self._session.selected = "app"
        proprietary = (tlv(0x50, p.label.encode()) + tlv(0x87, bytes([p.priority])) + tlv(0x9F38, PDOL)
                       + tlv(0x5F2D, p.language.encode()) + tlv(0x9F11, b"\x01")
                       + tlv(0xBF0C, tlv(0x9F4D, bytes([SFI_LOG, LOG_ENTRIES]))))
        fci = tlv(0x6F, tlv(0x84, p.aid) + tlv(0xA5, proprietary))
        # EMV Book 1 12.3.3: a blocked application still answers SELECT, with 6283.
        return fci + (SW_BLOCKED if p.faults.blocked else SW_OK)

    # -- GET PROCESSING OPTIONS --------------------------------------------------
    def _gpo(self, p1: int, p2: int, data: bytes) -> bytes:
        s = self._session
        if s.selected != "app" or s.gpo_done or self.profile.faults.blocked or self.state.atc >= MAX_ATC:
            return SW_CONDITIONS
        if (p1, p2) != (0, 0):
            return SW_WRONG_P1P2
        if len(data) < 2 or data[0] != 0x83 or data[1] != len(data) - 2:
            return SW_WRONG_DATA
        values = _dol_values(PDOL, data[2:])
        if values is None:
            return SW_WRONG_LENGTH
        self.state.atc += 1
        self._save()  # an ATC is never used twice, even if the card dies right here
        atc = self.state.atc.to_bytes(2, "big")
        s.gpo_done = True
        s.session_key = emv.derive_session_key(self.profile.family, self.image.icc_master_key, atc)
        txn = Transaction(bcd_amount(values[0x9F02]), values[0x5F2A].hex(), values[0x9F66])
        s.quick = txn.quick
        if not s.quick:
            return tlv(0x77, tlv(0x82, self.image.aip) + tlv(0x94, self.image.afl)) + SW_OK
        decision = decide_quick(self.profile, self.state, txn)
        cid, ac, iad = self._cryptogram(decision, values, atc, first=True)
        if decision.offline_approved:
            self._approve_offline(txn, values, atc)
        items = [(0x82, self.image.aip), (0x94, self.image.afl), (0x9F36, atc), (0x9F26, ac), (0x9F27, bytes([cid])),
                 (0x9F10, iad), (0x57, track2(self.profile)), (0x5F34, bytes.fromhex(self.profile.psn))]
        if self.profile.fdda and cid != CID_AAC and (cid == CID_TC or txn.ttq[0] & TTQ1_ODA_FOR_ONLINE):
            items += self._fdda(values, atc)
        items.append((0x9F6C, self.profile.ctq))
        body = tlv(0x77, b"".join(tlv(t, v) for t, v in items))
        if self.profile.faults.truncated_gpo:
            body = body[:-12]  # the template's length now overruns what is sent
        return body + SW_OK

    def _cryptogram(self, decision: Decision, values: dict, atc: bytes, first: bool,
                    second_cid: int | None = None) -> tuple[int, bytes, bytes]:
        s = self._session
        first_cid = decision.cid if first else s.first_cid
        cvr_bytes = cvr(first_cid, second_cid, decision.velocity_exceeded, s.issuer_auth is False)
        ac = emv.generate_ac(self.profile.family, s.session_key, ac_input(values, self.image.aip, atc, cvr_bytes))
        if first:
            s.first_cid = decision.cid
        if decision.cid == CID_ARQC:
            s.arqc = ac
        return decision.cid, ac, self._iad(cvr_bytes)

    def _iad(self, cvr_bytes: bytes) -> bytes:
        if self.profile.is_pboc:
            # 07 | DKI | CVN | CVR (4) | algorithm 04 (SM4) ; 0A | issuer discretionary data (10)
            return bytes([0x07, 0x01, 0x01]) + cvr_bytes + b"\x04" + b"\x0A\x01" + bytes(9)
        return bytes([0x06, 0x01, 0x0A]) + cvr_bytes  # Visa IAD format 0: 06 | DKI | CVN | CVR

    def _fdda(self, values: dict, atc: bytes) -> list[tuple[int, bytes]]:
        card_data = oda.card_auth_related_data(os.urandom(4), self.profile.ctq)
        terminal = oda.terminal_dynamic_data(values[0x9F37], values[0x9F02], values[0x5F2A], card_data)
        icc = oda.icc_dynamic_data(atc)
        if self.image.icc_sm2 is not None:
            sdad = oda_sm2.sign_dynamic_data(self.image.icc_sm2, icc, terminal)
        else:
            sdad = oda_rsa.sign_dynamic_data(self.image.icc_rsa, icc, terminal)
        return [(0x9F4B, sdad), (0x9F69, card_data)]

    def _approve_offline(self, txn: Transaction, values: dict, atc: bytes) -> None:
        st = self.state
        st.consecutive_offline += 1
        st.cumulative_offline += txn.amount
        if st.ec_balance is not None:
            st.ec_balance -= txn.amount
        entry = values.get(0x9A, bytes(3)) + bytes(3) + values.get(0x9F02, bytes(6)) + values.get(0x9F03, bytes(6)) \
            + values.get(0x9F1A, bytes(2)) + values.get(0x5F2A, bytes(2)) + bytes(20) + values.get(0x9C, b"\x00") + atc
        st.log = [entry.hex()] + st.log[: LOG_ENTRIES - 1]
        self._save()

    # -- READ RECORD -------------------------------------------------------------
    def _read_record(self, p1: int, p2: int, data: bytes) -> bytes:
        if self._session.selected != "app":
            return SW_CONDITIONS
        if p2 & 0x07 != 0x04 or p1 == 0:
            return SW_WRONG_P1P2
        self._session.read_records += 1
        vanish = self.profile.faults.vanish_on_read_record
        if vanish and self._session.read_records == vanish:
            raise CardVanishes()
        sfi = p2 >> 3
        if sfi == SFI_LOG:
            if p1 > len(self.state.log):
                return SW_NO_RECORD
            return bytes.fromhex(self.state.log[p1 - 1]) + SW_OK
        record = self.image.records.get((sfi, p1))
        return record + SW_OK if record is not None else SW_NO_RECORD

    # -- GET DATA ----------------------------------------------------------------
    def _get_data(self, p1: int, p2: int, data: bytes) -> bytes:
        if self._session.selected != "app":
            return SW_CONDITIONS
        tag, st, p = (p1 << 8) | p2, self.state, self.profile
        values = {0x9F36: st.atc.to_bytes(2, "big"), 0x9F13: st.last_online_atc.to_bytes(2, "big"),
                  0x9F4F: LOG_FORMAT}
        if st.ec_balance is not None:
            values[0x9F79] = bytes.fromhex(f"{st.ec_balance:012d}")
            if p.ec_single_limit is not None:
                values[0x9F78] = bytes.fromhex(f"{p.ec_single_limit:012d}")
        if p.cumulative_offline_limit:
            values[0x9F5D] = bytes.fromhex(f"{max(0, p.cumulative_offline_limit - st.cumulative_offline):012d}")
        value = values.get(tag)
        return tlv(tag, value) + SW_OK if value is not None else SW_NO_DATA

    # -- GENERATE AC and issuer authentication -------------------------------------
    def _generate_ac(self, p1: int, p2: int, data: bytes) -> bytes:
        s = self._session
        if s.selected != "app" or not s.gpo_done or s.quick or s.acs >= 2:
            return SW_CONDITIONS
        requested = p1 & 0xC0
        if requested == 0xC0:
            return SW_WRONG_P1P2
        atc = self.state.atc.to_bytes(2, "big")
        if s.acs == 0:
            values = _dol_values(CDOL1, data)
            if values is None:
                return SW_WRONG_LENGTH
            txn = Transaction(bcd_amount(values[0x9F02]), values[0x5F2A].hex())
            decision = decide_first_ac(self.profile, self.state, txn, requested)
            cid, ac, iad = self._cryptogram(decision, values, atc, first=True)
            s.cdol1_values = values
            if decision.offline_approved:
                self._approve_offline(txn, values, atc)
        else:
            if s.first_cid != CID_ARQC:
                return SW_CONDITIONS
            values = _dol_values(CDOL2, data)
            if values is None:
                return SW_WRONG_LENGTH
            decision = decide_second_ac(requested, values[0x8A], s.issuer_auth)
            cid, ac, iad = self._cryptogram(decision, {**s.cdol1_values, **values}, atc, first=False,
                                            second_cid=decision.cid)
        s.acs += 1
        items = [(0x9F27, bytes([cid])), (0x9F36, atc), (0x9F26, ac), (0x9F10, iad)]
        return tlv(0x77, b"".join(tlv(t, v) for t, v in items)) + SW_OK

    def _external_authenticate(self, p1: int, p2: int, data: bytes) -> bytes:
        s = self._session
        if not s.arqc or s.issuer_auth is not None:
            return SW_CONDITIONS
        if len(data) != 10:
            return SW_WRONG_LENGTH
        arpc, arc = data[:8], data[8:]
        expected = emv.generate_arpc_method1(self.profile.family, s.session_key, s.arqc, arc)
        s.issuer_auth = hmac.compare_digest(expected, arpc)
        if not s.issuer_auth:
            return SW_AUTH_FAILED
        if arc in APPROVAL_CODES:
            # The issuer saw this card online: offline velocity starts again.
            self.state.consecutive_offline = 0
            self.state.cumulative_offline = 0
            self.state.last_online_atc = self.state.atc
            self._save()
        return SW_OK
