"""Card risk management: which cryptogram the card answers with, and why.

Pure functions over the profile, the persisted counters and what the terminal sent;
card.py applies the counter updates they return. The rules are in docs/cards.md.
"""
from __future__ import annotations

from dataclasses import dataclass

from .profile import Profile
from .state import CardState

CID_AAC, CID_TC, CID_ARQC = 0x00, 0x40, 0x80
CID_NAMES = {CID_AAC: "AAC", CID_TC: "TC", CID_ARQC: "ARQC"}
# CVR byte 2, bits 6-5: what the first cryptogram was; bits 8-7: the second (10 = not asked).
_CVR_FIRST = {CID_AAC: 0x00, CID_TC: 0x10, CID_ARQC: 0x20}
_CVR_SECOND = {CID_AAC: 0x00, CID_TC: 0x40, None: 0x80}
CVR_VELOCITY_EXCEEDED = 0x20  # CVR byte 3: an offline limit was reached
CVR_ISSUER_AUTH_FAILED = 0x08  # CVR byte 2, bit 4

# TTQ (9F66) bits the card looks at (EMV Book C-3 / qPBOC).
TTQ1_QUICK_SUPPORTED = 0x20
TTQ1_OFFLINE_ONLY = 0x08
TTQ1_ODA_FOR_ONLINE = 0x01
TTQ2_ONLINE_REQUIRED = 0x80


@dataclass(frozen=True)
class Transaction:
    """What the terminal told the card (PDOL or CDOL1 data), decoded."""

    amount: int
    currency: str
    ttq: bytes = b"\x00\x00\x00\x00"

    @property
    def quick(self) -> bool:
        return bool(self.ttq[0] & TTQ1_QUICK_SUPPORTED)

    @property
    def online_capable(self) -> bool:
        return not self.ttq[0] & TTQ1_OFFLINE_ONLY

    @property
    def online_required(self) -> bool:
        return bool(self.ttq[1] & TTQ2_ONLINE_REQUIRED)


@dataclass(frozen=True)
class Decision:
    cid: int
    reason: str
    velocity_exceeded: bool = False

    @property
    def offline_approved(self) -> bool:
        return self.cid == CID_TC

    @property
    def name(self) -> str:
        return CID_NAMES[self.cid]


def offline_room(profile: Profile, state: CardState, txn: Transaction) -> tuple[bool, str]:
    """Whether the card may approve `txn` offline, and if not, the limit that stops it."""
    if txn.currency != profile.currency:
        return False, "currency differs from the card's: no offline approval"
    if state.consecutive_offline >= profile.consecutive_offline_limit:
        return False, "consecutive offline limit reached"
    if state.cumulative_offline + txn.amount > profile.cumulative_offline_limit:
        return False, "cumulative offline amount limit reached"
    if profile.ec_balance is not None:
        if state.ec_balance is None or txn.amount > state.ec_balance:
            return False, "electronic cash balance too low"
        if profile.ec_single_limit is not None and txn.amount > profile.ec_single_limit:
            return False, "above the electronic cash single transaction limit"
    return True, "within offline limits"


def _velocity(profile: Profile, room: bool, why: str) -> bool:
    # A card issued without offline spending (limit 0) has no velocity to exceed.
    offline_card = profile.consecutive_offline_limit > 0
    return offline_card and not room and why.startswith(("consecutive", "cumulative"))


def decide_quick(profile: Profile, state: CardState, txn: Transaction) -> Decision:
    """qPBOC / qVSDC at GPO: TC offline when allowed, else ARQC, else AAC."""
    if profile.faults.decline:
        return Decision(CID_AAC, "card declines (decline fault)")
    room, why = offline_room(profile, state, txn)
    if not txn.online_required and room:
        return Decision(CID_TC, why)
    velocity = _velocity(profile, room, why)
    if txn.online_capable:
        return Decision(CID_ARQC, "terminal asked to go online" if txn.online_required else why, velocity)
    return Decision(CID_AAC, f"offline-only terminal and {why}", velocity)


def decide_first_ac(profile: Profile, state: CardState, txn: Transaction, requested: int) -> Decision:
    """First GENERATE AC: the card never answers with more than the terminal asked for,
    and may turn a TC request into ARQC (go online) or AAC."""
    if profile.faults.decline:
        return Decision(CID_AAC, "card declines (decline fault)")
    if requested == CID_AAC:
        return Decision(CID_AAC, "terminal asked for AAC")
    if requested == CID_ARQC:
        return Decision(CID_ARQC, "terminal asked for ARQC")
    room, why = offline_room(profile, state, txn)
    if room:
        return Decision(CID_TC, why)
    return Decision(CID_ARQC, why, _velocity(profile, room, why))


def decide_second_ac(requested: int, arc: bytes, issuer_auth: bool | None) -> Decision:
    """Second GENERATE AC: TC only if the terminal asks for it, the issuer approved (ARC)
    and issuer authentication, when it was done, succeeded."""
    approved = arc in (b"00", b"10", b"11", b"Y3")
    if requested != CID_TC:
        return Decision(CID_AAC, "terminal asked for AAC")
    if issuer_auth is False:
        return Decision(CID_AAC, "issuer authentication failed")
    if not approved:
        return Decision(CID_AAC, "issuer declined")
    return Decision(CID_TC, "issuer approved")


def cvr(first: int, second: int | None = None, velocity: bool = False, issuer_auth_failed: bool = False) -> bytes:
    """Card verification results, 4 bytes with the length 03 first (PBOC / Visa style)."""
    b2 = _CVR_FIRST[first] | _CVR_SECOND[second] | (CVR_ISSUER_AUTH_FAILED if issuer_auth_failed else 0)
    return bytes([0x03, b2, CVR_VELOCITY_EXCEEDED if velocity else 0, 0])
